package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newHSMCmd is a placeholder until its area lands.
func newHSMCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "hsm",
		Short: "Inspect and test PKCS#11 tokens",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("hsm: not implemented yet")
		},
	}
}
