package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newAdminCmd is a placeholder until its area lands.
func newAdminCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "admin",
		Short: "Register, list, revoke and report enrolment and mandate tokens",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("admin: not implemented yet")
		},
	}
}
