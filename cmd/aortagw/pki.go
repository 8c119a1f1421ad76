package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newPKICmd is a placeholder until its area lands.
func newPKICmd() *cobra.Command {
	return &cobra.Command{
		Use:   "pki",
		Short: "Create a UZI-shaped test PKI (optionally on SoftHSM tokens)",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("pki: not implemented yet")
		},
	}
}
