package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/iam/store"
	"github.com/aortagw/aortagw/internal/testenv"
)

// BenchmarkClaimRelease is the overhead the action claim adds to every real
// connector write (one claim + one release).
func BenchmarkClaimRelease(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			st := openBench(b, be)
			ctx := context.Background()
			now := time.Now()
			b.ResetTimer()
			for i := range b.N {
				key := fmt.Sprintf("grant|ad|p%d|uid=p%d|G", i, i)
				ok, err := st.ClaimAction(ctx, key, "bench", now, now.Add(time.Minute))
				if err != nil || !ok {
					b.Fatalf("claim: %v %v", ok, err)
				}
				if err := st.ReleaseAction(ctx, key, "bench"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAudit is one audit event (written after every applied action).
func BenchmarkAudit(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			st := openBench(b, be)
			ctx := context.Background()
			ev := iam.AuditEvent{At: time.Now(), Actor: "engine", Action: "grant", Target: "ad", Outcome: "ok"}
			b.ResetTimer()
			for range b.N {
				if err := st.Audit(ctx, ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func openBench(b *testing.B, be backend) store.Store {
	b.Helper()
	var dsn string
	if be.name == "sqlite" {
		dsn = "sqlite:" + b.TempDir() + "/iam.db"
	} else {
		dsn = testenv.PostgresDatabase(b)
	}
	st, err := store.OpenDSN(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	return st
}
