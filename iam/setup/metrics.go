package setup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ServeMetrics serves g in the Prometheus text format at http://addr/metrics
// until ctx ends (every other path is 404). It listens before it returns,
// so a bad or busy address is reported at once. The returned address is the
// one bound (useful with port 0); wait blocks until the server has stopped
// and returns its error, if any. The registry itself is the caller's (cmd
// creates it; iam only takes a Registerer).
func ServeMetrics(ctx context.Context, addr string, g prometheus.Gatherer, log *slog.Logger) (bound net.Addr, wait func() error, err error) {
	if g == nil {
		return nil, nil, fmt.Errorf("%w: metrics need a gatherer", ErrConfig)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("iam/setup: metrics listen (addr=%s): %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, Timeout: 10 * time.Second}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute}
	errc := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("iam: metrics listening", "addr", ln.Addr().String())
	return ln.Addr(), func() error {
		<-stopped
		return <-errc
	}, nil
}
