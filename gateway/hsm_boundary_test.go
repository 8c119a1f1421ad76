package gateway

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/lsp"
	"github.com/aortagw/aortagw/pkcs11"
)

func TestHSMErrorsAtTheBoundary(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code Code // the call site's code
		want Code
	}{
		{name: "token busy while signing", code: CodeInternal, err: fmt.Errorf("sign: %w", pkcs11.ErrTokenBusy), want: CodeHSMUnavailable},
		{name: "token unavailable", code: CodeInternal, err: fmt.Errorf("sign: %w", pkcs11.ErrTokenUnavailable), want: CodeHSMUnavailable},
		{name: "pin refused", code: CodeInternal, err: fmt.Errorf("login: %w", pkcs11.ErrPIN), want: CodeHSMUnavailable},
		{name: "tls client key busy on the way to the lsp", code: CodeLSPUnavailable,
			err: &url.Error{Op: "Post", URL: "https://lsp", Err: fmt.Errorf("%w: %w", lsp.ErrClientKey, pkcs11.ErrTokenBusy)}, want: CodeHSMUnavailable},
		{name: "lsp down stays lsp", code: CodeLSPUnavailable, err: fmt.Errorf("%w: dial", lsp.ErrRetryable), want: CodeLSPUnavailable},
		{name: "store stays store", code: CodeStoreUnavailable, err: errors.New("database is locked"), want: CodeStoreUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := fail(tc.code, tc.err, "x")
			assert.Equal(t, tc.want, e.Code)
			assert.ErrorIs(t, e, tc.err, "the cause stays in the chain for the logs")
			assert.Equal(t, tc.want, AsError(fmt.Errorf("wrapped: %w", e)).Code)
			if tc.want == CodeHSMUnavailable {
				assert.Equal(t, CodeHSMUnavailable, AsError(tc.err).Code, "a bare HSM error is not Internal")
				assert.Equal(t, http.StatusServiceUnavailable, e.Code.Status())
				rec := httptest.NewRecorder()
				(&Server{}).writeFault(rec, e)
				assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
				assert.Contains(t, rec.Body.String(), "aortagw:HSMUnavailable")
				assert.NotContains(t, rec.Body.String(), "pkcs11", "the cause is not shown to the XIS")
			}
		})
	}
}

// recordingKey is a software RSA key with SignContext that records the
// actor of every signature (the shape of pkcs11.Key, whose Options.Actor is
// ActorFromContext).
type recordingKey struct {
	*rsa.PrivateKey
	mu     sync.Mutex
	actors []string
}

func (k *recordingKey) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	k.mu.Lock()
	k.actors = append(k.actors, ActorFromContext(ctx))
	k.mu.Unlock()
	return k.PrivateKey.Sign(rand.Reader, digest, opts)
}

func TestSystemKeyNamesAnActor(t *testing.T) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	rk := &recordingKey{PrivateKey: priv}
	k := &systemKey{key: rk, actor: SystemActor("1234")}
	d := sha256.Sum256([]byte("x"))

	// Without a context (tokens.Signer): the system.
	sig, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
	require.NoError(t, err)
	require.NoError(t, rsa.VerifyPKCS1v15(&priv.PublicKey, crypto.SHA256, d[:], sig))
	// With the caregiver in the request context (lsp handshake): the caregiver.
	_, err = k.SignContext(WithActor(context.Background(), "uzi:900000001"), d[:], crypto.SHA256)
	require.NoError(t, err)
	// A context without an actor: the system again.
	_, err = k.SignContext(context.Background(), d[:], crypto.SHA256)
	require.NoError(t, err)
	assert.Equal(t, []string{"system:aortagw:1234", "uzi:900000001", "system:aortagw:1234"}, rk.actors)
	assert.Equal(t, priv.Public(), k.Public())
}

func TestHSMAuditLogsActorNeverPIN(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	audit := hsmAudit(log)
	audit(context.Background(), pkcs11.AuditEvent{KeyURI: "pkcs11:token=hsm;object=server", Actor: "uzi:900000001", Mechanism: "CKM_RSA_PKCS"})
	audit(context.Background(), pkcs11.AuditEvent{KeyURI: "pkcs11:token=hsm;object=server", Actor: "system:aortagw:1234", Mechanism: "CKM_RSA_PKCS", Err: pkcs11.ErrTokenBusy})
	out := buf.String()
	assert.Contains(t, out, "level=DEBUG msg=\"hsm signature\"")
	assert.Contains(t, out, "actor=uzi:900000001")
	assert.Contains(t, out, "level=WARN msg=\"hsm signature\"")
	assert.Contains(t, out, "actor=system:aortagw:1234")
	assert.NotContains(t, out, "pin-value")
}
