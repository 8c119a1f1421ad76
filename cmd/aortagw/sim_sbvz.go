package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newSimSBVZCmd is a placeholder until its area lands.
func newSimSBVZCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "sbvz",
		Short: "Run the SBV-Z simulator",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("sbvz: not implemented yet")
		},
	}
}
