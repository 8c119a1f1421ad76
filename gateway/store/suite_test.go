package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/aortagw/aortagw/internal/testenv"
	"github.com/aortagw/aortagw/tokens"
)

func TestMain(m *testing.M) {
	if dsn := os.Getenv(childEnv); dsn != "" {
		os.Exit(runChild(dsn))
	}
	goleak.VerifyTestMain(m)
}

// backend is one implementation under test: newDSN returns the DSN of a
// fresh, empty database (opened as many times as a test likes, like replicas).
type testBackend struct {
	name   string
	newDSN func(t *testing.T) string
}

func testBackends() []testBackend {
	return []testBackend{
		{name: "sqlite", newDSN: func(t *testing.T) string {
			return "sqlite:" + filepath.Join(t.TempDir(), "store.db")
		}},
		{name: "postgres", newDSN: func(t *testing.T) string {
			return testenv.PostgresDatabase(t)
		}},
	}
}

// fakeClock is a settable clock shared by the "replicas" of a test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openStore(t *testing.T, dsn string, clk *fakeClock) *sqlStore {
	t.Helper()
	var n atomic.Int64
	s, err := Open(context.Background(), dsn, Options{
		Now:    clk.Now,
		NewID:  func() string { return fmt.Sprintf("id-%d-%d", time.Now().UnixNano(), n.Add(1)) },
		Logger: quietLogger(),
		Retry:  RetryPolicy{Base: time.Minute, Max: 10 * time.Minute, MaxAttempts: 3},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s.(*sqlStore)
}

// TestStore runs the one suite against every implementation.
func TestStore(t *testing.T) {
	suite := []struct {
		name string
		run  func(t *testing.T, newDSN func(*testing.T) string)
	}{
		{"Migrations", testMigrations},
		{"Enrolments", testEnrolments},
		{"Mandates", testMandates},
		{"RevocationAcrossReplicas", testRevocationAcrossReplicas},
		{"Expiring", testExpiring},
		{"Replay", testReplay},
		{"AuditChain", testAuditChain},
		{"AuditConcurrentReplicas", testAuditConcurrentReplicas},
		{"AuditTamper", testAuditTamper},
		{"Queue", testQueue},
		{"QueueRecovery", testQueueRecovery},
		{"QueueIdleClaimRecovers", testQueueIdleClaimRecovers},
		{"QueueConcurrentClaim", testQueueConcurrentClaim},
		{"Metrics", testMetrics},
	}
	for _, b := range testBackends() {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range suite {
				t.Run(tc.name, func(t *testing.T) { tc.run(t, b.newDSN) })
			}
		})
	}
}

func TestOpenBadDSN(t *testing.T) {
	tests := []struct {
		name, dsn string
		want      error
	}{
		{name: "empty", dsn: "", want: ErrBadDSN},
		{name: "mysql", dsn: "mysql://x", want: ErrBadDSN},
		{name: "sqlite with query", dsn: "sqlite:/tmp/x.db?_pragma=foo", want: ErrBadDSN},
		{name: "sqlite empty path", dsn: "sqlite:", want: ErrBadDSN},
		{name: "postgres garbage", dsn: "postgres://user:secret@[::1", want: ErrBadDSN},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(context.Background(), tc.dsn, Options{Logger: quietLogger()})
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.want)
			assert.NotContains(t, err.Error(), "secret")
		})
	}
}

func testMigrations(t *testing.T, newDSN func(*testing.T) string) {
	dsn := newDSN(t)
	clk := newClock()
	// Replicas starting at the same moment: all succeed, each migration once.
	const replicas = 4
	stores := make([]Store, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = Open(context.Background(), dsn, Options{Now: clk.Now, Logger: quietLogger()})
		}()
	}
	wg.Wait()
	for i := range replicas {
		require.NoError(t, errs[i])
		defer stores[i].Close()
	}
	s := stores[0].(*sqlStore)
	ms, err := migrations(s.d)
	require.NoError(t, err)
	var n, maxV int
	require.NoError(t, s.b.read().queryRow(context.Background(), "SELECT COUNT(*), MAX(version) FROM schema_migrations").Scan(&n, &maxV))
	assert.Equal(t, len(ms), n)
	assert.Equal(t, len(ms), maxV)

	if path, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
		for _, f := range []string{path, path + "-wal"} {
			st, err := os.Stat(f)
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "%s holds patient data: owner only", f)
		}
	}

	// A database migrated by a newer binary is refused.
	require.NoError(t, s.b.tx(context.Background(), func(q querier) error {
		_, err := q.exec(context.Background(), "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 'x')")
		return err
	}))
	_, err = Open(context.Background(), dsn, Options{Now: clk.Now, Logger: quietLogger()})
	assert.ErrorIs(t, err, ErrSchemaTooNew)
}

func enrolment(id, ura, bsn string, nb, noa time.Time) Enrolment {
	return Enrolment{ID: id, Issuer: "urn:IIroot:2.16.528.1.1007.3.3:IIext:" + ura, URA: ura, BSN: bsn,
		SignerUZI: "900000001", IssueInstant: nb, NotBefore: nb, NotOnOrAfter: noa,
		CertNotAfter: noa.AddDate(1, 0, 0), Raw: []byte("<saml:Assertion ID=\"" + id + "\">\r\n  signed\t</saml:Assertion>"),
		RegisteredBy: "admin"}
}

func testEnrolments(t *testing.T, newDSN func(*testing.T) string) {
	ctx := context.Background()
	clk := newClock()
	s := openStore(t, newDSN(t), clk)
	now := clk.Now()

	old := enrolment("_e-old", "12345678", "999990019", now.Add(-48*time.Hour), now.AddDate(1, 0, 0))
	newer := enrolment("_e-new", "12345678", "999990019", now.Add(-time.Hour), now.AddDate(1, 6, 0))
	future := enrolment("_e-future", "12345678", "999990019", now.Add(time.Hour), now.AddDate(1, 6, 0))
	other := enrolment("_e-other", "87654321", "999990019", now.Add(-time.Hour), now.AddDate(1, 0, 0))
	for _, e := range []Enrolment{old, newer, future, other} {
		require.NoError(t, s.RegisterEnrolment(ctx, e))
	}

	got, err := s.FindEnrolment(ctx, "12345678", "999990019", now)
	require.NoError(t, err)
	assert.Equal(t, "_e-new", got.ID, "newest valid enrolment wins")
	assert.Equal(t, newer.Raw, got.Raw, "raw signed bytes come back byte for byte")
	assert.Equal(t, micro(newer.NotOnOrAfter), got.NotOnOrAfter)
	assert.Nil(t, got.Revocation)

	// Same bytes again: no-op. Other bytes under the same ID: refused.
	require.NoError(t, s.RegisterEnrolment(ctx, newer))
	tampered := newer
	tampered.Raw = append([]byte(nil), newer.Raw...)
	tampered.Raw[0] = ' '
	assert.ErrorIs(t, s.RegisterEnrolment(ctx, tampered), ErrDuplicate)

	tests := []struct {
		name     string
		ura, bsn string
		at       time.Time
		wantID   string
	}{
		{name: "valid now", ura: "12345678", bsn: "999990019", at: now, wantID: "_e-new"},
		{name: "other organisation", ura: "87654321", bsn: "999990019", at: now, wantID: "_e-other"},
		{name: "unknown patient", ura: "12345678", bsn: "111222333", at: now},
		{name: "before any is valid", ura: "12345678", bsn: "999990019", at: now.Add(-72 * time.Hour)},
		{name: "after expiry of all", ura: "12345678", bsn: "999990019", at: now.AddDate(2, 0, 0)},
		{name: "at NotOnOrAfter is expired", ura: "87654321", bsn: "999990019", at: now.AddDate(1, 0, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.FindEnrolment(ctx, tc.ura, tc.bsn, tc.at)
			if tc.wantID == "" {
				assert.ErrorIs(t, err, ErrNotFound)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantID, got.ID)
		})
	}

	// Revoke the newest: the older one is found; revocation is listed.
	require.NoError(t, s.Revoke(ctx, "_e-new", "patient withdrew consent", "admin@ziekenhuis"))
	got, err = s.FindEnrolment(ctx, "12345678", "999990019", now)
	require.NoError(t, err)
	assert.Equal(t, "_e-old", got.ID)
	info, err := s.GetToken(ctx, "_e-new")
	require.NoError(t, err)
	require.NotNil(t, info.Revocation)
	assert.Equal(t, "patient withdrew consent", info.Revocation.Reason)
	assert.Equal(t, "admin@ziekenhuis", info.Revocation.By)
	assert.ErrorIs(t, s.Revoke(ctx, "_nope", "x", "y"), ErrNotFound)

	list, err := s.ListTokens(ctx, ListFilter{Kind: KindEnrolment, URA: "12345678"})
	require.NoError(t, err)
	assert.Len(t, list, 2, "revoked excluded by default (old and future remain)")
	list, err = s.ListTokens(ctx, ListFilter{Kind: KindEnrolment, URA: "12345678", IncludeRevoked: true})
	require.NoError(t, err)
	assert.Len(t, list, 3)

	// Bad input changes nothing.
	bad := []struct {
		name string
		e    Enrolment
	}{
		{name: "no raw", e: func() Enrolment { e := enrolment("_b1", "1", "2", now, now.Add(time.Hour)); e.Raw = nil; return e }()},
		{name: "no bsn", e: enrolment("_b2", "1", "", now, now.Add(time.Hour))},
		{name: "empty window", e: enrolment("_b3", "1", "2", now, now)},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			assert.ErrorIs(t, s.RegisterEnrolment(ctx, tc.e), ErrInvalid)
			_, err := s.GetToken(ctx, tc.e.ID)
			assert.ErrorIs(t, err, ErrNotFound)
		})
	}

	// Registration and revocation are in the audit trail, in the same transactions.
	recs, err := s.AuditRecords(ctx, AuditFilter{})
	require.NoError(t, err)
	kinds := map[string]int{}
	for _, r := range recs {
		kinds[r.Kind]++
	}
	assert.Equal(t, 4, kinds[AuditTokenRegistered])
	assert.Equal(t, 1, kinds[AuditTokenRevoked])
}

func mandate(id, giver string, mandated []string, nb, noa, certNotAfter time.Time) Mandate {
	return Mandate{ID: id, Issuer: "urn:IIroot:2.16.528.1.1007.3.1:IIext:" + giver, URA: "12345678",
		GiverUZI: giver, GiverRole: "01.015", Mandated: mandated, ApplicationID: "urn:app:hix",
		Context:      testCtxURI,
		IssueInstant: nb, NotBefore: nb, NotOnOrAfter: noa, CertNotAfter: certNotAfter,
		Raw: []byte("<saml:Assertion ID=\"" + id + "\"/>"), RegisteredBy: "admin"}
}

func testMandates(t *testing.T, newDSN func(*testing.T) string) {
	ctx := context.Background()
	clk := newClock()
	s := openStore(t, newDSN(t), clk)
	now := clk.Now()

	require.NoError(t, s.RegisterMandate(ctx, mandate("_m1", "900000001",
		[]string{"900000111", "900000222:30.000", "urn:oid:2.16.840.1.113883.2.4.6.6:app-trigger"},
		now.Add(-time.Hour), now.AddDate(1, 0, 0), now.AddDate(0, 2, 0))))
	// Expired by the card's NotAfter even though NotOnOrAfter is later.
	require.NoError(t, s.RegisterMandate(ctx, mandate("_m-card-expired", "900000002", []string{"900000111"},
		now.Add(-48*time.Hour), now.AddDate(1, 0, 0), now.Add(-time.Minute))))

	base := MandateQuery{URA: "12345678", GiverUZI: "900000001", Context: testCtxURI, ApplicationID: "urn:app:hix", At: now}
	tests := []struct {
		name   string
		mutate func(q *MandateQuery)
		want   string
		err    error
	}{
		{name: "bare UZI entry covers any role", mutate: func(q *MandateQuery) { q.Actor = "900000111:01.015" }, want: "_m1"},
		{name: "bare UZI actor", mutate: func(q *MandateQuery) { q.Actor = "900000111" }, want: "_m1"},
		{name: "UZI:role entry, same role", mutate: func(q *MandateQuery) { q.Actor = "900000222:30.000" }, want: "_m1"},
		{name: "UZI:role entry, other role", mutate: func(q *MandateQuery) { q.Actor = "900000222:01.015" }, err: ErrNotFound},
		{name: "system actor", mutate: func(q *MandateQuery) { q.Actor = "urn:oid:2.16.840.1.113883.2.4.6.6:app-trigger" }, want: "_m1"},
		{name: "not mandated", mutate: func(q *MandateQuery) { q.Actor = "900000333:01.015" }, err: ErrNotFound},
		{name: "other context", mutate: func(q *MandateQuery) { q.Actor = "900000111"; q.Context = "https://x/other" }, err: ErrNotFound},
		{name: "other application", mutate: func(q *MandateQuery) { q.Actor = "900000111"; q.ApplicationID = "urn:app:other" }, err: ErrNotFound},
		{name: "other organisation", mutate: func(q *MandateQuery) { q.Actor = "900000111"; q.URA = "11111111" }, err: ErrNotFound},
		{name: "after card expiry", mutate: func(q *MandateQuery) { q.Actor = "900000111"; q.At = now.AddDate(0, 3, 0) }, err: ErrNotFound},
		{name: "before NotBefore", mutate: func(q *MandateQuery) { q.Actor = "900000111"; q.At = now.Add(-2 * time.Hour) }, err: ErrNotFound},
		{name: "card expired mandate", mutate: func(q *MandateQuery) { q.Actor = "900000111"; q.GiverUZI = "900000002" }, err: ErrNotFound},
		{name: "missing context", mutate: func(q *MandateQuery) { q.Context = "" }, err: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := base
			tc.mutate(&q)
			m, err := s.FindMandate(ctx, q)
			if tc.err != nil {
				assert.ErrorIs(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, m.ID)
			assert.ElementsMatch(t, []string{"900000111", "900000222:30.000", "urn:oid:2.16.840.1.113883.2.4.6.6:app-trigger"}, m.Mandated)
			assert.Equal(t, micro(now.AddDate(0, 2, 0)), m.ValidUntil())
		})
	}

	// Blocking the actor or the giver: refused at once; unblocking restores.
	q := base
	q.Actor = "900000111:01.015"
	require.NoError(t, s.BlockActor(ctx, "900000111", "leaver"))
	require.NoError(t, s.BlockActor(ctx, "900000111", "leaver"), "blocking twice is a no-op")
	_, err := s.FindMandate(ctx, q)
	assert.ErrorIs(t, err, ErrActorBlocked)
	blocked, err := s.ActorBlocked(ctx, "900000111")
	require.NoError(t, err)
	assert.True(t, blocked)
	require.NoError(t, s.UnblockActor(ctx, "900000111", "re-joiner"))
	_, err = s.FindMandate(ctx, q)
	require.NoError(t, err)
	require.NoError(t, s.BlockActor(ctx, "900000001", "giver suspended"))
	_, err = s.FindMandate(ctx, q)
	assert.ErrorIs(t, err, ErrActorBlocked)
	require.NoError(t, s.UnblockActor(ctx, "900000001", "back"))

	// The giver leaves: all their mandates are revoked.
	require.NoError(t, s.RegisterMandate(ctx, mandate("_m2", "900000001", []string{"900000444"},
		now.Add(-time.Hour), now.AddDate(0, 1, 0), now.AddDate(1, 0, 0))))
	n, err := s.RevokeMandatesOf(ctx, "900000001", "leaver")
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	_, err = s.FindMandate(ctx, q)
	assert.ErrorIs(t, err, ErrNotFound)
	n, err = s.RevokeMandatesOf(ctx, "900000001", "leaver")
	require.NoError(t, err)
	assert.Zero(t, n, "already revoked")

	// A mandate without a card NotAfter is refused.
	bad := mandate("_m-bad", "900000001", nil, now, now.Add(time.Hour), time.Time{})
	assert.ErrorIs(t, s.RegisterMandate(ctx, bad), ErrInvalid)
}

func testRevocationAcrossReplicas(t *testing.T, newDSN func(*testing.T) string) {
	ctx := context.Background()
	dsn := newDSN(t)
	clk := newClock()
	a := openStore(t, dsn, clk)
	b := openStore(t, dsn, clk)
	now := clk.Now()
	require.NoError(t, a.RegisterMandate(ctx, mandate("_mr", "900000001", []string{"900000111"},
		now.Add(-time.Hour), now.AddDate(0, 1, 0), now.AddDate(1, 0, 0))))
	q := hotQuery("900000001", "900000111:01.015", now)
	_, err := a.FindMandate(ctx, q)
	require.NoError(t, err)
	_, err = b.FindMandate(ctx, q)
	require.NoError(t, err)
	// Revoked through replica b: replica a refuses on its very next lookup.
	require.NoError(t, b.Revoke(ctx, "_mr", "stolen card", "security officer"))
	_, err = a.FindMandate(ctx, q)
	assert.ErrorIs(t, err, ErrNotFound)
	// Blocked through a: b refuses at once.
	require.NoError(t, a.BlockActor(ctx, "900000111", "leaver"))
	blocked, err := b.ActorBlocked(ctx, "900000111")
	require.NoError(t, err)
	assert.True(t, blocked)
}

func testExpiring(t *testing.T, newDSN func(*testing.T) string) {
	ctx := context.Background()
	clk := newClock()
	s := openStore(t, newDSN(t), clk)
	now := clk.Now()
	require.NoError(t, s.RegisterEnrolment(ctx, enrolment("_e-soon", "12345678", "999990019", now.AddDate(-1, -5, 0), now.AddDate(0, 0, 20))))
	require.NoError(t, s.RegisterEnrolment(ctx, enrolment("_e-late", "12345678", "999990020", now, now.AddDate(1, 6, 0))))
	require.NoError(t, s.RegisterEnrolment(ctx, enrolment("_e-gone", "12345678", "999990021", now.AddDate(-2, 0, 0), now.AddDate(0, 0, -1))))
	// Mandate valid for a year, but the card expires in 10 days.
	require.NoError(t, s.RegisterMandate(ctx, mandate("_m-card", "900000001", []string{"900000111"}, now, now.AddDate(1, 0, 0), now.AddDate(0, 0, 10))))
	require.NoError(t, s.RegisterMandate(ctx, mandate("_m-long", "900000002", []string{"900000111"}, now, now.AddDate(1, 0, 0), now.AddDate(2, 0, 0))))
	require.NoError(t, s.RegisterMandate(ctx, mandate("_m-revoked", "900000003", []string{"900000111"}, now, now.AddDate(0, 0, 5), now.AddDate(2, 0, 0))))
	require.NoError(t, s.Revoke(ctx, "_m-revoked", "test", "test"))

	got, err := s.Expiring(ctx, 30*24*time.Hour)
	require.NoError(t, err)
	var ids []string
	for _, ti := range got {
		ids = append(ids, ti.ID)
	}
	assert.Equal(t, []string{"_m-card", "_e-soon"}, ids, "soonest first; expired, revoked and far-off left out")
	_, err = s.Expiring(ctx, -time.Hour)
	assert.ErrorIs(t, err, ErrInvalid)
}

func testReplay(t *testing.T, newDSN func(*testing.T) string) {
	ctx := context.Background()
	dsn := newDSN(t)
	clk := newClock()
	a := openStore(t, dsn, clk)
	b := openStore(t, dsn, clk)
	until := clk.Now().Add(5 * time.Minute)

	require.NoError(t, a.Use(ctx, "urn:ura:1", "_t1", until))
	err := b.Use(ctx, "urn:ura:1", "_t1", until)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrReplay, "second use on another replica is a replay")
	assert.ErrorIs(t, err, tokens.ErrReplay, "and package tokens recognises it")
	require.NoError(t, a.Use(ctx, "urn:ura:2", "_t1", until), "same ID, other issuer is another token")
	assert.ErrorIs(t, a.Use(ctx, "", "_x", until), ErrInvalid)
	closed := openStore(t, dsn, clk)
	require.NoError(t, closed.Close())
	assert.ErrorIs(t, closed.Use(ctx, "urn:ura:1", "_t9", until), tokens.ErrReplayStore, "database failure fails closed")

	// Many concurrent uses of one token over two replicas: exactly one wins.
	const workers = 16
	var ok, replay atomic.Int64
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := a
			if i%2 == 1 {
				s = b
			}
			err := s.Use(ctx, "urn:ura:1", "_race", until)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrReplay):
				replay.Add(1)
			default:
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	assert.Equal(t, int64(1), ok.Load())
	assert.Equal(t, int64(workers-1), replay.Load())

	// Purge removes only expired entries.
	clk.Add(10 * time.Minute)
	require.NoError(t, a.Use(ctx, "urn:ura:1", "_fresh", clk.Now().Add(5*time.Minute)))
	n, err := a.PurgeReplay(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(3), n)
	assert.ErrorIs(t, a.Use(ctx, "urn:ura:1", "_fresh", clk.Now().Add(5*time.Minute)), ErrReplay)
}

// testenvPostgres is testenv.PostgresDatabase for benchmarks and tests alike.
func testenvPostgres(tb testing.TB) string { return testenv.PostgresDatabase(tb) }
