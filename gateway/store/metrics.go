package store

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// storeMetrics are registered on Options.Registerer:
//
//	aortagw_store_audit_append_seconds  histogram of Append latency (commit included)
//	aortagw_store_queue_jobs{state}     jobs per state, read from the database at scrape time
//	                                    (so every replica reports the shared queue)
type storeMetrics struct {
	appendSeconds prometheus.Histogram
	queue         *queueCollector
}

type queueCollector struct {
	s    *sqlStore
	desc *prometheus.Desc
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	depth, err := c.s.QueueDepth(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, st := range AllJobStates {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(depth[st]), string(st))
	}
}

func (s *sqlStore) registerMetrics(reg prometheus.Registerer) error {
	m := &storeMetrics{
		appendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "aortagw_store_audit_append_seconds",
			Help:    "Latency of appending one audit record, commit included.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, 1},
		}),
		queue: &queueCollector{s: s, desc: prometheus.NewDesc("aortagw_store_queue_jobs",
			"Trigger jobs per state in the shared queue.", []string{"state"}, nil)},
	}
	s.metrics = m
	if reg == nil {
		return nil
	}
	if err := reg.Register(m.appendSeconds); err != nil {
		return err
	}
	if err := reg.Register(m.queue); err != nil {
		reg.Unregister(m.appendSeconds)
		return err
	}
	return nil
}

func (m *storeMetrics) unregister(reg prometheus.Registerer) {
	reg.Unregister(m.appendSeconds)
	reg.Unregister(m.queue)
}
