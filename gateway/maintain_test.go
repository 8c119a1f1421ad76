package gateway

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/aortagw/aortagw/gateway/store"
	"github.com/aortagw/aortagw/tokens"
)

type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newTestCA(t *testing.T, cn string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn, Organization: []string{"aortagw test"}},
		NotBefore: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return testCA{cert: cert, key: key}
}

// crl issues a CRL of ca with the given number, valid from this for a day,
// revoking the given serials.
func (ca testCA) crl(t *testing.T, number int64, this time.Time, revoked ...int64) *x509.RevocationList {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: this, NextUpdate: this.Add(24 * time.Hour)}
	for _, s := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: this})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
	require.NoError(t, err)
	l, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	return l
}

func writeCRL(t *testing.T, path string, l *x509.RevocationList) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: l.Raw}), 0o600))
}

// recordingValidator is the real tokens.Validator, with the CRL sets it was
// given recorded (and signalled) for the test.
type recordingValidator struct {
	v      *tokens.Validator
	mu     sync.Mutex
	sets   [][]*x509.RevocationList
	notify chan struct{}
}

func (r *recordingValidator) UpdateCRLs(l []*x509.RevocationList) error {
	if err := r.v.UpdateCRLs(l); err != nil {
		return err
	}
	r.mu.Lock()
	r.sets = append(r.sets, l)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
	return nil
}

func (r *recordingValidator) last() []*x509.RevocationList {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sets) == 0 {
		return nil
	}
	return r.sets[len(r.sets)-1]
}

func (r *recordingValidator) calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sets)
}

type maintFixture struct {
	ca, other testCA
	file      string
	rec       *recordingValidator
	reg       *prometheus.Registry
	m         *Maintainer
	now       *time.Time
	t0        time.Time
}

func newMaintFixture(t *testing.T, st Purger) *maintFixture {
	t.Helper()
	f := &maintFixture{ca: newTestCA(t, "UZI-register Test CA"), other: newTestCA(t, "Rogue CA"),
		t0: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	now := f.t0
	f.now = &now
	f.file = filepath.Join(t.TempDir(), "ca.crl")
	initial := f.ca.crl(t, 10, f.t0.Add(-time.Hour))
	writeCRL(t, f.file, initial)
	v, err := tokens.NewValidator(tokens.ValidatorConfig{Roots: []*x509.Certificate{f.ca.cert},
		CRLs: []*x509.RevocationList{initial}, Now: func() time.Time { return *f.now }})
	require.NoError(t, err)
	f.rec = &recordingValidator{v: v, notify: make(chan struct{}, 1)}
	f.reg = prometheus.NewRegistry()
	f.m, err = NewMaintainer(MaintainerConfig{
		CRLFiles: []string{f.file}, CAs: []*x509.Certificate{f.ca.cert}, Initial: []*x509.RevocationList{initial},
		Updater: f.rec, Store: st, Now: func() time.Time { return *f.now }, Registerer: f.reg,
		Interval: time.Millisecond,
	})
	require.NoError(t, err)
	return f
}

func TestMaintainerRefreshCRLs(t *testing.T) {
	tests := []struct {
		name string
		// file is the CRL put in place before the refresh (nil: the file is removed).
		file       func(f *maintFixture) *x509.RevocationList
		wantErr    error
		wantNumber int64 // CRL number in use afterwards
		wantUpdate bool  // the validator received a new set
	}{
		{name: "newer crl is taken", file: func(f *maintFixture) *x509.RevocationList {
			return f.ca.crl(t, 11, f.t0, 4711)
		}, wantNumber: 11, wantUpdate: true},
		{name: "same crl again changes nothing", file: func(f *maintFixture) *x509.RevocationList {
			return nil
		}, wantNumber: 10},
		{name: "older crl number is never rolled back to", file: func(f *maintFixture) *x509.RevocationList {
			return f.ca.crl(t, 9, f.t0)
		}, wantErr: ErrCRLRefused, wantNumber: 10},
		{name: "crl of an unknown ca is refused", file: func(f *maintFixture) *x509.RevocationList {
			return f.other.crl(t, 99, f.t0)
		}, wantErr: ErrCRLRefused, wantNumber: 10},
		{name: "crl from the future is refused", file: func(f *maintFixture) *x509.RevocationList {
			return f.ca.crl(t, 12, f.t0.Add(time.Hour))
		}, wantErr: ErrCRLRefused, wantNumber: 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newMaintFixture(t, nil)
			if l := tc.file(f); l != nil {
				writeCRL(t, f.file, l)
			}
			err := f.m.RefreshCRLs(context.Background())
			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
				assert.Equal(t, 1.0, testutil.ToFloat64(f.m.refreshErrs))
			} else {
				assert.NoError(t, err)
				assert.Equal(t, float64(f.t0.Unix()),
					testutil.ToFloat64(f.m.lastRefresh.WithLabelValues(f.ca.cert.Subject.String())))
			}
			assert.Equal(t, tc.wantUpdate, f.rec.calls() == 1)
			if tc.wantUpdate {
				require.Len(t, f.rec.last(), 1)
				assert.Equal(t, tc.wantNumber, f.rec.last()[0].Number.Int64())
			}
			f.m.mu.Lock()
			require.Len(t, f.m.current, 1)
			for _, l := range f.m.current {
				assert.Equal(t, tc.wantNumber, l.Number.Int64())
			}
			f.m.mu.Unlock()
		})
	}
}

func TestMaintainerStaleFailsClosedUntilRefreshed(t *testing.T) {
	f := newMaintFixture(t, nil)
	ctx := context.Background()
	require.NoError(t, f.m.Check(ctx))

	// A day later the CRL in use is past NextUpdate and the file holds
	// nothing newer: readiness fails, and keeps failing after a refresh.
	*f.now = f.t0.Add(25 * time.Hour)
	assert.ErrorContains(t, f.m.Check(ctx), "stale")
	require.NoError(t, f.m.RefreshCRLs(ctx))
	assert.ErrorContains(t, f.m.Check(ctx), "stale")

	// A broken file keeps the stale CRL in use (never dropped): still failing.
	require.NoError(t, os.WriteFile(f.file, []byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"), 0o600))
	assert.Error(t, f.m.RefreshCRLs(ctx))
	assert.ErrorContains(t, f.m.Check(ctx), "stale")

	// The CA publishes a new CRL: the refresh takes it and readiness recovers.
	writeCRL(t, f.file, f.ca.crl(t, 11, f.t0.Add(24*time.Hour)))
	require.NoError(t, f.m.RefreshCRLs(ctx))
	assert.NoError(t, f.m.Check(ctx))
	assert.Equal(t, float64(f.t0.Add(48*time.Hour).Unix()),
		testutil.ToFloat64(f.m.nextUpdate.WithLabelValues(f.ca.cert.Subject.String())))
}

func TestMaintainerRunStopsOnCancel(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	f := newMaintFixture(t, nil)
	writeCRL(t, f.file, f.ca.crl(t, 11, f.t0))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.m.Run(ctx)
	}()
	<-f.rec.notify // the loop's first pass picked up the new CRL
	cancel()
	<-done
	require.Equal(t, 1, f.rec.calls(), "later passes see nothing newer")
	assert.Equal(t, int64(11), f.rec.last()[0].Number.Int64())
}

func TestMaintainerPurge(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	storeNow := t0
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return storeNow }
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "m.db"), store.Options{Now: clock})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })

	// A finished job and a replay entry, both from t0.
	job, _, err := st.Enqueue(ctx, store.JobSpec{IdempotencyKey: "k1", Kind: "user_action"})
	require.NoError(t, err)
	c, err := st.Claim(ctx, "w", time.Minute)
	require.NoError(t, err)
	_, err = st.BeginSend(ctx, c.ID, c.ClaimToken)
	require.NoError(t, err)
	require.NoError(t, st.Complete(ctx, c.ID, c.ClaimToken, []byte("ok")))
	require.NoError(t, st.Use(ctx, "issuer", "tx-1", t0.Add(time.Minute)))

	f := newMaintFixture(t, st)
	// Within the retention nothing goes.
	*f.now = t0.Add(time.Hour)
	require.NoError(t, f.m.Purge(ctx))
	_, err = st.Job(ctx, job.ID)
	require.NoError(t, err)

	// Past the retention (and the replay entry's until) both go.
	mu.Lock()
	storeNow = t0.Add(31 * 24 * time.Hour)
	mu.Unlock()
	*f.now = storeNow
	require.NoError(t, f.m.Purge(ctx))
	_, err = st.Job(ctx, job.ID)
	assert.ErrorIs(t, err, store.ErrNotFound)
	assert.Equal(t, 1.0, testutil.ToFloat64(f.m.purged.WithLabelValues("jobs")))
	assert.Equal(t, 1.0, testutil.ToFloat64(f.m.purged.WithLabelValues("replay")))
	// The purged replay entry can be used again (it had expired anyway).
	assert.NoError(t, st.Use(ctx, "issuer", "tx-1", storeNow.Add(time.Minute)))
}

// TestServerRunsMaintainerAndReadyzFailsClosed: Start runs the loop,
// Shutdown stops it (goleak in TestMain), and /readyz answers 503 while the
// CRL in use is stale.
func TestServerRunsMaintainerAndReadyzFailsClosed(t *testing.T) {
	e := newEnv(t)
	f := newMaintFixture(t, e.st)
	writeCRL(t, f.file, f.ca.crl(t, 11, f.t0))
	o := e.opts
	o.Maintainer = f.m
	o.Checks = []Check{{Name: "crl", Check: f.m.Check}}
	srv, err := New(e.cfg, e.deps, o)
	require.NoError(t, err)
	require.NoError(t, srv.Start(context.Background()))
	<-f.rec.notify // the loop ran and took CRL 11

	ready := func() (int, string) {
		resp, err := http.Get("http://" + srv.AdminAddr() + "/readyz")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, _ := ready()
	assert.Equal(t, http.StatusOK, code)

	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, srv.Shutdown(sctx))
	assert.Equal(t, int64(11), f.rec.last()[0].Number.Int64())

	// Stale: a second server on the same maintainer (not started) fails readiness.
	*f.now = f.t0.Add(25 * time.Hour)
	o.Maintainer = nil
	srv2, err := New(e.cfg, e.deps, o)
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	srv2.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Contains(t, rec.Body.String(), "stale")
}
