package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newTokenCmd is a placeholder until its area lands.
func newTokenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "token",
		Short: "Sign, verify and inspect AORTA tokens",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("token: not implemented yet")
		},
	}
}
