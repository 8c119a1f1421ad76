// Package setup reads iam's YAML configuration and wires the engine, the
// store, the sources and the connectors from it. cmd/aortagw calls it; it
// holds no state of its own beyond the System it returns.
//
// Secrets are never in the YAML itself: passwords, tokens and client
// secrets are read from files named by *File keys, which must not be group-
// or world-readable. The mandate authority is handed in by the caller (the
// gateway store), so this package does not depend on the gateway.
package setup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/iam/connector/directory"
	"github.com/aortagw/aortagw/iam/connector/hix"
	"github.com/aortagw/aortagw/iam/connector/ldap"
	"github.com/aortagw/aortagw/iam/connector/mandate"
	"github.com/aortagw/aortagw/iam/connector/scim"
	"github.com/aortagw/aortagw/iam/source"
	"github.com/aortagw/aortagw/iam/store"
)

// ErrConfig is returned for an invalid configuration file.
var ErrConfig = errors.New("iam/setup: invalid configuration")

// File is the YAML configuration.
type File struct {
	Store                string                 `yaml:"store"`        // iam's own state: a SQLite path, sqlite:PATH or postgres://...
	GatewayStore         string                 `yaml:"gatewayStore"` // DSN of the gateway store (mandate authority); wired by cmd
	SourceOrder          []string               `yaml:"sourceOrder"`
	Required             []iam.RequiredField    `yaml:"required"`
	SourceThreshold      iam.SourceThreshold    `yaml:"sourceThreshold"`
	OutputThresholds     map[string]int         `yaml:"outputThresholds"`
	PrimaryContractOrder string                 `yaml:"primaryContractOrder"`
	ReconcileEvery       time.Duration          `yaml:"reconcileEvery"`
	RetryAttempts        int                    `yaml:"retryAttempts"`
	Sources              []SourceConfig         `yaml:"sources"`
	Targets              []TargetConfig         `yaml:"targets"`
	Rules                []iam.Rule             `yaml:"rules"`
	Extra                map[string]interface{} `yaml:",inline"`
}

// SourceConfig configures one source.
type SourceConfig struct {
	Name             string          `yaml:"name"`
	Type             string          `yaml:"type"` // file | staffing | webhook
	Path             string          `yaml:"path"`
	BaseURL          string          `yaml:"baseURL"`
	TokenURL         string          `yaml:"tokenURL"`
	ClientID         string          `yaml:"clientID"`
	ClientSecretFile string          `yaml:"clientSecretFile"`
	Scopes           []string        `yaml:"scopes"`
	Window           iam.ShiftWindow `yaml:"window"`
	PollEvery        time.Duration   `yaml:"pollEvery"`
	Listen           string          `yaml:"listen"`
	SecretFile       string          `yaml:"secretFile"`
	BearerFile       string          `yaml:"bearerFile"`
}

// TargetConfig configures one target.
type TargetConfig struct {
	Name             string            `yaml:"name"`
	Type             string            `yaml:"type"` // ldap | scim | hix | mandate | directory
	CorrelationField string            `yaml:"correlationField"`
	EnableBeforeDays int               `yaml:"enableBeforeDays"`
	DeleteAfterDays  int               `yaml:"deleteAfterDays"`
	RequiredFields   []string          `yaml:"requiredFields"`
	DisableUnmanaged bool              `yaml:"disableUnmanaged"`
	URL              string            `yaml:"url"`
	BaseURL          string            `yaml:"baseURL"`
	BindDN           string            `yaml:"bindDN"`
	PasswordFile     string            `yaml:"passwordFile"`
	TokenFile        string            `yaml:"tokenFile"`
	PeopleDN         string            `yaml:"peopleDN"`
	DisabledDN       string            `yaml:"disabledDN"`
	GroupsDN         string            `yaml:"groupsDN"`
	Concurrency      int               `yaml:"concurrency"`
	Functions        map[string]string `yaml:"functions"`
	Organisation     string            `yaml:"organisation"`
}

// Load reads and validates a configuration file; unknown keys are errors.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("iam/setup: read config (path=%s): %w", path, err)
	}
	return Parse(b)
}

// Parse decodes and validates YAML configuration bytes.
func Parse(b []byte) (*File, error) {
	var f File
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if len(f.Extra) > 0 {
		for k := range f.Extra {
			return nil, fmt.Errorf("%w: unknown key (key=%s)", ErrConfig, k)
		}
	}
	return &f, f.Validate()
}

// Validate checks the configuration without touching anything.
func (f *File) Validate() error {
	if f.Store == "" {
		return fmt.Errorf("%w: store (a SQLite path, sqlite:PATH or postgres://...) is required", ErrConfig)
	}
	names := map[string]bool{}
	for _, t := range f.Targets {
		if t.Name == "" || names[t.Name] {
			return fmt.Errorf("%w: target names must be set and unique (name=%q)", ErrConfig, t.Name)
		}
		names[t.Name] = true
		switch t.Type {
		case "ldap", "scim", "hix", "mandate", "directory":
		default:
			return fmt.Errorf("%w: unknown target type (target=%s type=%q)", ErrConfig, t.Name, t.Type)
		}
		if t.Type == "mandate" && f.GatewayStore == "" {
			return fmt.Errorf("%w: mandate target needs gatewayStore (target=%s)", ErrConfig, t.Name)
		}
	}
	snames := map[string]bool{}
	for _, s := range f.Sources {
		if s.Name == "" || snames[s.Name] {
			return fmt.Errorf("%w: source names must be set and unique (name=%q)", ErrConfig, s.Name)
		}
		snames[s.Name] = true
		switch s.Type {
		case "file":
			if s.Path == "" {
				return fmt.Errorf("%w: file source needs path (source=%s)", ErrConfig, s.Name)
			}
		case "staffing":
			if s.BaseURL == "" || s.TokenURL == "" || s.ClientID == "" || s.ClientSecretFile == "" {
				return fmt.Errorf("%w: staffing source needs baseURL, tokenURL, clientID, clientSecretFile (source=%s)", ErrConfig, s.Name)
			}
		case "webhook":
			if s.Listen == "" || (s.SecretFile == "" && s.BearerFile == "") {
				return fmt.Errorf("%w: webhook source needs listen and secretFile or bearerFile (source=%s)", ErrConfig, s.Name)
			}
		default:
			return fmt.Errorf("%w: unknown source type (source=%s type=%q)", ErrConfig, s.Name, s.Type)
		}
	}
	for k := range f.OutputThresholds {
		if !isActionType(k) {
			return fmt.Errorf("%w: unknown action type in outputThresholds (type=%s)", ErrConfig, k)
		}
	}
	for i := range f.Rules {
		if err := f.Rules[i].Validate(); err != nil {
			return fmt.Errorf("%w: %v", ErrConfig, err)
		}
		for _, e := range f.Rules[i].Entitlements {
			if !names[e.Target] {
				return fmt.Errorf("%w: rule names an unknown target (rule=%s target=%s)", ErrConfig, f.Rules[i].Name, e.Target)
			}
		}
	}
	if _, err := iam.ParseSortOrder(f.PrimaryContractOrder); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return nil
}

func isActionType(s string) bool {
	for _, t := range iam.ActionTypes {
		if string(t) == s {
			return true
		}
	}
	return false
}

// readSecret reads a secret file that only its owner may read.
func readSecret(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("iam/setup: secret file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%w: secret file readable by group or others (path=%s mode=%v)", ErrConfig, path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("iam/setup: secret file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// Deps are what the caller injects.
type Deps struct {
	Authority  iam.MandateAuthority // required when a mandate target is configured
	Now        func() time.Time
	NewID      func() string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// ReplicaID names this process in action claims shared with other
	// replicas; "" generates a unique one (host/pid/uuid).
	ReplicaID string
}

// System is a wired iam: engine, store and sources.
type System struct {
	Engine   *iam.Engine
	Store    store.Store // SQLite or PostgreSQL, by the configured DSN
	files    []*source.FileSource
	staffing []stagedStaffing
	hooks    []stagedHook
	closers  []func() error
	log      *slog.Logger
}

type stagedStaffing struct {
	src   *source.Staffing
	every time.Duration
}

type stagedHook struct {
	listen string
	h      *source.Webhook
}

// Build opens the store and creates connectors and sources. It opens no
// network connection (connectors connect lazily).
func Build(ctx context.Context, f *File, d Deps) (*System, error) {
	if d.Now == nil || d.NewID == nil {
		return nil, fmt.Errorf("%w: clock and id generator required", ErrConfig)
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	st, err := store.OpenDSN(ctx, f.Store)
	if err != nil {
		return nil, err
	}
	owner := d.ReplicaID
	if owner == "" {
		owner = replicaID()
	}
	sys := &System{Store: st, log: d.Logger, closers: []func() error{st.Close}}
	fail := func(err error) (*System, error) { _ = sys.Close(); return nil, err }
	var conns []iam.Connector
	var tcs []iam.TargetConfig
	for _, t := range f.Targets {
		var c iam.Connector
		switch t.Type {
		case "ldap":
			pw, err := readSecret(t.PasswordFile)
			if err != nil {
				return fail(err)
			}
			lc, err := ldap.New(ldap.Config{Name: t.Name, URL: t.URL, BindDN: t.BindDN, Password: pw, PeopleDN: t.PeopleDN, DisabledDN: t.DisabledDN, GroupsDN: t.GroupsDN, Concurrency: t.Concurrency})
			if err != nil {
				return fail(err)
			}
			sys.closers = append(sys.closers, lc.Close)
			c = lc
		case "scim":
			tok, err := readSecret(t.TokenFile)
			if err != nil {
				return fail(err)
			}
			if c, err = scim.New(scim.Config{Name: t.Name, BaseURL: t.BaseURL, Token: tok, Concurrency: t.Concurrency}); err != nil {
				return fail(err)
			}
		case "hix":
			if c, err = hix.New(hix.Config{Name: t.Name, BaseURL: t.BaseURL, Functions: t.Functions}); err != nil {
				return fail(err)
			}
		case "directory":
			if c, err = directory.New(directory.Config{Name: t.Name, BaseURL: t.BaseURL, Organisation: t.Organisation}); err != nil {
				return fail(err)
			}
		case "mandate":
			if d.Authority == nil {
				return fail(fmt.Errorf("%w: mandate target without authority (target=%s)", ErrConfig, t.Name))
			}
			if c, err = mandate.New(t.Name, d.Authority, st, d.Now); err != nil {
				return fail(err)
			}
		}
		conns = append(conns, guard(c, st, owner, d.Now))
		tcs = append(tcs, iam.TargetConfig{Name: t.Name, CorrelationField: t.CorrelationField, EnableBeforeDays: t.EnableBeforeDays,
			DeleteAfterDays: t.DeleteAfterDays, RequiredFields: t.RequiredFields, DisableUnmanaged: t.DisableUnmanaged})
	}
	order, _ := iam.ParseSortOrder(f.PrimaryContractOrder)
	limits := map[iam.ActionType]int{}
	for k, v := range f.OutputThresholds {
		limits[iam.ActionType(k)] = v
	}
	eng, err := iam.New(iam.Config{Rules: f.Rules, Targets: tcs, Required: f.Required, SourceOrder: f.SourceOrder, SourceThreshold: f.SourceThreshold,
		OutputThresholds: limits, RetryAttempts: f.RetryAttempts, ReconcileEvery: f.ReconcileEvery, SortOrder: order},
		st, conns, iam.Options{Now: d.Now, NewID: d.NewID, Logger: d.Logger, Registerer: d.Registerer})
	if err != nil {
		return fail(err)
	}
	sys.Engine = eng
	for _, s := range f.Sources {
		switch s.Type {
		case "file":
			sys.files = append(sys.files, &source.FileSource{Name: s.Name, Path: s.Path, Logger: d.Logger})
		case "staffing":
			sec, err := readSecret(s.ClientSecretFile)
			if err != nil {
				return fail(err)
			}
			every := s.PollEvery
			if every <= 0 {
				every = 5 * time.Minute
			}
			sys.staffing = append(sys.staffing, stagedStaffing{src: &source.Staffing{Name: s.Name, BaseURL: s.BaseURL, TokenURL: s.TokenURL, ClientID: s.ClientID,
				ClientSecret: sec, Scopes: s.Scopes, Window: s.Window, Now: d.Now, Logger: d.Logger}, every: every})
		case "webhook":
			sec, err := readSecret(s.SecretFile)
			if err != nil {
				return fail(err)
			}
			bearer, err := readSecret(s.BearerFile)
			if err != nil {
				return fail(err)
			}
			h := &source.Webhook{Source: s.Name, Secret: []byte(sec), Bearer: bearer, Sink: eng, Now: d.Now, Logger: d.Logger}
			if err := h.Validate(); err != nil {
				return fail(err)
			}
			sys.hooks = append(sys.hooks, stagedHook{listen: s.Listen, h: h})
		}
	}
	return sys, nil
}

// ImportSources imports every file and staffing source once (for `iam
// sync`). With dry set nothing is written: the returned overlay holds each
// source's contributions as they would be, for RunOptions.Overlay. Errors
// of one source do not stop the others; all are returned joined.
func (s *System) ImportSources(ctx context.Context, dry bool) ([]*iam.ImportResult, map[string][]iam.Person, error) {
	var out []*iam.ImportResult
	overlay := map[string][]iam.Person{}
	var errs []error
	imp := func(name string, ps []iam.Person) {
		var res *iam.ImportResult
		var err error
		if dry {
			var eff []iam.Person
			res, eff, err = s.Engine.PreviewImport(ctx, name, ps)
			if eff != nil {
				overlay[name] = eff
			}
		} else {
			res, err = s.Engine.Import(ctx, name, ps, "source:"+name)
		}
		if err != nil {
			errs = append(errs, err)
		}
		if res != nil {
			out = append(out, res)
		}
	}
	for _, f := range s.files {
		ps, err := source.ParseFile(f.Path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		imp(f.Name, ps)
	}
	for _, st := range s.staffing {
		ps, err := st.src.Fetch(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		imp(st.src.Name, ps)
	}
	return out, overlay, errors.Join(errs...)
}

// Run runs the engine loop, the file watchers, the staffing pollers and the
// webhook listeners until ctx ends, then waits for all of them.
func (s *System) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2+len(s.files)+len(s.staffing)+2*len(s.hooks))
	wg.Add(1)
	go func() { defer wg.Done(); errs <- s.Engine.Run(ctx) }()
	for _, f := range s.files {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- f.Watch(ctx, s.Engine) }()
	}
	for _, st := range s.staffing {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- st.src.Poll(ctx, st.every, s.Engine) }()
	}
	for _, h := range s.hooks {
		ln, err := net.Listen("tcp", h.listen)
		if err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("iam/setup: webhook listen (addr=%s): %w", h.listen, err)
		}
		srv := &http.Server{Handler: h.h, ReadHeaderTimeout: 10 * time.Second}
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			<-ctx.Done()
			sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
			defer c()
			_ = srv.Shutdown(sctx)
		}()
		s.log.Info("iam: webhook listening", "source", h.h.Source, "addr", ln.Addr().String())
	}
	<-ctx.Done()
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		if err != nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

// Close releases the store and connector connections.
func (s *System) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	s.closers = nil
	return errors.Join(errs...)
}
