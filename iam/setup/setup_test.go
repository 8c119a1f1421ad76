package setup_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/iam/connector/hix"
	"github.com/aortagw/aortagw/iam/setup"
)

const base = `
store: /tmp/x-iam-setup-test.db
sourceThreshold: {maxRemoved: 10, maxRemovedPercent: 5}
outputThresholds: {disable: 20, delete: 5}
primaryContractOrder: "fte desc, start asc"
reconcileEvery: 1h
required:
  - field: email
    fallbacks: [privateEmail]
sources:
  - {name: hr, type: file, path: /tmp/hr.csv}
targets:
  - name: hix
    type: hix
    baseURL: http://127.0.0.1:1
    functions: {Verpleegkundige: VPK}
rules:
  - name: nurses
    conditions: [{field: function, values: [Verpleegkundige]}]
    entitlements: [{target: hix, permission: "group:VPK"}]
    beforeStartDays: 5
`

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{"valid", base, ""},
		{"unknown key", base + "\nfrobnicate: true\n", "frobnicate"},
		{"rule for unknown target", base[:len(base)-1] + "\n  - {name: x, entitlements: [{target: nowhere}]}\n", "unknown target"},
		{"bad sort order", "store: x\nprimaryContractOrder: salary desc\n", "sort field"},
		{"no store", "targets: []\n", "store"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := setup.Parse([]byte(tc.yaml))
			if tc.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, setup.ErrConfig)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
	_, err := setup.Parse([]byte("store: x\ntargets:\n  - {name: m, type: mandate}\n"))
	assert.ErrorContains(t, err, "gatewayStore")
	_, err = setup.Parse([]byte("store: x\noutputThresholds: {explode: 1}\n"))
	assert.ErrorContains(t, err, "action type")
}

func TestBuildRefusesReadableSecrets(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(pw, []byte("secret\n"), 0o644))
	y := "store: " + filepath.Join(dir, "iam.db") + "\ntargets:\n  - {name: ad, type: ldap, url: ldap://127.0.0.1:1, bindDN: cn=a, passwordFile: " + pw +
		", peopleDN: ou=p, disabledDN: ou=d, groupsDN: ou=g}\n"
	f, err := setup.Parse([]byte(y))
	require.NoError(t, err)
	_, err = setup.Build(context.Background(), f, setup.Deps{Now: time.Now, NewID: func() string { return "x" }})
	assert.ErrorIs(t, err, setup.ErrConfig)
	require.NoError(t, os.Chmod(pw, 0o600))
	sys, err := setup.Build(context.Background(), f, setup.Deps{Now: time.Now, NewID: func() string { return "x" }})
	require.NoError(t, err)
	assert.NoError(t, sys.Close())
}

func TestSystemRunWatchesFilesAndStops(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	sim := hix.NewSimulator("ARTS")
	hs := httptest.NewServer(sim)
	defer hs.Close()
	hr := filepath.Join(dir, "hr.csv")
	require.NoError(t, os.WriteFile(hr, []byte("id,email,employeeNumber,contractId,start,function\n"), 0o600))
	y := "store: " + filepath.Join(dir, "iam.db") + `
reconcileEvery: 1h
sources:
  - {name: hr, type: file, path: ` + hr + `}
targets:
  - {name: hix, type: hix, baseURL: ` + hs.URL + `, functions: {Arts: ARTS}}
rules:
  - {name: all, entitlements: [{target: hix, permission: "login:ZKH"}]}
`
	f, err := setup.Parse([]byte(y))
	require.NoError(t, err)
	sys, err := setup.Build(context.Background(), f, setup.Deps{Now: time.Now, NewID: func() string { return "x" }})
	require.NoError(t, err)
	defer sys.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sys.Run(ctx) }()
	defer func() { cancel(); <-done }()
	require.NoError(t, os.WriteFile(hr+".tmp", []byte("id,givenName,email,employeeNumber,contractId,start,function\np1,Anna,a@z.test,1001,c1,2020-01-01,Arts\n"), 0o600))
	require.NoError(t, os.Rename(hr+".tmp", hr))
	require.Eventually(t, func() bool {
		accs := sim.Accounts()
		return len(accs) == 1 && len(accs[0].LoginGroups) == 1
	}, 10*time.Second, 20*time.Millisecond)
}

// TestMetricsEndpoint wires a registry (as cmd does) into a System, runs a
// reconciliation against the HiX simulator and reads the counters back
// from the /metrics endpoint.
func TestMetricsEndpoint(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	sim := hix.NewSimulator("ARTS")
	hs := httptest.NewServer(sim)
	defer hs.Close()
	y := "store: sqlite:" + filepath.Join(dir, "iam.db") + `
targets:
  - {name: hix, type: hix, baseURL: ` + hs.URL + `, functions: {Arts: ARTS}}
rules:
  - {name: all, entitlements: [{target: hix, permission: "login:ZKH"}]}
`
	f, err := setup.Parse([]byte(y))
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	sys, err := setup.Build(context.Background(), f, setup.Deps{Now: time.Now, NewID: func() string { return "x" }, Registerer: reg})
	require.NoError(t, err)
	defer sys.Close()
	_, err = sys.Engine.Import(context.Background(), "hr", []iam.Person{{ID: "p1", GivenName: "Anna", FamilyName: "Arts", Email: "a@z.test", EmployeeNumber: "1001",
		Contracts: []iam.Contract{{ID: "c1", Start: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), Function: "Arts"}}}}, "test")
	require.NoError(t, err)
	rr, err := sys.Engine.Reconcile(context.Background(), iam.RunOptions{})
	require.NoError(t, err)
	require.Empty(t, rr.Failed())

	ctx, cancel := context.WithCancel(context.Background())
	addr, wait, err := setup.ServeMetrics(ctx, "127.0.0.1:0", reg, nil)
	require.NoError(t, err)
	defer func() { cancel(); assert.NoError(t, wait()) }()

	resp, err := http.Get("http://" + addr.String() + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), `aortagw_iam_actions_total{outcome="ok",target="hix",type="create"} 1`)
	assert.Contains(t, string(body), "aortagw_iam_runs_total")
	assert.Contains(t, string(body), "aortagw_iam_run_seconds")

	resp, err = http.Get("http://" + addr.String() + "/other")
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)

	_, _, err = setup.ServeMetrics(ctx, addr.String(), reg, nil)
	assert.Error(t, err, "a busy address is reported at once")
}
