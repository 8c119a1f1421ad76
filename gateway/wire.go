package gateway

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/aortagw/aortagw/gateway/store"
	"github.com/aortagw/aortagw/internal/mtls"
	"github.com/aortagw/aortagw/lsp"
	"github.com/aortagw/aortagw/pkcs11"
	"github.com/aortagw/aortagw/tokens"
)

// Runtime is a gateway wired from a Config with everything it opened: the
// server key in the HSM, the store, the LSP client and the metrics registry.
// Close releases them (after the Server was shut down).
type Runtime struct {
	Server *Server
	Store  store.Store
	Key    *pkcs11.Key
	// Chain is the server certificate chain, leaf first (from the token and hsm.chain_file).
	Chain    []*x509.Certificate
	LSP      *lsp.Client
	Registry *prometheus.Registry
	closers  []func()
}

// Close releases everything Open opened, in reverse order. It is idempotent.
func (r *Runtime) Close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
	r.closers = nil
}

// Open opens the HSM key, the store, the LSP client and the token validator
// named in cfg and wires them into a Server (not started). This is what
// `aortagw serve` and the demo run; it does I/O, New does not.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (rt *Runtime, err error) {
	if logger == nil {
		logger = slog.Default()
	}
	rt = &Runtime{Registry: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			rt.Close()
		}
	}()
	rt.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Validate what can be validated before any I/O (tokens.ura may still
	// come from the server certificate below).
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	key, err := pkcs11.Open(ctx, cfg.HSM.KeyURI, pkcs11.Options{
		AllowedModules: cfg.HSM.AllowedModules, AllowPINValue: !cfg.Strict,
		Registerer: rt.Registry, Logger: logger.With("component", "pkcs11"),
		OpTimeout: cfg.HSM.OpTimeout, PoolSize: cfg.HSM.PoolSize,
		Actor: ActorFromContext, Audit: hsmAudit(logger.With("component", "hsm-audit")),
	})
	if err != nil {
		return nil, fmt.Errorf("open server key (uri=%s): %w", RedactKeyURI(cfg.HSM.KeyURI), err)
	}
	rt.Key = key
	rt.closers = append(rt.closers, func() { _ = key.Close() })
	chain := key.Chain()
	if cfg.HSM.ChainFile != "" {
		extra, err := LoadCertificates(cfg.HSM.ChainFile)
		if err != nil {
			return nil, err
		}
		chain = append(chain[:1:1], extra...)
	}
	rt.Chain = chain
	// Every signature of the server key names an actor (CONVENTIONS 15):
	// the request's (WithActor) when there is one, else the gateway system,
	// which holds this key (transaction tokens are signed by the system).
	skey := &systemKey{key: key, actor: SystemActor(cfg.Tokens.ApplicationID)}
	signer, err := tokens.NewSigner(skey, chain, tokens.WithTransactionLifetime(cfg.Tokens.TransactionLifetime))
	if err != nil {
		return nil, fmt.Errorf("server key: %w", err)
	}
	if cfg.Tokens.URA == "" {
		cfg.Tokens.URA = signer.Identity().URA
	} else if cfg.Tokens.URA != signer.Identity().URA {
		return nil, fmt.Errorf("%w: tokens.ura %s differs from the server certificate's URA %s", ErrConfig, cfg.Tokens.URA, signer.Identity().URA)
	}

	validator, trust, err := newTokenValidator(cfg)
	if err != nil {
		return nil, err
	}

	lspCAs, err := LoadCertificates(cfg.LSP.CAFile)
	if err != nil {
		return nil, err
	}
	tlsCert, err := mtls.Certificate(skey, chain)
	if err != nil {
		return nil, err
	}
	lcfg := lsp.DefaultClientConfig()
	lcfg.Endpoint, lcfg.Certificate, lcfg.RootCAs, lcfg.ServerName = cfg.LSP.Endpoint, tlsCert, lspCAs, cfg.LSP.ServerName
	lcfg.ResponseTimeout, lcfg.MaxResponseBytes = cfg.LSP.Timeout, cfg.LSP.MaxResponseBytes
	lcfg.Registerer, lcfg.Logger = rt.Registry, logger.With("component", "lsp")
	client, err := lsp.NewClient(lcfg)
	if err != nil {
		return nil, err
	}
	rt.LSP = client
	rt.closers = append(rt.closers, func() { _ = client.Close() })

	st, err := store.Open(ctx, cfg.Store.DSN, store.Options{
		Logger: logger, Registerer: rt.Registry,
		Retry: store.RetryPolicy{Base: cfg.Triggers.Backoff, Max: cfg.Triggers.MaxBackoff, MaxAttempts: cfg.Triggers.MaxAttempts},
	})
	if err != nil {
		return nil, fmt.Errorf("open store (dsn=%s): %w", RedactDSN(cfg.Store.DSN), err)
	}
	rt.Store = st
	rt.closers = append(rt.closers, func() { _ = st.Close() })

	maint, err := NewMaintainer(MaintainerConfig{
		CRLFiles: cfg.Trust.CRLFiles, CAs: trust.cas, Initial: trust.crls, Updater: validator,
		Store: st, Logger: logger, Registerer: rt.Registry,
		Interval: cfg.Trust.CRLRefreshInterval, JobRetention: cfg.Triggers.JobRetention,
	})
	if err != nil {
		return nil, err
	}
	checks := []Check{
		{Name: "hsm", Check: key.Healthy},
		{Name: "crl", Check: maint.Check},
	}
	srv, err := New(cfg, Deps{Store: st, Signer: signer, LSP: client, Verifier: validator},
		Options{Logger: logger, Registerer: rt.Registry, Gatherer: rt.Registry, Checks: checks, Maintainer: maint})
	if err != nil {
		return nil, err
	}
	rt.Server = srv
	return rt, nil
}

// NewTokenValidator builds the validator registered tokens are checked
// with, from cfg.Trust (roots, intermediates, CRLs, certificate directory)
// and cfg.Tokens (audience, skew). It reads those files.
func NewTokenValidator(cfg Config) (*tokens.Validator, error) {
	v, _, err := newTokenValidator(cfg)
	return v, err
}

// trustMaterial is what newTokenValidator read: the CAs CRLs are checked
// against and the CRLs loaded at start.
type trustMaterial struct {
	cas  []*x509.Certificate
	crls []*x509.RevocationList
}

func newTokenValidator(cfg Config) (*tokens.Validator, trustMaterial, error) {
	roots, err := LoadCertificates(cfg.Trust.UZIRootsFile)
	if err != nil {
		return nil, trustMaterial{}, err
	}
	var inter []*x509.Certificate
	if cfg.Trust.IntermediatesFile != "" {
		if inter, err = LoadCertificates(cfg.Trust.IntermediatesFile); err != nil {
			return nil, trustMaterial{}, err
		}
	}
	crls, err := LoadCRLs(cfg.Trust.CRLFiles)
	if err != nil {
		return nil, trustMaterial{}, err
	}
	vcfg := tokens.ValidatorConfig{
		Roots: roots, Intermediates: inter, CRLs: crls, Audience: cfg.Tokens.Audience, Skew: cfg.Tokens.Skew,
	}
	if cfg.Trust.CertificatesDir != "" {
		dir, err := tokens.LoadFileDirectory(cfg.Trust.CertificatesDir)
		if err != nil {
			return nil, trustMaterial{}, err
		}
		vcfg.Directory = dir
	}
	v, err := tokens.NewValidator(vcfg)
	if err != nil {
		return nil, trustMaterial{}, fmt.Errorf("token validator: %w", err)
	}
	return v, trustMaterial{cas: append(append([]*x509.Certificate{}, roots...), inter...), crls: crls}, nil
}

// actorCtxKey is the context key of the acting person or system.
type actorCtxKey struct{}

// WithActor returns ctx carrying the acting person or system of the
// request, for the audit event of every HSM signature made under it:
// "uzi:<UZI number>" for a caregiver, SystemActor(...) for the gateway.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorCtxKey{}, actor)
}

// ActorFromContext returns the actor set by WithActor, or "" (it is the
// pkcs11.Options.Actor of the server key).
func ActorFromContext(ctx context.Context) string {
	a, _ := ctx.Value(actorCtxKey{}).(string)
	return a
}

// SystemActor is the actor name of the gateway itself (application id).
func SystemActor(applicationID string) string { return "system:aortagw:" + applicationID }

// systemKey is the server key with a default actor: a signature whose
// context names no actor (a trigger's query, a signature outside a request)
// is made in the name of the system, the holder of the server key. It is a
// crypto.Signer and passes contexts through (lsp signs the mTLS handshake
// with the request's context).
type systemKey struct {
	key   tokens.ContextSigner
	actor string
}

// Public returns the server key's public key.
func (k *systemKey) Public() crypto.PublicKey { return k.key.Public() }

// Sign signs in the name of the system.
func (k *systemKey) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.SignContext(context.Background(), digest, opts)
}

// SignContext signs with ctx, naming the system when ctx names no actor.
func (k *systemKey) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if ActorFromContext(ctx) == "" {
		ctx = WithActor(ctx, k.actor)
	}
	return k.key.SignContext(ctx, digest, opts)
}

// hsmAudit receives the pkcs11 audit event of every server-key signature:
// key URI (redacted), actor, mechanism, duration, never the PIN or the
// data. Successes are logged at debug level (the store's audit log holds
// every minted token); failures at warn.
func hsmAudit(log *slog.Logger) func(context.Context, pkcs11.AuditEvent) {
	return func(ctx context.Context, ev pkcs11.AuditEvent) {
		level := slog.LevelDebug
		attrs := []slog.Attr{slog.String("key", ev.KeyURI), slog.String("actor", ev.Actor),
			slog.String("mechanism", ev.Mechanism), slog.Duration("duration", ev.Duration)}
		if ev.Err != nil {
			level = slog.LevelWarn
			attrs = append(attrs, slog.String("err", ev.Err.Error()))
		}
		log.LogAttrs(ctx, level, "hsm signature", attrs...)
	}
}
