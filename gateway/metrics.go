package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's own collectors. The HSM pool statistics come
// from package pkcs11, registered on the same registry by cmd.
type metrics struct {
	messages   *prometheus.CounterVec
	sign       prometheus.Histogram
	lsp        prometheus.Histogram
	inflight   prometheus.Gauge
	queueDepth prometheus.Gauge
	triggers   *prometheus.CounterVec
}

// latencyBuckets run from 0.25 ms to 10 s.
var latencyBuckets = []float64{.00025, .0005, .001, .002, .004, .008, .016, .032, .064, .128, .256, .512, 1, 2.5, 5, 10}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "aortagw", Name: "messages_total",
			Help: "XIS messages handled, by outcome (ok, or the fault code).",
		}, []string{"outcome"}),
		sign: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "aortagw", Name: "sign_seconds",
			Help: "Time to mint one transaction token with the server key.", Buckets: latencyBuckets,
		}),
		lsp: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "aortagw", Name: "lsp_seconds",
			Help: "Round trip to the LSP for one message.", Buckets: latencyBuckets,
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "aortagw", Name: "messages_in_flight", Help: "Messages being handled now.",
		}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "aortagw", Name: "trigger_queue_depth",
			Help: "Triggers waiting in the durable queue (as of the last poll).",
		}),
		triggers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "aortagw", Name: "triggers_total",
			Help: "Trigger queries finished, by outcome (done, failed, retried).",
		}, []string{"outcome"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.messages, m.sign, m.lsp, m.inflight, m.queueDepth, m.triggers} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Pre-create the outcome series so dashboards see zeros.
	m.messages.WithLabelValues("ok")
	for c := range codeStatus {
		m.messages.WithLabelValues(string(c))
	}
	return m, nil
}
