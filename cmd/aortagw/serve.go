package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/aortagw/aortagw/gateway"
)

// newServeCmd is `aortagw serve --config FILE`.
func newServeCmd() *cobra.Command {
	var f configFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway: XIS listener, admin API, trigger workers, metrics",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.load()
			if err != nil {
				return err
			}
			logger, err := newLogger(cfg.Log, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			rt, err := gateway.Open(ctx, cfg, logger)
			if err != nil {
				return err
			}
			defer rt.Close()
			if err := rt.Server.Start(ctx); err != nil {
				return err
			}
			<-ctx.Done()
			logger.Info("shutting down")
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			return rt.Server.Shutdown(sctx)
		},
	}
	f.register(cmd)
	return cmd
}

func newLogger(c gateway.LogConfig, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("%w: log.level: %v", gateway.ErrConfig, err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}
