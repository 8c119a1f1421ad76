// Command aortagw is the AORTA VGU gateway: one binary whose subcommands run
// the gateway, the simulators, the test PKI, HSM tooling, token tooling and
// provisioning. This file only wires subcommands; each lives in its own file
// and each domain package owns its configuration.
package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/aortagw/aortagw/pkcs11"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries a specific process exit code (for example `token verify`
// exits 1 on a rejected token) without printing a second message.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "aortagw",
		Short:         "AORTA VGU gateway: signs and forwards HL7v3 messages to the LSP with UZI tokens",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	sim := &cobra.Command{Use: "sim", Short: "Run strict simulators of outside systems (LSP, SBV-Z)"}
	sim.AddCommand(newSimLSPCmd(), newSimSBVZCmd())
	root.AddCommand(
		newServeCmd(),
		newConfigCmd(),
		newDemoCmd(),
		newPKICmd(),
		newHSMCmd(),
		newTokenCmd(),
		newSBVZCmd(),
		newAuditCmd(),
		newAdminCmd(),
		newIAMCmd(),
		sim,
	)
	return root
}

func main() {
	pkcs11.TuneGOMAXPROCS() // spare Ps for goroutines waiting on PKCS#11 C calls
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil && ee.err.Error() != "" {
				fmt.Fprintln(os.Stderr, "aortagw:", ee.err)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "aortagw:", err)
		os.Exit(2)
	}
}
