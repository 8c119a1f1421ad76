//go:build cgo && !nopkcs11

package pkcs11

import (
	"context"
	"crypto"
	"crypto/rand"
	"strings"
	"sync"
	"testing"

	"github.com/aortagw/aortagw/internal/uzi"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOpenThroughRegistry runs the public entry points against real SoftHSM: allow-list,
// pin-value policy, one shared module context, metrics and the audit hook.
func TestOpenThroughRegistry(t *testing.T) {
	leakCheck(t)
	mod := softhsm(t)
	b := newSoftHSMBackend(t)
	ctx := context.Background()
	uri := b.uri(idAuth) + "&module-path=" + mod

	t.Run("refusals", func(t *testing.T) {
		_, err := Open(ctx, uri, Options{})
		assert.ErrorIs(t, err, ErrModuleNotAllowed)
		_, err = Open(ctx, uri, Options{AllowedModules: []string{"/usr/lib/x86_64-linux-gnu/libc.so.6"}})
		assert.ErrorIs(t, err, ErrModuleNotAllowed)
		pv := "pkcs11:token=" + b.label + ";id=%01?module-path=" + mod + "&pin-value=" + string(b.pin)
		_, err = Open(ctx, pv, Options{AllowedModules: []string{mod}})
		assert.ErrorIs(t, err, ErrPINValueNotAllowed)
		assert.NotContains(t, err.Error(), string(b.pin))
		_, err = Open(ctx, "pkcs11:token=nope;id=%01?module-path="+mod+"&pin-source=file:"+b.pinFile, Options{AllowedModules: []string{mod}})
		assert.ErrorIs(t, err, ErrTokenNotFound)
		_, err = Open(ctx, "pkcs11:token="+b.label+";id=%09?module-path="+mod+"&pin-source=file:"+b.pinFile, Options{AllowedModules: []string{mod}})
		assert.ErrorIs(t, err, ErrKeyNotFound)
		_, err = Open(ctx, "pkcs11:token="+b.label+";id=%01;type=cert?module-path="+mod, Options{AllowedModules: []string{mod}})
		assert.ErrorIs(t, err, ErrInvalidURI)
		_, err = OpenForPurpose(ctx, "pkcs11:token="+b.label+"?module-path="+mod+"&pin-source=file:"+b.pinFile, uzi.PurposeEncryption, Options{AllowedModules: []string{mod}})
		assert.ErrorIs(t, err, ErrUnsupported)
	})

	t.Run("module-name resolves within the allow-list", func(t *testing.T) {
		byName := b.uri(idAuth) + "&module-name=softhsm2"
		_, err := Open(ctx, byName, Options{})
		assert.ErrorIs(t, err, ErrModuleNotAllowed, "nothing allowed: a name finds nothing")
		k, err := Open(ctx, byName, Options{AllowedModules: []string{mod}})
		require.NoError(t, err)
		defer k.Close()
		sig, err := k.SignContext(ctx, digest, crypto.SHA256)
		require.NoError(t, err)
		verify(t, k, sig, crypto.SHA256)
	})

	t.Run("sign, metrics, audit", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		var mu sync.Mutex
		var events []AuditEvent
		type actorKey struct{}
		opts := Options{
			AllowedModules: []string{mod}, Registerer: reg, PoolSize: 3, Logger: b.opts().Logger,
			Audit: func(_ context.Context, ev AuditEvent) { mu.Lock(); events = append(events, ev); mu.Unlock() },
			Actor: func(ctx context.Context) string { s, _ := ctx.Value(actorKey{}).(string); return s },
		}
		k, err := Open(ctx, uri, opts)
		require.NoError(t, err)
		defer k.Close()
		// A second key on the same token and registerer shares the module, token and collectors.
		k2, err := OpenForPurpose(ctx, "pkcs11:token="+b.label+"?module-path="+mod+"&pin-source=file:"+b.pinFile, uzi.PurposeNonRepudiation, opts)
		require.NoError(t, err)
		defer k2.Close()
		assert.Same(t, k.tok, k2.tok)
		assert.Contains(t, k2.URI(), "id=%02")

		actx := context.WithValue(ctx, actorKey{}, "uzi:123456789")
		sig, err := k.SignContext(actx, digest, crypto.SHA256)
		require.NoError(t, err)
		verify(t, k, sig, crypto.SHA256)
		_, err = k.Sign(rand.Reader, digest[:3], crypto.SHA256)
		require.Error(t, err)

		mu.Lock()
		require.Len(t, events, 1, "refused before the token: no audit event for a malformed digest")
		assert.Equal(t, "uzi:123456789", events[0].Actor)
		assert.Equal(t, "CKM_RSA_PKCS", events[0].Mechanism)
		assert.NoError(t, events[0].Err)
		assert.NotContains(t, events[0].KeyURI, string(b.pin))
		mu.Unlock()

		assert.Equal(t, 3.0, testutil.ToFloat64(k.tok.m.capacity))
		assert.Equal(t, 0.0, testutil.ToFloat64(k.tok.m.inUse))
		assert.Equal(t, 1, testutil.CollectAndCount(reg, "aortagw_pkcs11_sign_duration_seconds"))
		assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP aortagw_pkcs11_pool_capacity Sessions the token's pool may hold.
# TYPE aortagw_pkcs11_pool_capacity gauge
aortagw_pkcs11_pool_capacity{token="`+b.label+`"} 3
# HELP aortagw_pkcs11_relogins_total Successful token recoveries (re-open and re-login).
# TYPE aortagw_pkcs11_relogins_total counter
aortagw_pkcs11_relogins_total{token="`+b.label+`"} 0
`), "aortagw_pkcs11_pool_capacity", "aortagw_pkcs11_relogins_total"))
		require.NoError(t, k.Close())
		require.NoError(t, k2.Close())
		assert.Equal(t, 0.0, testutil.ToFloat64(k.tok.m.capacity))
	})
	registry.mu.Lock()
	_, loaded := registry.libs[must(resolveModule(mod))]
	registry.mu.Unlock()
	assert.True(t, loaded, "the backend still holds the module")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
