package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newConfigCmd is a placeholder until its area lands.
func newConfigCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "config",
		Short: "Check and print the effective configuration (secrets redacted)",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("config: not implemented yet")
		},
	}
}
