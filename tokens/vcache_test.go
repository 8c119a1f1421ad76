package tokens

import (
	"context"
	"crypto/x509"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// movableClock is a validator clock the test can move.
type movableClock struct{ ns atomic.Int64 }

func (c *movableClock) set(t time.Time) { c.ns.Store(t.UnixNano()) }
func (c *movableClock) now() time.Time  { return time.Unix(0, c.ns.Load()).UTC() }
func newMovableClock(t time.Time) *movableClock {
	c := &movableClock{}
	c.set(t)
	return c
}

func (c *verifiedCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

func TestVerifiedCache(t *testing.T) {
	p := testPKI(t)
	ctx := context.Background()
	enr, err := newTestSigner(t, p.zAut).SignEnrolment(sampleEnrolment())
	require.NoError(t, err)
	shortM := sampleMandate()
	shortM.NotOnOrAfter = t0.Add(time.Hour)
	mdt, err := newTestSigner(t, p.zHnd).SignMandate(shortM)
	require.NoError(t, err)
	revokeHnd := func(v *Validator) {
		crl := mkCRL(p.zCA, 3, t0, t0.Add(48*time.Hour), x509.RevocationListEntry{
			SerialNumber: p.zHnd.cert.SerialNumber, RevocationTime: t0.Add(time.Minute)})
		require.NoError(t, v.UpdateCRLs([]*x509.RevocationList{crl, p.crlS, p.crlRoot}))
	}

	tests := []struct {
		name string
		raw  []byte
		want Type
		// between the first (cached) and the second verification
		change  func(v *Validator, c *movableClock)
		second  []byte // nil: raw again
		wantErr error
		hit     bool // the second call is served from the cache
	}{
		{name: "enrolment hit", raw: enr.Bytes(), want: TypeEnrolment, hit: true},
		{name: "mandate hit", raw: mdt.Bytes(), want: TypeMandate, hit: true},
		{name: "mandate hit later, still valid", raw: mdt.Bytes(), want: TypeMandate, hit: true,
			change: func(_ *Validator, c *movableClock) { c.set(t0.Add(30 * time.Minute)) }},
		{name: "expired token refused on a hit", raw: mdt.Bytes(), want: TypeMandate, wantErr: ErrExpired,
			change: func(_ *Validator, c *movableClock) { c.set(t0.Add(3 * time.Hour)) }},
		{name: "stale crl refused on a hit", raw: enr.Bytes(), want: TypeEnrolment, wantErr: ErrCRLStale,
			change: func(_ *Validator, c *movableClock) { c.set(t0.Add(50 * time.Hour)) }},
		{name: "new crl revoking the signer invalidates", raw: mdt.Bytes(), want: TypeMandate, wantErr: ErrRevoked,
			change: func(v *Validator, c *movableClock) { c.set(t0.Add(10 * time.Minute)); revokeHnd(v) }},
		{name: "byte-modified token misses", raw: enr.Bytes(), want: TypeEnrolment, wantErr: ErrSignatureInvalid,
			second: modifyClaim(t, enr.Bytes())},
		{name: "wrong type is not served from the cache", raw: enr.Bytes(), want: TypeEnrolment, wantErr: ErrWrongType,
			second: enr.Bytes(), change: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newMovableClock(t0.Add(time.Second))
			v := newTestValidator(t, func(c *ValidatorConfig) { c.Now = clock.now })
			first, err := v.Verify(ctx, tc.raw, tc.want)
			require.NoError(t, err)
			require.Equal(t, 1, v.vcache.len(), "a verified %s token is cached", tc.want)
			if tc.change != nil {
				tc.change(v, clock)
			}
			second, want := tc.raw, tc.want
			if tc.second != nil {
				second = tc.second
			}
			if tc.name == "wrong type is not served from the cache" {
				want = TypeMandate
			}
			hit := v.cachedVerify(tokenKey(second), want) != nil
			assert.Equal(t, tc.hit, hit, "cache hit")
			got, err := v.Verify(ctx, second, want)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, first.ID, got.ID)
			assert.Equal(t, first.Type, got.Type)
			assert.Equal(t, first.Canonical, got.Canonical)
			assert.NotSame(t, first, got, "callers get copies")
		})
	}
}

// modifyClaim changes one character inside the token's signed content.
func modifyClaim(t *testing.T, raw []byte) []byte {
	out := append([]byte(nil), raw...)
	i := indexOf(out, []byte("999911120"))
	require.GreaterOrEqual(t, i, 0)
	out[i] = '8'
	return out
}

func indexOf(b, sub []byte) int {
	for i := 0; i+len(sub) <= len(b); i++ {
		if string(b[i:i+len(sub)]) == string(sub) {
			return i
		}
	}
	return -1
}

func TestVerifiedCacheBundleAndBounds(t *testing.T) {
	f := newBundleFixture(t)
	p := testPKI(t)
	ctx := context.Background()
	v := newTestValidator(t)
	_, err := v.VerifyBundle(ctx, Bundle{Enrolment: f.enr.Bytes(), Mandate: f.mdt.Bytes(), Transaction: f.trxServer.Bytes()}, f.binding)
	require.NoError(t, err)
	assert.Equal(t, 2, v.vcache.len(), "enrolment and mandate cached, the transaction token not")
	assert.NotNil(t, v.cachedVerify(tokenKey(f.enr.Bytes()), TypeEnrolment))
	assert.NotNil(t, v.cachedVerify(tokenKey(f.mdt.Bytes()), TypeMandate))
	assert.Nil(t, v.cachedVerify(tokenKey(f.trxServer.Bytes()), TypeTransaction))

	// A second message with a fresh transaction token reuses the cached pair;
	// the replay check still applies to the transaction token.
	trx2, err := newTestSigner(t, p.server, WithIDGenerator(func() string { return "00000000-0000-4000-8000-00000000beef" })).SignTransaction(sampleTransaction())
	require.NoError(t, err)
	res, err := v.VerifyBundle(ctx, Bundle{Enrolment: f.enr.Bytes(), Mandate: f.mdt.Bytes(), Transaction: trx2.Bytes()}, f.binding)
	require.NoError(t, err)
	assert.Equal(t, f.enr.ID(), res.Enrolment.ID)
	assert.Equal(t, f.mdt.ID(), res.Mandate.ID)
	_, err = v.VerifyBundle(ctx, Bundle{Enrolment: f.enr.Bytes(), Mandate: f.mdt.Bytes(), Transaction: trx2.Bytes()}, f.binding)
	require.ErrorIs(t, err, ErrReplay)

	// Bounded: size 1 keeps only the most recent.
	small := newTestValidator(t, func(c *ValidatorConfig) { c.VerifiedCacheSize = 1 })
	_, err = small.Verify(ctx, f.enr.Bytes(), TypeEnrolment)
	require.NoError(t, err)
	_, err = small.Verify(ctx, f.mdt.Bytes(), TypeMandate)
	require.NoError(t, err)
	assert.Equal(t, 1, small.vcache.len())
	assert.Nil(t, small.cachedVerify(tokenKey(f.enr.Bytes()), TypeEnrolment))

	// Off.
	off := newTestValidator(t, func(c *ValidatorConfig) { c.VerifiedCacheSize = -1 })
	_, err = off.Verify(ctx, f.enr.Bytes(), TypeEnrolment)
	require.NoError(t, err)
	assert.Nil(t, off.vcache)
}

func TestVerifiedCacheConcurrent(t *testing.T) {
	f := newBundleFixture(t)
	v := newTestValidator(t, func(c *ValidatorConfig) { c.NativeOnly = true })
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 4; j++ {
				if _, err := v.Verify(context.Background(), f.enr.Bytes(), TypeEnrolment); err != nil {
					errs <- err
					return
				}
				if _, err := v.Verify(context.Background(), f.mdt.Bytes(), TypeMandate); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	assert.Equal(t, 2, v.vcache.len())
}
