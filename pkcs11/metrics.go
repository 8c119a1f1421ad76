//go:build cgo && !nopkcs11

package pkcs11

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the collectors of one Registerer, shared by every Key registered on it.
type metrics struct {
	capacity  *prometheus.GaugeVec
	inUse     *prometheus.GaugeVec
	waits     *prometheus.CounterVec
	evictions *prometheus.CounterVec
	relogins  *prometheus.CounterVec
	logins    *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	errs      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		capacity: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "aortagw", Subsystem: "pkcs11",
			Name: "pool_capacity", Help: "Sessions the token's pool may hold."}, []string{"token"}),
		inUse: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "aortagw", Subsystem: "pkcs11",
			Name: "pool_in_use", Help: "Sessions currently borrowed for an operation."}, []string{"token"}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "aortagw", Subsystem: "pkcs11",
			Name: "pool_waits_total", Help: "Operations that had to wait for a free session."}, []string{"token"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "aortagw", Subsystem: "pkcs11",
			Name: "pool_evictions_total", Help: "Sessions closed after an error or during recovery."}, []string{"token"}),
		relogins: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "aortagw", Subsystem: "pkcs11",
			Name: "relogins_total", Help: "Successful token recoveries (re-open and re-login)."}, []string{"token"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "aortagw", Subsystem: "pkcs11",
			Name: "login_attempts_total", Help: "C_Login calls (user and context-specific)."}, []string{"token"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "aortagw", Subsystem: "pkcs11",
			Name: "sign_duration_seconds", Help: "Signature latency including the wait for a session.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10}}, []string{"token"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "aortagw", Subsystem: "pkcs11",
			Name: "errors_total", Help: "Failed module calls and operations by return code (bounded set)."},
			[]string{"token", "code"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.capacity = register(reg, m.capacity, &err)
	m.inUse = register(reg, m.inUse, &err)
	m.waits = register(reg, m.waits, &err)
	m.evictions = register(reg, m.evictions, &err)
	m.relogins = register(reg, m.relogins, &err)
	m.logins = register(reg, m.logins, &err)
	m.latency = register(reg, m.latency, &err)
	m.errs = register(reg, m.errs, &err)
	return m, err
}

// register registers c, or returns the collector already registered under the same name (a
// second Key on the same Registerer).
func register[C prometheus.Collector](reg prometheus.Registerer, c C, errp *error) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if ex, ok := are.ExistingCollector.(C); ok {
				return ex
			}
		}
		if *errp == nil {
			*errp = err
		}
	}
	return c
}

// tokenMetrics are the children for one token label, resolved once.
type tokenMetrics struct {
	capacity, inUse                    prometheus.Gauge
	waits, evictions, relogins, logins prometheus.Counter
	latency                            prometheus.Observer
	errs                               *prometheus.CounterVec
	label                              string
}

func (m *metrics) forToken(label string) *tokenMetrics {
	return &tokenMetrics{
		capacity: m.capacity.WithLabelValues(label), inUse: m.inUse.WithLabelValues(label),
		waits: m.waits.WithLabelValues(label), evictions: m.evictions.WithLabelValues(label),
		relogins: m.relogins.WithLabelValues(label), logins: m.logins.WithLabelValues(label),
		latency: m.latency.WithLabelValues(label), errs: m.errs, label: label,
	}
}

func (tm *tokenMetrics) errors(err error) prometheus.Counter {
	return tm.errs.WithLabelValues(tm.label, codeLabel(err))
}
