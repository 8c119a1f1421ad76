package gateway

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ErrLifecycle is returned when Start or Shutdown is called out of order.
var ErrLifecycle = errors.New("gateway: lifecycle")

// Check is one readiness check (HSM session, database, CRL freshness).
type Check struct {
	Name string
	// Check returns nil when the component is ready. It must honour ctx.
	Check func(ctx context.Context) error
}

// Server is the gateway: the XIS listener (messages and triggers), the admin
// listener (token lifecycle, /metrics, /healthz, /readyz) and the trigger
// workers. New does no I/O; Start listens and starts the goroutines;
// Shutdown stops accepting, drains in-flight requests and waits for every
// goroutine it started. A Server is started at most once.
type Server struct {
	cfg    Config
	deps   Deps
	maint  *Maintainer
	log    *slog.Logger
	now    func() time.Time
	newID  func() string
	m      *metrics
	gather prometheus.Gatherer

	loc      *time.Location
	wake     chan struct{}
	workerID string

	xisBearer, adminBearer []byte
	xisTLS, adminTLS       *tls.Config

	mu       sync.Mutex
	started  bool
	stopped  bool
	xisSrv   *http.Server
	adminSrv *http.Server
	xisLn    net.Listener
	adminLn  net.Listener
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// Options are the injected collaborators of New besides the Deps.
type Options struct {
	Now        func() time.Time // default time.Now
	NewID      func() string    // default random UUID
	Logger     *slog.Logger     // default slog.Default()
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer // served on /metrics (nil: no /metrics)
	// XISTLS and AdminTLS, when set, replace the TLS configs built from the
	// certificate files (tests and the demo pass in-memory certificates).
	XISTLS, AdminTLS *tls.Config
	// Checks are extra readiness checks (HSM, CRL freshness); the database
	// ping is always checked.
	Checks []Check
	// Maintainer, when set, runs from Start until Shutdown (CRL refresh,
	// store purging); its Check belongs in Checks.
	Maintainer *Maintainer
}

// New builds a Server. It validates cfg and reads the bearer-token files and
// listener certificates named in it (small local files), but opens no
// socket, no database and no HSM session.
func New(cfg Config, deps Deps, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := deps.check(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, deps: deps, log: opts.Logger, now: opts.Now, newID: opts.NewID, gather: opts.Gatherer, maint: opts.Maintainer}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "gateway")
	if s.now == nil {
		s.now = time.Now
	}
	if s.newID == nil {
		s.newID = newUUID
	}
	var err error
	if s.loc, err = time.LoadLocation(cfg.Triggers.TimeZone); err != nil {
		return nil, fmt.Errorf("%w: triggers.time_zone: %v", ErrConfig, err)
	}
	s.wake = make(chan struct{}, 1)
	s.workerID = s.newID()
	if s.m, err = newMetrics(opts.Registerer); err != nil {
		return nil, fmt.Errorf("gateway: register metrics: %w", err)
	}
	if s.xisBearer, err = bearerSecret(cfg.XIS.BearerToken, cfg.XIS.BearerTokenFile); err != nil {
		return nil, err
	}
	if s.adminBearer, err = bearerSecret(cfg.Admin.BearerToken, cfg.Admin.BearerTokenFile); err != nil {
		return nil, err
	}
	s.xisTLS, s.adminTLS = opts.XISTLS, opts.AdminTLS
	if s.xisTLS == nil {
		if s.xisTLS, err = xisTLS(cfg.XIS); err != nil {
			return nil, err
		}
	}
	if s.adminTLS == nil {
		if s.adminTLS, err = adminTLS(cfg.Admin); err != nil {
			return nil, err
		}
	}
	if cfg.XIS.Auth == "mtls" && (s.xisTLS == nil || s.xisTLS.ClientAuth != tls.RequireAndVerifyClientCert) {
		return nil, fmt.Errorf("%w: xis.auth=mtls needs a TLS config that requires and verifies client certificates", ErrConfig)
	}
	s.deps.checks = append([]Check{{Name: "database", Check: deps.Store.Ping}}, opts.Checks...)
	return s, nil
}

// XISHandler is the handler of the XIS listener (authentication included).
func (s *Server) XISHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/triggers", s.handleCreateTrigger)
	mux.HandleFunc("GET /v1/triggers/{id}", s.handleGetTrigger)
	mux.HandleFunc("/", s.handleMessage)
	return s.authMiddleware(mux, s.cfg.XIS.Auth, s.xisBearer, s.cfg.XIS.StripHeaders)
}

// AdminHandler is the handler of the admin listener: /healthz, /readyz and
// /metrics without authentication; /v1/admin/* with the admin bearer token.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	if s.gather != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{}))
	}
	api := http.NewServeMux()
	s.registerAdmin(api)
	mux.Handle("/v1/admin/", s.adminAuth(api))
	return mux
}

func (s *Server) adminAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !bearerOK(r, s.adminBearer) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="aortagw-admin"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "a valid admin bearer token is required"})
			return
		}
		r.Header.Del("Authorization")
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.Admin.MaxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

// handleReady runs every readiness check with a short deadline.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	res := map[string]string{}
	ok := true
	for _, c := range s.deps.checks {
		if err := c.Check(ctx); err != nil {
			res[c.Name] = err.Error()
			ok = false
		} else {
			res[c.Name] = "ok"
		}
	}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, res)
}

// Start opens both listeners and starts serving, the trigger workers and
// the maintenance loop (Options.Maintainer).
// The goroutines run until Shutdown (or until ctx is cancelled, which stops
// the workers; the listeners stop only on Shutdown).
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return fmt.Errorf("%w: already started", ErrLifecycle)
	}
	lc := net.ListenConfig{}
	xln, err := lc.Listen(ctx, "tcp", s.cfg.XIS.Addr)
	if err != nil {
		return fmt.Errorf("gateway: listen xis (addr=%s): %w", s.cfg.XIS.Addr, err)
	}
	aln, err := lc.Listen(ctx, "tcp", s.cfg.Admin.Addr)
	if err != nil {
		_ = xln.Close()
		return fmt.Errorf("gateway: listen admin (addr=%s): %w", s.cfg.Admin.Addr, err)
	}
	s.xisLn, s.adminLn = xln, aln
	if s.xisTLS != nil {
		xln = tls.NewListener(xln, s.xisTLS)
	}
	if s.adminTLS != nil {
		aln = tls.NewListener(aln, s.adminTLS)
	}
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	s.xisSrv = &http.Server{
		Handler:           s.XISHandler(),
		MaxHeaderBytes:    s.cfg.XIS.MaxHeaderBytes,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       s.cfg.XIS.ReadTimeout,
		WriteTimeout:      s.cfg.XIS.WriteTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          errLog,
	}
	s.adminSrv = &http.Server{
		Handler:           s.AdminHandler(),
		MaxHeaderBytes:    32 << 10,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		ErrorLog:          errLog,
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.started = true
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.xisSrv.Serve(xln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("xis listener stopped", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		if err := s.adminSrv.Serve(aln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin listener stopped", "err", err)
		}
	}()
	s.startWorkers(wctx)
	if s.maint != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.maint.Run(wctx)
		}()
	}
	s.log.Info("gateway started", "xis", s.xisLn.Addr().String(), "admin", s.adminLn.Addr().String(),
		"xis_auth", s.cfg.XIS.Auth, "store", s.deps.Store.Backend())
	return nil
}

// XISAddr is the bound address of the XIS listener (after Start).
func (s *Server) XISAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.xisLn == nil {
		return ""
	}
	return s.xisLn.Addr().String()
}

// AdminAddr is the bound address of the admin listener (after Start).
func (s *Server) AdminAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.adminLn == nil {
		return ""
	}
	return s.adminLn.Addr().String()
}

// Shutdown stops the listeners (in-flight requests finish), stops the
// trigger workers and waits for every goroutine. It is idempotent; a
// Server that was never started shuts down at once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.started || s.stopped {
		s.stopped = true
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	var errs []error
	if err := s.xisSrv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("gateway: shutdown xis: %w", err))
	}
	if err := s.adminSrv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("gateway: shutdown admin: %w", err))
	}
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		_ = s.xisSrv.Close()
		_ = s.adminSrv.Close()
		<-done
		errs = append(errs, fmt.Errorf("gateway: shutdown: %w", ctx.Err()))
	}
	s.log.Info("gateway stopped")
	return errors.Join(errs...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encoding failed"}`)
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
