package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/aortagw/aortagw/gateway"
)

// configFlags are the flags shared by `serve` and `config check`: the file,
// repeated --set key=value overrides and a few shortcuts. Flags win over the
// environment, which wins over the file, which wins over the defaults.
type configFlags struct {
	file  string
	sets  []string
	xis   string
	admin string
	store string
}

func (f *configFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "config", "c", "", "configuration file (.yaml, .yml or .toml)")
	fl.StringArrayVar(&f.sets, "set", nil, "override one option, e.g. --set lsp.timeout=10s (repeatable)")
	fl.StringVar(&f.xis, "listen", "", "XIS listener address (xis.addr)")
	fl.StringVar(&f.admin, "admin-listen", "", "admin listener address (admin.addr)")
	fl.StringVar(&f.store, "store", "", "store DSN: sqlite:PATH or postgres://... (store.dsn)")
}

// load builds the effective configuration: defaults < file < env < flags.
func (f *configFlags) load() (gateway.Config, error) {
	c := gateway.DefaultConfig()
	if f.file != "" {
		if err := c.LoadFile(f.file); err != nil {
			return c, err
		}
	}
	if err := c.ApplyEnv(os.Environ()); err != nil {
		return c, err
	}
	for _, kv := range f.sets {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return c, fmt.Errorf("%w: --set wants key=value (got %q)", gateway.ErrConfig, kv)
		}
		if err := c.Set(strings.TrimSpace(k), v); err != nil {
			return c, err
		}
	}
	for k, v := range map[string]string{"xis.addr": f.xis, "admin.addr": f.admin, "store.dsn": f.store} {
		if v != "" {
			if err := c.Set(k, v); err != nil {
				return c, err
			}
		}
	}
	return c, nil
}

// newConfigCmd is `aortagw config check`: print the effective configuration
// with secrets redacted, and validate it (exit 1 when invalid).
func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check and print the effective configuration (secrets redacted)",
	}
	var f configFlags
	check := &cobra.Command{
		Use:   "check",
		Short: "Print the effective configuration (defaults < file < AORTAGW_* env < flags), secrets redacted, and validate it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.load()
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			out, err := c.YAML()
			if err != nil {
				return err
			}
			_, _ = cmd.OutOrStdout().Write(out)
			if err := c.Validate(); err != nil {
				return &exitError{code: 1, err: fmt.Errorf("configuration invalid:\n%w", err)}
			}
			_, _ = fmt.Fprintln(cmd.ErrOrStderr(), "configuration ok")
			return nil
		},
	}
	f.register(check)
	cmd.AddCommand(check)
	return cmd
}
