package iam_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/iam/connector/mandate"
	"github.com/aortagw/aortagw/iam/store"
)

// newMandateEngine is an engine with one rule granting the mandate target to
// everyone with a UZI number, on a fresh store, gateway authority and
// registry; all are closed when the test ends.
func newMandateEngine(t *testing.T) (*iam.Engine, *store.SQLite, *clock, *prometheus.Registry) {
	t.Helper()
	st, auth, clk := openStores(t)
	mc, err := mandate.New("mandates", auth, st, clk.Now)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	eng, err := iam.New(iam.Config{
		Rules:   []iam.Rule{{Name: "uzi", Entitlements: []iam.Entitlement{{Target: "mandates"}}}},
		Targets: []iam.TargetConfig{{Name: "mandates", CorrelationField: "uzi"}},
	}, st, []iam.Connector{mc}, iam.Options{Now: clk.Now, NewID: ids(), Registerer: reg})
	require.NoError(t, err)
	return eng, st, clk, reg
}

func TestMetrics(t *testing.T) {
	ctx := context.Background()
	eng, st, clk, reg := newMandateEngine(t)
	_, err := eng.Import(ctx, "hr", []iam.Person{{ID: "p1", UZI: "123456782", Contracts: []iam.Contract{{ID: "c", Start: day(-1)}}}}, "test")
	require.NoError(t, err)
	_, err = eng.Reconcile(ctx, iam.RunOptions{})
	require.NoError(t, err)
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP aortagw_iam_actions_total IAM actions applied, by target, type and outcome.
# TYPE aortagw_iam_actions_total counter
aortagw_iam_actions_total{outcome="ok",target="mandates",type="create"} 1
# HELP aortagw_iam_runs_total IAM runs, by kind (person, reconcile) and outcome.
# TYPE aortagw_iam_runs_total counter
aortagw_iam_runs_total{kind="reconcile",outcome="ok"} 1
`), "aortagw_iam_actions_total", "aortagw_iam_runs_total"))
	n, err := testutil.GatherAndCount(reg, "aortagw_iam_run_seconds")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	// a second engine on the same registry is refused, not silently merged
	_, err = iam.New(iam.Config{}, st, nil, iam.Options{Now: clk.Now, NewID: ids(), Registerer: reg})
	assert.Error(t, err)
}

// TestBulkImportRunsOneReconciliation: an import changing more than
// BulkThreshold persons is applied by a full reconciliation in Run.
func TestBulkImportRunsOneReconciliation(t *testing.T) {
	ctx := context.Background()
	eng, st, _, _ := newMandateEngine(t)
	n := iam.BulkThreshold + 44
	ps := make([]iam.Person, n)
	for i := range ps {
		ps[i] = iam.Person{ID: fmt.Sprintf("p%d", i), UZI: fmt.Sprintf("%09d", 100000000+i), Contracts: []iam.Contract{{ID: "c", Start: day(-1)}}}
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- eng.Run(runCtx) }()
	defer func() { cancel(); assert.NoError(t, <-done) }()
	_, err := eng.Import(ctx, "hr", ps, "test")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		as, err := st.MandateActors(ctx)
		return err == nil && len(as) == n
	}, 20*time.Second, 20*time.Millisecond)
	assert.Equal(t, 0.0, testutil.ToFloat64(eng.RunsCounter("person", "ok")), "no per-person runs for a bulk import")
}
