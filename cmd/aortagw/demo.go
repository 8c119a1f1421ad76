package main

import (
	"github.com/spf13/cobra"

	"github.com/aortagw/aortagw/gateway"
	"github.com/aortagw/aortagw/testpki"
)

// newDemoCmd is `aortagw demo --dir DIR` (what `make demo` runs).
func newDemoCmd() *cobra.Command {
	var opts gateway.DemoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole VGU flow end to end on embedded defaults",
		Long: "Creates a test PKI with SoftHSM tokens, starts the LSP and SBV-Z simulators and the gateway\n" +
			"(SQLite store), enrols a patient after the WID and BSN checks, signs a mandate with a caregiver's\n" +
			"card key and PIN, sends a medication query and fires a trigger through the gateway, then shows\n" +
			"what the LSP accepted and the verified audit trail. Rerunning wipes DIR (made by an earlier run).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Out = cmd.OutOrStdout()
			return gateway.RunDemo(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Dir, "dir", ".demo", "directory for everything the demo creates")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "wipe DIR even if an earlier demo did not make it")
	cmd.Flags().StringVar(&opts.ModulePath, "module", testpki.DefaultModulePath, "SoftHSM2 PKCS#11 module")
	return cmd
}
