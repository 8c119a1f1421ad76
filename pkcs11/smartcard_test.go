//go:build cgo && !nopkcs11

package pkcs11

import (
	"context"
	"crypto"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A smartcard allows one session: no separate login session, pool of one, serialised
// signatures, and a re-login whenever that session had to be replaced.
func TestSingleSessionSmartcard(t *testing.T) {
	leakCheck(t)
	keys, err := softKeys()
	require.NoError(t, err)
	soft := newSoftModule()
	soft.addToken(3, "card", []byte("card-pin-1"), 1)
	for i, k := range keys {
		id := []byte{byte(i + 1)}
		soft.addObject(3, &softObject{class: 3, id: id, key: k, pub: k.Public(), alwaysAuth: i == 1})
		soft.addObject(3, &softObject{class: 2, id: id, pub: k.Public()})
	}
	b := &backend{name: "card", label: "card", pin: []byte("card-pin-1"), fault: newFaultModule(soft), logs: &syncBuffer{}}
	b.lib = newTestLibrary(b.fault)
	b.pinFile = writePINFile(t, b.pin)
	auth := b.mustOpen(t, idAuth)
	sign := b.mustOpen(t, idSign) // shares the one session
	assert.Equal(t, 1, auth.tok.size)
	assert.False(t, auth.tok.useAnchor)
	assert.Equal(t, 1, b.fault.liveSessions())

	var wg sync.WaitGroup
	sigs := make([][]byte, 8)
	errs := make([]error, 8)
	for i := range 8 {
		k := auth
		if i%2 == 1 {
			k = sign
		}
		wg.Go(func() { sigs[i], errs[i] = k.Sign(rand.Reader, digest, crypto.SHA256) })
	}
	wg.Wait()
	for i := range 8 {
		require.NoError(t, errs[i])
		k := auth
		if i%2 == 1 {
			k = sign
		}
		verify(t, k, sigs[i], crypto.SHA256)
	}
	assert.Equal(t, 1, b.fault.liveSessions())
	assert.Equal(t, int64(4), b.fault.ctxLogins.Load())

	// Card pulled and put back: one new login, both keys work again.
	logins := b.fault.userLogins.Load()
	b.fault.remove()
	_, err = auth.Sign(rand.Reader, digest, crypto.SHA256)
	require.Error(t, err)
	b.fault.insert()
	signUntil(t, auth)
	sig, err := sign.Sign(rand.Reader, digest, crypto.SHA256)
	require.NoError(t, err)
	verify(t, sign, sig, crypto.SHA256)
	assert.Equal(t, logins+1, b.fault.userLogins.Load())
	b.assertClean(t, err)
}

// A token that hangs: the caller gets an error at its deadline (G8); the hung session is
// discarded once the module returns, and the key keeps working.
func TestHungTokenHonoursDeadline(t *testing.T) {
	leakCheck(t)
	b := newFakeBackend(t)
	k := b.mustOpen(t, idAuth)
	gate := make(chan struct{})
	b.fault.mu.Lock()
	b.fault.gate = gate
	b.fault.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	sig, err := k.SignContext(ctx, digest, crypto.SHA256)
	assert.Nil(t, sig)
	assert.ErrorIs(t, err, ErrTokenUnavailable)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	b.fault.mu.Lock()
	b.fault.gate = nil
	b.fault.mu.Unlock()
	close(gate)
	signUntil(t, k)
	// A context already cancelled never reaches the token.
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	_, err = k.SignContext(cctx, digest, crypto.SHA256)
	assert.ErrorIs(t, err, context.Canceled)
}

// Healthy notices a token that lost its login (e.g. restarted) and recovery follows.
func TestHealthyDetectsRestart(t *testing.T) {
	leakCheck(t)
	forEachBackend(t, func(t *testing.T, b *backend) {
		k := b.mustOpen(t, idAuth)
		require.NoError(t, k.Healthy(context.Background()))
		b.fault.restart()
		assert.Error(t, k.Healthy(context.Background()))
		signUntil(t, k)
		assert.NoError(t, k.Healthy(context.Background()))
	})
}
