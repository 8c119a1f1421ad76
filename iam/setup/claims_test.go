package setup

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/iam/connector/scim"
	"github.com/aortagw/aortagw/iam/internal/scimtest"
	"github.com/aortagw/aortagw/iam/store"
	"github.com/aortagw/aortagw/internal/testenv"
)

// sharedDSN makes one fresh database per backend; both replicas of a test
// open it.
var sharedDSN = []struct {
	name string
	dsn  func(t *testing.T) string
}{
	{name: "sqlite", dsn: func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "iam.db") }},
	{name: "postgres", dsn: func(t *testing.T) string { return testenv.PostgresDatabase(t) }},
}

func openStore(t *testing.T, dsn string) store.Store {
	t.Helper()
	st, err := store.OpenDSN(context.Background(), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// gated is a target whose create waits for the test to open the gate, so
// that a second replica's create provably overlaps the first one's.
type gated struct {
	iam.Connector // nil: only the methods below are called
	entered       chan struct{}
	gate          chan struct{}
	creates       atomic.Int32
	grants        atomic.Int32
}

func (g *gated) Name() string { return "t" }

func (g *gated) CreateOrCorrelate(_ context.Context, req iam.AccountRequest) (iam.Result, error) {
	if req.DryRun {
		return iam.Result{Ref: "(new)"}, nil
	}
	if g.creates.Add(1) == 1 {
		g.entered <- struct{}{}
		<-g.gate
		return iam.Result{Ref: "acc-1"}, nil
	}
	return iam.Result{Ref: "acc-1", NoChange: true}, nil
}

func (g *gated) Grant(_ context.Context, _ iam.AccountRequest, _ string) (iam.Result, error) {
	g.grants.Add(1)
	return iam.Result{}, nil
}

func TestClaimKeepsReplicasFromApplyingTheSameActionAtOnce(t *testing.T) {
	for _, b := range sharedDSN {
		t.Run(b.name, func(t *testing.T) {
			dsn := b.dsn(t)
			stA, stB := openStore(t, dsn), openStore(t, dsn) // two replicas
			target := &gated{entered: make(chan struct{}), gate: make(chan struct{})}
			now := func() time.Time { return time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC) }
			a, bb := guard(target, stA, "replica-a", now), guard(target, stB, "replica-b", now)
			ctx := context.Background()
			req := iam.AccountRequest{Key: "1001", Person: &iam.Person{ID: "p1"}}

			done := make(chan error, 1)
			go func() {
				_, err := a.CreateOrCorrelate(ctx, req)
				done <- err
			}()
			<-target.entered // replica A is inside the target's create

			_, err := bb.CreateOrCorrelate(ctx, req)
			require.Error(t, err)
			assert.ErrorIs(t, err, store.ErrClaimed)
			assert.ErrorIs(t, err, iam.ErrTransient, "the engine retries it with backoff")
			assert.EqualValues(t, 1, target.creates.Load(), "replica B never reached the target")

			dry := req
			dry.DryRun = true
			res, err := bb.CreateOrCorrelate(ctx, dry)
			require.NoError(t, err, "a dry run takes no claim and is not blocked")
			assert.Equal(t, "(new)", res.Ref)

			_, err = bb.Grant(ctx, iam.AccountRequest{Ref: "acc-1", Person: &iam.Person{ID: "p1"}}, "G")
			require.NoError(t, err, "another action of the same person is not blocked")
			assert.EqualValues(t, 1, target.grants.Load())

			close(target.gate)
			require.NoError(t, <-done)
			res, err = bb.CreateOrCorrelate(ctx, req)
			require.NoError(t, err, "free once replica A released it")
			assert.True(t, res.NoChange)
			assert.EqualValues(t, 2, target.creates.Load())
		})
	}
}

// lookupOnly and friends check that the guard keeps the optional
// capabilities the engine discovers by type assertion, and adds none.
type plain struct{ iam.Connector }
type withLookup struct{ plain }

func (withLookup) Lookup(context.Context, string) ([]iam.Account, error) { return nil, nil }

type withDue struct{ plain }

func (withDue) Due(context.Context, time.Time) ([]iam.DueItem, error) { return nil, nil }
func (withDue) ConfirmEmployment(context.Context, string) error       { return nil }

type withAll struct{ withDue }

func (withAll) Lookup(context.Context, string) ([]iam.Account, error) { return nil, nil }

func TestGuardKeepsCapabilities(t *testing.T) {
	tests := []struct {
		name         string
		c            iam.Connector
		lu, due, cnf bool
	}{
		{name: "plain", c: plain{}},
		{name: "lookup", c: withLookup{}, lu: true},
		{name: "due+confirm", c: withDue{}, due: true, cnf: true},
		{name: "all", c: withAll{}, lu: true, due: true, cnf: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := guard(tc.c, nil, "x", time.Now)
			_, lu := g.(iam.AccountLookup)
			_, due := g.(iam.DueReporter)
			_, cnf := g.(iam.Confirmer)
			assert.Equal(t, []bool{tc.lu, tc.due, tc.cnf}, []bool{lu, due, cnf})
		})
	}
}

// TestTwoReplicasReconcileAgainstSCIM runs two engines (two replicas, each
// with its own store instance on one database) that reconcile the same
// persons at the same moment against one in-process SCIM server. The
// target must see exactly the writes a single replica makes, and neither
// replica may record a failure.
func TestTwoReplicasReconcileAgainstSCIM(t *testing.T) {
	const n = 12
	persons := make([]iam.Person, n)
	for i := range persons {
		id := fmt.Sprintf("p%02d", i)
		persons[i] = iam.Person{ID: id, GivenName: "G", FamilyName: id, Email: id + "@zorg.test", EmployeeNumber: fmt.Sprint(1000 + i),
			Contracts: []iam.Contract{{ID: id + "-c", Start: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), Function: "Arts"}}}
	}
	now := func() time.Time { return time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC) }
	var seq atomic.Int64
	newID := func() string { return fmt.Sprintf("id-%d", seq.Add(1)) }
	engine := func(t *testing.T, st store.Store, srv *httptest.Server, owner string) *iam.Engine {
		c, err := scim.New(scim.Config{Name: "ysis", BaseURL: srv.URL, Token: "tok", HTTPClient: srv.Client()})
		require.NoError(t, err)
		e, err := iam.New(iam.Config{
			Rules:         []iam.Rule{{Name: "all", Entitlements: []iam.Entitlement{{Target: "ysis"}, {Target: "ysis", Permission: "Behandelaar"}}}},
			Targets:       []iam.TargetConfig{{Name: "ysis", CorrelationField: "email"}},
			RetryBase:     50 * time.Millisecond,
			RetryAttempts: 8,
		}, st, []iam.Connector{guard(c, st, owner, now)}, iam.Options{Now: now, NewID: newID})
		require.NoError(t, err)
		return e
	}
	// the group exists up front: its creation is the connector's own race
	// (POST /Groups answers 409 to the slower replica), not the claim's
	newServer := func(t *testing.T) (*scimtest.Server, *httptest.Server) {
		ss := scimtest.New("tok")
		srv := httptest.NewServer(ss)
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/Groups", strings.NewReader(`{"schemas":["`+scim.SchemaGroup+`"],"displayName":"Behandelaar"}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer tok")
		req.Header.Set("Content-Type", "application/scim+json")
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusCreated, resp.StatusCode)
		return ss, srv
	}
	// writes one replica alone makes
	single := func(t *testing.T, dsn string) int {
		ss, srv := newServer(t)
		defer srv.Close()
		st := openStore(t, dsn)
		e := engine(t, st, srv, "solo")
		_, err := e.Import(context.Background(), "hr", persons, "test")
		require.NoError(t, err)
		res, err := e.Reconcile(context.Background(), iam.RunOptions{})
		require.NoError(t, err)
		require.Empty(t, res.Failed())
		require.Len(t, ss.Users(), n)
		return ss.WriteCount()
	}
	for _, b := range sharedDSN {
		t.Run(b.name, func(t *testing.T) {
			want := single(t, b.dsn(t))
			dsn := b.dsn(t)
			ss, srv := newServer(t)
			defer srv.Close()
			stA, stB := openStore(t, dsn), openStore(t, dsn)
			ea, eb := engine(t, stA, srv, "replica-a"), engine(t, stB, srv, "replica-b")
			_, err := ea.Import(context.Background(), "hr", persons, "test")
			require.NoError(t, err)

			var wg sync.WaitGroup
			results := make([]*iam.RunResult, 2)
			errs := make([]error, 2)
			for i, e := range []*iam.Engine{ea, eb} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i], errs[i] = e.Reconcile(context.Background(), iam.RunOptions{})
				}()
			}
			wg.Wait()
			for i := range 2 {
				require.NoError(t, errs[i])
				assert.Empty(t, results[i].Failed(), "replica %d", i)
			}
			assert.Len(t, ss.Users(), n, "one account per person")
			assert.Equal(t, want, ss.WriteCount(), "the target saw the writes of one replica, not two")
		})
	}
}
