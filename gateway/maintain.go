package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrCRLRefused is returned (joined, per CRL) by RefreshCRLs for a CRL that was
// read but not taken: not signed by a configured CA, or older than the one in
// use (a lower CRL number or an earlier thisUpdate: never roll back).
var ErrCRLRefused = errors.New("gateway: crl refused")

// CRLUpdater receives a complete, verified CRL set (*tokens.Validator).
type CRLUpdater interface {
	UpdateCRLs([]*x509.RevocationList) error
}

// Purger is the part of the store the maintenance loop cleans up
// (store.Store).
type Purger interface {
	PurgeReplay(ctx context.Context) (int64, error)
	PurgeJobs(ctx context.Context, before time.Time) (int64, error)
}

// MaintainerConfig configures a Maintainer. CAs, Updater are required when
// CRLFiles is set; Store is optional (no purging without it).
type MaintainerConfig struct {
	// CRLFiles are re-read on every refresh (PEM or DER, as trust.crl_files).
	CRLFiles []string
	// CAs are the roots and intermediates a CRL must be signed by.
	CAs []*x509.Certificate
	// Initial is the CRL set loaded at start (already in the validator).
	Initial []*x509.RevocationList
	Updater CRLUpdater
	Store   Purger
	// Interval between maintenance passes; default 15 minutes.
	Interval time.Duration
	// JobRetention is how long done and dead trigger jobs are kept; default 30 days.
	JobRetention time.Duration
	Now          func() time.Time // default time.Now
	Logger       *slog.Logger     // default slog.Default()
	Registerer   prometheus.Registerer
}

// Maintainer is the gateway's maintenance loop: it re-reads the configured
// CRL files, takes each CRL that is signed by its issuer and newer than the
// one in use, hands the merged set to the validator, and purges the store's
// expired replay entries and old finished trigger jobs. Run is the loop (one
// goroutine, owned by the caller, ending when its context ends); RefreshCRLs,
// Purge and Check are safe for concurrent use. A CRL once loaded is never
// dropped: a file that disappears or turns bad keeps the last good CRL, which
// then goes stale and fails readiness (fail closed).
type Maintainer struct {
	cfg MaintainerConfig
	log *slog.Logger

	mu      sync.Mutex
	current map[string]*x509.RevocationList // by issuer certificate (sha256 of its DER)

	lastRefresh *prometheus.GaugeVec
	nextUpdate  *prometheus.GaugeVec
	refreshErrs prometheus.Counter
	purged      *prometheus.CounterVec
}

// NewMaintainer checks cfg, indexes the initial CRLs by issuer and registers
// the maintenance metrics. It does no I/O.
func NewMaintainer(cfg MaintainerConfig) (*Maintainer, error) {
	if cfg.Interval == 0 {
		cfg.Interval = 15 * time.Minute
	}
	if cfg.JobRetention == 0 {
		cfg.JobRetention = 30 * 24 * time.Hour
	}
	if cfg.Interval < 0 || cfg.JobRetention < 0 {
		return nil, fmt.Errorf("%w: maintenance interval and job retention must be positive (interval=%s retention=%s)", ErrConfig, cfg.Interval, cfg.JobRetention)
	}
	if (len(cfg.CRLFiles) > 0 || len(cfg.Initial) > 0) && (cfg.Updater == nil || len(cfg.CAs) == 0) {
		return nil, fmt.Errorf("%w: crl refresh needs the CAs and a validator", ErrConfig)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Maintainer{cfg: cfg, log: cfg.Logger.With("component", "maintain"), current: map[string]*x509.RevocationList{}}
	for _, l := range cfg.Initial {
		ca := m.issuerOf(l)
		if ca == nil {
			return nil, fmt.Errorf("%w: crl not signed by a configured ca (crl_issuer=%q)", ErrConfig, l.Issuer.String())
		}
		k := caKey(ca)
		if cur, ok := m.current[k]; !ok || newer(l, cur) {
			m.current[k] = l
		}
	}
	m.lastRefresh = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "aortagw", Name: "crl_last_refresh_timestamp_seconds",
		Help: "Unix time of the last successful read and verification of each issuer's CRL.",
	}, []string{"issuer"})
	m.nextUpdate = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "aortagw", Name: "crl_next_update_timestamp_seconds",
		Help: "NextUpdate of the CRL in use, per issuer (readiness fails after it).",
	}, []string{"issuer"})
	m.refreshErrs = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "aortagw", Name: "crl_refresh_errors_total",
		Help: "CRL refresh passes that failed or refused a CRL.",
	})
	m.purged = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "aortagw", Name: "store_purged_total",
		Help: "Rows removed by store maintenance (replay entries, finished trigger jobs).",
	}, []string{"what"})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{m.lastRefresh, m.nextUpdate, m.refreshErrs, m.purged} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("gateway: register maintenance metrics: %w", err)
			}
		}
	}
	now := cfg.Now()
	for _, l := range m.current {
		m.lastRefresh.WithLabelValues(l.Issuer.String()).Set(float64(now.Unix()))
		m.setNextUpdate(l)
	}
	return m, nil
}

func caKey(ca *x509.Certificate) string {
	h := sha256.Sum256(ca.Raw)
	return string(h[:])
}

// newer reports whether a should replace b: a higher CRL number (RFC 5280
// §5.2.3), or, without numbers, a later thisUpdate.
func newer(a, b *x509.RevocationList) bool {
	if a.Number != nil && b.Number != nil {
		if c := a.Number.Cmp(b.Number); c != 0 {
			return c > 0
		}
		return false
	}
	return a.ThisUpdate.After(b.ThisUpdate)
}

// older reports whether a would roll b back.
func older(a, b *x509.RevocationList) bool {
	if a.Number != nil && b.Number != nil && a.Number.Cmp(b.Number) != 0 {
		return a.Number.Cmp(b.Number) < 0
	}
	return a.ThisUpdate.Before(b.ThisUpdate)
}

func (m *Maintainer) issuerOf(l *x509.RevocationList) *x509.Certificate {
	for _, ca := range m.cfg.CAs {
		if string(ca.RawSubject) == string(l.RawIssuer) && l.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	return nil
}

func (m *Maintainer) setNextUpdate(l *x509.RevocationList) {
	if !l.NextUpdate.IsZero() {
		m.nextUpdate.WithLabelValues(l.Issuer.String()).Set(float64(l.NextUpdate.Unix()))
	}
}

// RefreshCRLs re-reads the CRL files once. Each CRL must be signed by a
// configured CA, must not be older than the one in use for that issuer (a
// lower CRL number is refused, never rolled back to) and must not begin in
// the future; a newer one replaces it, and when anything changed the merged
// set goes to the validator in one UpdateCRLs call. CRLs that were refused
// are reported (ErrCRLRefused) without stopping the others.
func (m *Maintainer) RefreshCRLs(ctx context.Context) error {
	if len(m.cfg.CRLFiles) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	read, err := LoadCRLs(m.cfg.CRLFiles)
	if err != nil {
		m.refreshErrs.Inc()
		return fmt.Errorf("gateway: crl refresh: %w", err)
	}
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[string]*x509.RevocationList, len(m.current))
	for k, l := range m.current {
		next[k] = l
	}
	var errs []error
	changed, ok := false, map[string]string{}
	for _, l := range read {
		ca := m.issuerOf(l)
		if ca == nil {
			errs = append(errs, fmt.Errorf("%w: not signed by a configured ca (crl_issuer=%q)", ErrCRLRefused, l.Issuer.String()))
			continue
		}
		if l.ThisUpdate.After(now.Add(5 * time.Minute)) {
			errs = append(errs, fmt.Errorf("%w: this_update in the future (crl_issuer=%q this_update=%s)", ErrCRLRefused, l.Issuer.String(), l.ThisUpdate.UTC().Format(time.RFC3339)))
			continue
		}
		k := caKey(ca)
		cur, have := next[k]
		switch {
		case !have || newer(l, cur):
			next[k] = l
			changed = true
		case older(l, cur) && cur == m.current[k]:
			errs = append(errs, fmt.Errorf("%w: older than the crl in use, not rolled back (crl_issuer=%q number=%v current=%v)", ErrCRLRefused, l.Issuer.String(), l.Number, cur.Number))
			continue
		}
		ok[k] = l.Issuer.String()
	}
	if changed {
		set := make([]*x509.RevocationList, 0, len(next))
		for _, l := range next {
			set = append(set, l)
		}
		if err := m.cfg.Updater.UpdateCRLs(set); err != nil {
			m.refreshErrs.Inc()
			return fmt.Errorf("gateway: crl refresh: update validator: %w", errors.Join(append(errs, err)...))
		}
		for k, l := range next {
			if m.current[k] != l {
				m.log.Info("crl updated", "issuer", l.Issuer.String(), "number", l.Number, "next_update", l.NextUpdate.UTC().Format(time.RFC3339))
			}
		}
		m.current = next
	}
	for k, issuer := range ok {
		m.lastRefresh.WithLabelValues(issuer).Set(float64(now.Unix()))
		m.setNextUpdate(m.current[k])
	}
	if err := errors.Join(errs...); err != nil {
		m.refreshErrs.Inc()
		return fmt.Errorf("gateway: crl refresh: %w", err)
	}
	return nil
}

// Check is the readiness check for CRL freshness: it fails when a CRL in
// use is past its NextUpdate (the gateway keeps refusing until a newer CRL
// has been loaded).
func (m *Maintainer) Check(context.Context) error {
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, c := range m.current {
		if !c.NextUpdate.IsZero() && now.After(c.NextUpdate) {
			errs = append(errs, fmt.Errorf("crl of %s is stale (next_update=%s)", c.Issuer, c.NextUpdate.UTC().Format(time.RFC3339)))
		}
	}
	return errors.Join(errs...)
}

// Purge removes expired replay entries and done/dead trigger jobs older
// than the job retention.
func (m *Maintainer) Purge(ctx context.Context) error {
	if m.cfg.Store == nil {
		return nil
	}
	var errs []error
	if n, err := m.cfg.Store.PurgeReplay(ctx); err != nil {
		errs = append(errs, fmt.Errorf("gateway: purge replay: %w", err))
	} else {
		m.purged.WithLabelValues("replay").Add(float64(n))
	}
	if n, err := m.cfg.Store.PurgeJobs(ctx, m.cfg.Now().Add(-m.cfg.JobRetention)); err != nil {
		errs = append(errs, fmt.Errorf("gateway: purge jobs: %w", err))
	} else {
		m.purged.WithLabelValues("jobs").Add(float64(n))
	}
	return errors.Join(errs...)
}

// RunOnce does one maintenance pass (CRL refresh, then purge) and logs
// what failed.
func (m *Maintainer) RunOnce(ctx context.Context) {
	if err := m.RefreshCRLs(ctx); err != nil && ctx.Err() == nil {
		m.log.Error("crl refresh failed; the crls in use stay", "err", err)
	}
	if err := m.Purge(ctx); err != nil && ctx.Err() == nil {
		m.log.Error("store maintenance failed", "err", err)
	}
}

// Run does a maintenance pass at once and then every Interval, until ctx
// ends. It returns when ctx is done; the caller owns the goroutine.
func (m *Maintainer) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		m.RunOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
