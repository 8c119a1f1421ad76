package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newIAMCmd is a placeholder until its area lands.
func newIAMCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "iam",
		Short: "Provisioning: sync, report, grant, attest",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("iam: not implemented yet")
		},
	}
}
