package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkHotLookups measures the three store look-ups the gateway makes per
// proxied message (FindEnrolment, ActorBlocked, FindMandate), one caller, with
// a few hundred tokens registered:
//
//	go test -run '^$' -bench HotLookups -benchtime 2000x -count 3 ./gateway/store/
func BenchmarkHotLookups(b *testing.B) {
	for _, be := range []struct {
		name string
		dsn  func(b *testing.B) string
	}{
		{"sqlite", func(b *testing.B) string { return "sqlite:" + filepath.Join(b.TempDir(), "bench.db") }},
		{"postgres", func(b *testing.B) string { return testenvPostgres(b) }},
	} {
		b.Run(be.name, func(b *testing.B) {
			const (
				patients = 200
				givers   = 100
			)
			s := benchStore(b, be.dsn(b))
			ctx := context.Background()
			now := time.Now()
			for i := range patients {
				require.NoError(b, s.RegisterEnrolment(ctx, enrolment(fmt.Sprintf("_he%d", i), "12345678",
					fmt.Sprintf("9%08d", i), now.Add(-time.Hour), now.AddDate(1, 0, 0))))
			}
			for i := range givers {
				require.NoError(b, s.RegisterMandate(ctx, mandate(fmt.Sprintf("_hm%d", i), fmt.Sprintf("90%07d", i),
					[]string{fmt.Sprintf("91%07d", i), fmt.Sprintf("92%07d:30.000", i), "urn:oid:2.16.840.1.113883.2.4.6.6:app"},
					now.Add(-time.Hour), now.AddDate(1, 0, 0), now.AddDate(1, 0, 0))))
			}
			bsns := make([]string, patients)
			for i := range bsns {
				bsns[i] = fmt.Sprintf("9%08d", i)
			}
			qs := make([]MandateQuery, givers)
			for i := range qs {
				qs[i] = MandateQuery{URA: "12345678", GiverUZI: fmt.Sprintf("90%07d", i), ApplicationID: "urn:app:hix",
					Context: testCtxURI, Actor: fmt.Sprintf("91%07d:01.015", i), At: now}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := s.FindEnrolment(ctx, "12345678", bsns[i%patients], now); err != nil {
					b.Fatal(err)
				}
				q := qs[i%givers]
				if blocked, err := s.ActorBlocked(ctx, uziOf(q.Actor)); err != nil || blocked {
					b.Fatal(blocked, err)
				}
				if _, err := s.FindMandate(ctx, q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
