package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/iam/connector/mandate"
	"github.com/aortagw/aortagw/iam/store"
	"github.com/aortagw/aortagw/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// database/sql's connection opener of pools closed by t.Cleanup
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"))
}

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

// backend makes a fresh, empty database and returns its DSN.
type backend struct {
	name   string
	newDSN func(t *testing.T) string
}

// backends is every implementation the shared suite runs against. The
// PostgreSQL one needs the server at 127.0.0.1:5432: it skips locally when
// that is missing and fails under CI (internal/testenv).
var backends = []backend{
	{name: "sqlite", newDSN: func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "iam.db") }},
	{name: "postgres", newDSN: func(t *testing.T) string { return testenv.PostgresDatabase(t) }},
}

func open(t *testing.T, dsn string) store.Store {
	t.Helper()
	st, err := store.OpenDSN(context.Background(), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// each runs fn once per backend on a fresh database.
func each(t *testing.T, fn func(t *testing.T, dsn string, st store.Store)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			dsn := b.newDSN(t)
			st := open(t, dsn)
			require.Equal(t, b.name, st.Backend())
			fn(t, dsn, st)
		})
	}
}

func TestPersons(t *testing.T) {
	each(t, func(t *testing.T, _ string, st store.Store) {
		ctx := context.Background()
		require.NoError(t, st.SaveSourcePersons(ctx, "hr", []iam.Person{{ID: "p2", GivenName: "Bo"}, {ID: "p1", GivenName: "An"}}, nil))
		require.NoError(t, st.SaveSourcePersons(ctx, "roster", []iam.Person{{ID: "p1", Email: "an@x"}}, nil))

		hr, err := st.SourcePersons(ctx, "hr")
		require.NoError(t, err)
		require.Len(t, hr, 2)
		assert.Equal(t, "p1", hr[0].ID, "ordered by id")
		assert.Equal(t, "hr", hr[0].Source, "source is stamped on save")

		c, err := st.PersonContributions(ctx, "p1")
		require.NoError(t, err)
		require.Len(t, c, 2)
		assert.Equal(t, []string{"hr", "roster"}, []string{c[0].Source, c[1].Source})

		// update plus tombstone (and a removal of an unknown ID is ignored)
		require.NoError(t, st.SaveSourcePersons(ctx, "hr", []iam.Person{{ID: "p1", GivenName: "Anna"}}, []string{"p2", "nobody"}))
		hr, err = st.SourcePersons(ctx, "hr")
		require.NoError(t, err)
		require.Len(t, hr, 2)
		assert.Equal(t, "Anna", hr[0].GivenName)
		assert.False(t, hr[0].Removed)
		assert.True(t, hr[1].Removed, "removed persons stay as tombstones")
		assert.Equal(t, "Bo", hr[1].GivenName, "the tombstone keeps the last known record")

		all, err := st.AllSourcePersons(ctx)
		require.NoError(t, err)
		assert.Len(t, all, 3)
	})
}

func TestCancelledSaveChangesNothing(t *testing.T) {
	each(t, func(t *testing.T, _ string, st store.Store) {
		ctx, cancel := context.WithCancel(context.Background())
		require.NoError(t, st.SaveSourcePersons(ctx, "hr", []iam.Person{{ID: "p1"}}, nil))
		cancel()
		err := st.SaveSourcePersons(ctx, "hr", []iam.Person{{ID: "p2"}, {ID: "p3"}}, []string{"p1"})
		require.Error(t, err)
		got, err := st.SourcePersons(context.Background(), "hr")
		require.NoError(t, err)
		require.Len(t, got, 1, "a failed save changes nothing")
		assert.False(t, got[0].Removed)
	})
}

func TestBlockedAndPendingImports(t *testing.T) {
	each(t, func(t *testing.T, _ string, st store.Store) {
		ctx := context.Background()
		require.NoError(t, st.SetBlocked(ctx, iam.BlockedPerson{Source: "hr", ID: "p1", Missing: []string{"email"}, At: t0}))
		require.NoError(t, st.SetBlocked(ctx, iam.BlockedPerson{Source: "hr", ID: "p1", Missing: []string{"email", "department"}, At: t0}))
		bl, err := st.Blocked(ctx)
		require.NoError(t, err)
		require.Len(t, bl, 1)
		assert.Equal(t, []string{"email", "department"}, bl[0].Missing)
		assert.True(t, bl[0].At.Equal(t0))
		require.NoError(t, st.SetBlocked(ctx, iam.BlockedPerson{Source: "hr", ID: "p1"}))
		bl, err = st.Blocked(ctx)
		require.NoError(t, err)
		assert.Empty(t, bl)

		pi := iam.PendingImport{ID: "imp-1", Source: "hr", At: t0, Reason: "removes 30", Removed: []string{"p1"}, Persons: []iam.Person{{ID: "p2"}}}
		require.NoError(t, st.SavePendingImport(ctx, pi))
		assert.Error(t, st.SavePendingImport(ctx, pi), "an import ID is stored once")
		got, err := st.PendingImport(ctx, "imp-1")
		require.NoError(t, err)
		assert.Equal(t, pi.Removed, got.Removed)
		assert.Equal(t, "p2", got.Persons[0].ID)
		_, err = st.PendingImport(ctx, "imp-x")
		assert.ErrorIs(t, err, iam.ErrNotFound)
		list, err := st.PendingImports(ctx)
		require.NoError(t, err)
		assert.Len(t, list, 1)
		require.NoError(t, st.DeletePendingImport(ctx, "imp-1"))
		list, err = st.PendingImports(ctx)
		require.NoError(t, err)
		assert.Empty(t, list)
	})
}

func TestGrantsAndExclusions(t *testing.T) {
	each(t, func(t *testing.T, _ string, st store.Store) {
		ctx := context.Background()
		g := iam.Grant{ID: "g1", PersonID: "p1", Entitlement: iam.Entitlement{Target: "ad", Permission: "EPD"}, Reason: "project", Until: t0.AddDate(0, 1, 0), By: "admin", CreatedAt: t0}
		require.NoError(t, st.AddGrant(ctx, g))
		assert.Error(t, st.AddGrant(ctx, g), "a grant ID is stored once")
		require.NoError(t, st.RevokeGrant(ctx, "g1", "security", t0.Add(time.Hour)))
		assert.ErrorIs(t, st.RevokeGrant(ctx, "g-none", "security", t0), iam.ErrNotFound)
		gs, err := st.Grants(ctx)
		require.NoError(t, err)
		require.Len(t, gs, 1)
		assert.Equal(t, "security", gs[0].RevokedBy)
		assert.True(t, gs[0].RevokedAt.Equal(t0.Add(time.Hour)))
		assert.Equal(t, "EPD", gs[0].Entitlement.Permission)

		require.NoError(t, st.AddExclusion(ctx, iam.Exclusion{PersonID: "p1", Reason: "a", By: "x"}))
		require.NoError(t, st.AddExclusion(ctx, iam.Exclusion{PersonID: "p1", Reason: "b", By: "x", Until: t0}))
		xs, err := st.Exclusions(ctx)
		require.NoError(t, err)
		require.Len(t, xs, 1, "one exclusion per person")
		assert.Equal(t, "b", xs[0].Reason)
	})
}

func TestBookkeeping(t *testing.T) {
	each(t, func(t *testing.T, _ string, st store.Store) {
		ctx := context.Background()
		require.NoError(t, st.SetDisabledSince(ctx, "ad", "uid=a", t0))
		require.NoError(t, st.SetDisabledSince(ctx, "ad", "uid=a", t0.Add(48*time.Hour)))
		ds, err := st.DisabledSince(ctx)
		require.NoError(t, err)
		assert.True(t, ds["ad|uid=a"].Equal(t0), "re-disabling keeps the first moment (grace period)")
		require.NoError(t, st.SetDisabledSince(ctx, "ad", "uid=a", time.Time{}))
		ds, err = st.DisabledSince(ctx)
		require.NoError(t, err)
		assert.Empty(t, ds)

		require.NoError(t, st.SetFailed(ctx, "create|ad|p1||", true, "boom"))
		require.NoError(t, st.SetFailed(ctx, "create|ad|p1||", true, "again"))
		require.NoError(t, st.SetFailed(ctx, "grant|ad|p2|r|G", true, "x"))
		f, err := st.Failed(ctx)
		require.NoError(t, err)
		assert.Equal(t, map[string]bool{"create|ad|p1||": true, "grant|ad|p2|r|G": true}, f)
		require.NoError(t, st.SetFailed(ctx, "create|ad|p1||", false, ""))
		f, err = st.Failed(ctx)
		require.NoError(t, err)
		assert.Equal(t, map[string]bool{"grant|ad|p2|r|G": true}, f)
	})
}

func TestDeviationsResolutionsCampaigns(t *testing.T) {
	each(t, func(t *testing.T, _ string, st store.Store) {
		ctx := context.Background()
		require.NoError(t, st.SaveDeviations(ctx, []iam.Deviation{{Key: "k2", Type: iam.DevUnmanagedAccount}, {Key: "k1"}, {Key: "k2"}}))
		require.NoError(t, st.SaveDeviations(ctx, []iam.Deviation{{Key: "z"}, {Key: "a", Target: "ad"}}))
		ds, err := st.Deviations(ctx)
		require.NoError(t, err)
		require.Len(t, ds, 2, "the report is replaced")
		assert.Equal(t, []string{"z", "a"}, []string{ds[0].Key, ds[1].Key}, "report order is kept")

		require.NoError(t, st.AddResolution(ctx, iam.Resolution{Key: "a", Action: iam.ResolveAccept, By: "x", At: t0}))
		require.NoError(t, st.AddResolution(ctx, iam.Resolution{Key: "a", Action: iam.ResolveFix, By: "y", At: t0}))
		rs, err := st.Resolutions(ctx)
		require.NoError(t, err)
		require.Len(t, rs, 1)
		assert.Equal(t, iam.ResolveFix, rs["a"].Action)

		require.NoError(t, st.SaveCampaign(ctx, iam.Campaign{ID: "c2", Name: "Q4", CreatedAt: t0.Add(time.Hour)}))
		require.NoError(t, st.SaveCampaign(ctx, iam.Campaign{ID: "c1", Name: "Q3", CreatedAt: t0}))
		require.NoError(t, st.SaveCampaign(ctx, iam.Campaign{ID: "c2", Name: "Q4b", CreatedAt: t0.Add(time.Hour)}))
		cs, err := st.Campaigns(ctx)
		require.NoError(t, err)
		require.Len(t, cs, 2)
		assert.Equal(t, []string{"c1", "c2"}, []string{cs[0].ID, cs[1].ID}, "oldest first")
		c, err := st.Campaign(ctx, "c2")
		require.NoError(t, err)
		assert.Equal(t, "Q4b", c.Name)
		_, err = st.Campaign(ctx, "none")
		assert.ErrorIs(t, err, iam.ErrNotFound)
	})
}

func TestAuditAndLedger(t *testing.T) {
	each(t, func(t *testing.T, _ string, st store.Store) {
		ctx := context.Background()
		for i := range 5 {
			require.NoError(t, st.Audit(ctx, iam.AuditEvent{At: t0.Add(time.Duration(i) * time.Second), Action: fmt.Sprintf("a%d", i), Outcome: "ok"}))
		}
		require.NoError(t, st.Audit(ctx, iam.AuditEvent{Action: "a5"}, iam.AuditEvent{Action: "a6"}))
		log, err := st.AuditLog(ctx, 3)
		require.NoError(t, err)
		require.Len(t, log, 3)
		assert.Equal(t, []string{"a4", "a5", "a6"}, []string{log[0].Action, log[1].Action, log[2].Action}, "newest n, oldest first")
		log, err = st.AuditLog(ctx, 0)
		require.NoError(t, err)
		assert.Len(t, log, 7)

		_, ok, err := st.MandateActor(ctx, "123")
		require.NoError(t, err)
		assert.False(t, ok)
		require.NoError(t, st.PutMandateActor(ctx, mandate.Actor{UZI: "123", PersonID: "p1", Blocked: true, Revoked: 2, UpdatedAt: t0}))
		require.NoError(t, st.PutMandateActor(ctx, mandate.Actor{UZI: "123", PersonID: "p1", Blocked: false, UpdatedAt: t0}))
		a, ok, err := st.MandateActor(ctx, "123")
		require.NoError(t, err)
		require.True(t, ok)
		assert.False(t, a.Blocked)
		as, err := st.MandateActors(ctx)
		require.NoError(t, err)
		assert.Len(t, as, 1)
	})
}

func TestReopenKeepsStateAndSchema(t *testing.T) {
	each(t, func(t *testing.T, dsn string, st store.Store) {
		ctx := context.Background()
		require.NoError(t, st.AddExclusion(ctx, iam.Exclusion{PersonID: "p1", Reason: "r", By: "x"}))
		require.NoError(t, st.Close())
		again := open(t, dsn)
		xs, err := again.Exclusions(ctx)
		require.NoError(t, err)
		assert.Len(t, xs, 1)
		v, err := again.(interface {
			SchemaVersion(context.Context) (int, error)
		}).SchemaVersion(ctx)
		require.NoError(t, err)
		assert.Equal(t, 2, v)
	})
}

// TestConcurrentMigration starts several replicas on one empty database at
// once: every one opens, and each migration is recorded exactly once.
func TestConcurrentMigration(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			dsn := b.newDSN(t)
			const n = 4
			stores := make([]store.Store, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					stores[i], errs[i] = store.OpenDSN(context.Background(), dsn)
				}()
			}
			wg.Wait()
			for i := range n {
				require.NoError(t, errs[i], "replica %d", i)
				t.Cleanup(func() { _ = stores[i].Close() })
			}
			db := stores[0].(interface{ DB() *sql.DB }).DB()
			var rows, distinct int
			require.NoError(t, db.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_migrations`).Scan(&rows, &distinct))
			assert.Equal(t, 2, rows)
			assert.Equal(t, 2, distinct)
		})
	}
}

// TestSchemaMismatchIsRefused: a database migrated by a newer release, or
// whose applied migration differs from this binary's, is not opened.
func TestSchemaMismatchIsRefused(t *testing.T) {
	tests := []struct {
		name string
		sql  string
	}{
		{name: "newer", sql: `INSERT INTO schema_migrations (version, name, sha256, applied_at) VALUES (99, '0099_future', 'x', 0)`},
		{name: "changed", sql: `UPDATE schema_migrations SET sha256 = 'tampered' WHERE version = 1`},
	}
	each(t, func(t *testing.T, dsn string, st store.Store) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				db := st.(interface{ DB() *sql.DB }).DB()
				tx, err := db.Begin()
				require.NoError(t, err)
				_, err = tx.Exec(tc.sql)
				require.NoError(t, err)
				require.NoError(t, tx.Commit())
				_, err = store.OpenDSN(context.Background(), dsn)
				assert.ErrorIs(t, err, store.ErrSchema)
				_, err = db.Exec(`DELETE FROM schema_migrations WHERE version = 99`)
				require.NoError(t, err)
			})
		}
	})
}

// TestTwoReplicasClaimActions: two store instances on the same database
// (two replicas) race to claim the same actions; each action is won by
// exactly one replica, the loser can take it after release or expiry.
func TestTwoReplicasClaimActions(t *testing.T) {
	each(t, func(t *testing.T, dsn string, a store.Store) {
		b := open(t, dsn)
		ctx := context.Background()
		const n = 40
		until := t0.Add(time.Minute)
		wins := [2][]bool{make([]bool, n), make([]bool, n)}
		errs := [2]error{}
		var wg sync.WaitGroup
		for r, st := range []store.Store{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range n {
					ok, err := st.ClaimAction(ctx, fmt.Sprintf("create|ad|p%d||", i), fmt.Sprintf("replica-%d", r), t0, until)
					if err != nil {
						errs[r] = err
						return
					}
					wins[r][i] = ok
				}
			}()
		}
		wg.Wait()
		require.NoError(t, errs[0])
		require.NoError(t, errs[1])
		for i := range n {
			assert.True(t, wins[0][i] != wins[1][i], "action %d claimed by exactly one replica (a=%v b=%v)", i, wins[0][i], wins[1][i])
		}

		act := "disable|ad|p1|uid=p1|"
		ok, err := a.ClaimAction(ctx, act, "A", t0, until)
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = b.ClaimAction(ctx, act, "B", t0.Add(time.Second), until)
		require.NoError(t, err)
		assert.False(t, ok, "held by A")
		ok, err = a.ClaimAction(ctx, act, "A", t0.Add(time.Second), until.Add(time.Minute))
		require.NoError(t, err)
		assert.True(t, ok, "the owner may renew")
		require.NoError(t, b.ReleaseAction(ctx, act, "B"))
		ok, err = b.ClaimAction(ctx, act, "B", t0.Add(2*time.Second), until)
		require.NoError(t, err)
		assert.False(t, ok, "another owner cannot release A's lease")
		require.NoError(t, a.ReleaseAction(ctx, act, "A"))
		ok, err = b.ClaimAction(ctx, act, "B", t0.Add(2*time.Second), until)
		require.NoError(t, err)
		assert.True(t, ok, "free after release")
		ok, err = a.ClaimAction(ctx, act, "A", until, until.Add(time.Minute))
		require.NoError(t, err)
		assert.True(t, ok, "an expired lease (crashed holder) is taken over")
	})
}

func TestOpenDSN(t *testing.T) {
	tests := []struct {
		name string
		dsn  string
	}{
		{name: "empty", dsn: ""},
		{name: "unknown scheme", dsn: "mysql://root:secret@db/iam"},
		{name: "bad postgres", dsn: "postgres://user:secret@127.0.0.1:5432/x?sslmode=bogus"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := store.OpenDSN(context.Background(), tc.dsn)
			require.Error(t, err)
			assert.ErrorIs(t, err, iam.ErrInvalid)
			assert.NotContains(t, err.Error(), "secret", "no password in errors")
		})
	}
	assert.Equal(t, "postgres://u:xxxxx@h/db", store.Redact("postgres://u:pw@h/db"))
	assert.NotContains(t, store.Redact("postgres://h/db?password=pw"), "pw")
	assert.Equal(t, "/var/lib/iam.db", store.Redact("/var/lib/iam.db"))
}

func TestPostgresUnreachableFailsClosed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// port 1 on loopback: connection refused at once
	_, err := store.OpenDSN(ctx, "postgres://u:secret@127.0.0.1:1/iam?sslmode=disable&connect_timeout=2")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "secret")
}
