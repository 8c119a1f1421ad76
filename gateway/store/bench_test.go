package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Benchmarks: audit appends and replay Use per second on both backends at
// concurrency 1 and 8 (b.SetParallelism over GOMAXPROCS goroutines is not
// used: the count of concurrent callers is set exactly).
//
//	go test -run '^$' -bench . -benchtime 3s ./gateway/store/
func BenchmarkStore(b *testing.B) {
	for _, be := range []struct {
		name string
		dsn  func(b *testing.B) string
	}{
		{"sqlite", func(b *testing.B) string { return "sqlite:" + filepath.Join(b.TempDir(), "bench.db") }},
		{"postgres", func(b *testing.B) string { return testenvPostgres(b) }},
	} {
		for _, conc := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/AuditAppend/c%d", be.name, conc), func(b *testing.B) {
				s := benchStore(b, be.dsn(b))
				runConcurrent(b, conc, func(i int64) error {
					_, err := s.Append(context.Background(), auditRec(int(i)))
					return err
				})
			})
			b.Run(fmt.Sprintf("%s/Lookup/c%d", be.name, conc), func(b *testing.B) {
				// The per-message read path: FindEnrolment + FindMandate
				// (with the blocked-actor check) among 1000 patients.
				s := benchStore(b, be.dsn(b))
				ctx := context.Background()
				now := time.Now()
				for i := range 1000 {
					require.NoError(b, s.RegisterEnrolment(ctx, enrolment(fmt.Sprintf("_be%d", i), "12345678",
						fmt.Sprintf("9%08d", i), now.Add(-time.Hour), now.AddDate(1, 0, 0))))
				}
				require.NoError(b, s.RegisterMandate(ctx, mandate("_bm", "900000001", []string{"900000111"},
					now.Add(-time.Hour), now.AddDate(1, 0, 0), now.AddDate(1, 0, 0))))
				q := hotQuery("900000001", "900000111:30.000", now)
				runConcurrent(b, conc, func(i int64) error {
					if _, err := s.FindEnrolment(ctx, "12345678", fmt.Sprintf("9%08d", i%1000), now); err != nil {
						return err
					}
					_, err := s.FindMandate(ctx, q)
					return err
				})
			})
			b.Run(fmt.Sprintf("%s/ReplayUse/c%d", be.name, conc), func(b *testing.B) {
				s := benchStore(b, be.dsn(b))
				until := time.Now().Add(time.Hour)
				runConcurrent(b, conc, func(i int64) error {
					return s.Use(context.Background(), "urn:bench", fmt.Sprintf("_t%d", i), until)
				})
			})
		}
	}
}

func benchStore(b *testing.B, dsn string) Store {
	b.Helper()
	s, err := Open(context.Background(), dsn, Options{Logger: quietLogger()})
	require.NoError(b, err)
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// runConcurrent runs b.N calls of fn spread over conc goroutines and reports ops/s.
func runConcurrent(b *testing.B, conc int, fn func(i int64) error) {
	b.Helper()
	var next atomic.Int64
	errs := make(chan error, conc)
	b.ResetTimer()
	start := time.Now()
	for range conc {
		go func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					errs <- nil
					return
				}
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range conc {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
}
