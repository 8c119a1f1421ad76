package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newSimLSPCmd is a placeholder until its area lands.
func newSimLSPCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "lsp",
		Short: "Run the LSP (ZIM) simulator",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("lsp: not implemented yet")
		},
	}
}
