package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newSBVZCmd is a placeholder until its area lands.
func newSBVZCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "sbvz",
		Short: "SBV-Z client tasks (initial fill)",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("sbvz: not implemented yet")
		},
	}
}
