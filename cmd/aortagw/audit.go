package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newAuditCmd is a placeholder until its area lands.
func newAuditCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "audit",
		Short: "Verify and export the audit trail",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("audit: not implemented yet")
		},
	}
}
