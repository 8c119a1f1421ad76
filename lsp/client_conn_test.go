package lsp

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/internal/mtls"
	"github.com/aortagw/aortagw/internal/soap"
	"github.com/aortagw/aortagw/testpki"
)

// ctxKey wraps the real test server key as a context-aware signer (the
// shape of pkcs11.Key) that records the context value it was given and can
// be made to fail like a busy HSM.
type ctxKey struct {
	crypto.Signer
	fail   error
	mu     sync.Mutex
	actors []any
}

type actorCtxKey struct{}

func (k *ctxKey) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	k.mu.Lock()
	k.actors = append(k.actors, ctx.Value(actorCtxKey{}))
	k.mu.Unlock()
	if k.fail != nil {
		return nil, k.fail
	}
	return k.Signer.Sign(rand.Reader, digest, opts)
}

// serveCounting is an mTLS endpoint that answers every request with a SOAP
// fault and counts the TCP connections it accepted.
func serveCounting(t *testing.T, w *world) (url string, conns *atomic.Int64, fault []byte) {
	t.Helper()
	lspCert, err := mtls.Certificate(w.pki.Servers[testpki.ServerLSP].Key, w.pki.Servers[testpki.ServerLSP].Chain)
	require.NoError(t, err)
	conns = &atomic.Int64{}
	fault = []byte(`<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>` +
		`<soap:Fault><faultcode>soap:Server</faultcode><faultstring>busy  elsewhere</faultstring><detail><x>1</x></detail></soap:Fault>` +
		`</soap:Body></soap:Envelope>`)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rw.Header().Set("Content-Type", soap.ContentType)
		rw.WriteHeader(http.StatusInternalServerError)
		_, _ = rw.Write(fault)
	}))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{lspCert}, ClientAuth: tls.RequireAnyClientCert}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts.URL, conns, fault
}

func TestClientConnectionsAndKey(t *testing.T) {
	w := newWorld(t)
	s := w.pki.Servers[testpki.ServerGateway]
	env := w.mint(t, msg{}).envelope
	newClient := func(t *testing.T, url string, key crypto.Signer) *Client {
		cert, err := mtls.Certificate(key, s.Chain)
		require.NoError(t, err)
		cfg := DefaultClientConfig()
		cfg.Endpoint, cfg.Certificate, cfg.RootCAs = url, cert, []*x509.Certificate{w.pki.ServerRoot.Cert}
		c, err := NewClient(cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}

	t.Run("keep-alive reuses one tls connection and faults keep their bytes", func(t *testing.T) {
		url, conns, fault := serveCounting(t, w)
		key := &ctxKey{Signer: s.Key}
		c := newClient(t, url, key)
		assert.GreaterOrEqual(t, c.tr.MaxIdleConnsPerHost, c.cfg.MaxConnsPerHost, "idle pool holds every connection")
		assert.False(t, c.tr.DisableKeepAlives)
		for range 5 {
			_, err := c.Send(context.Background(), env, "")
			var fe *FaultError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, fault, fe.Envelope, "the fault envelope byte for byte")
			assert.Equal(t, "busy  elsewhere", fe.String)
		}
		assert.Equal(t, int64(1), conns.Load(), "one handshake for five messages")
		key.mu.Lock()
		assert.Len(t, key.actors, 1, "one handshake signature")
		key.mu.Unlock()
	})
	t.Run("handshake signature gets the request context", func(t *testing.T) {
		url, _, _ := serveCounting(t, w)
		key := &ctxKey{Signer: s.Key}
		c := newClient(t, url, key)
		ctx := context.WithValue(context.Background(), actorCtxKey{}, "uzi:900000001")
		_, err := c.Send(ctx, env, "")
		var fe *FaultError
		require.ErrorAs(t, err, &fe)
		key.mu.Lock()
		assert.Equal(t, []any{"uzi:900000001"}, key.actors)
		key.mu.Unlock()
	})
	t.Run("client key failure keeps the key's error and sends nothing", func(t *testing.T) {
		url, _, _ := serveCounting(t, w)
		busy := errors.New("pkcs11-like: token busy")
		c := newClient(t, url, &ctxKey{Signer: s.Key, fail: busy})
		_, err := c.Send(context.Background(), env, "")
		require.ErrorIs(t, err, ErrClientKey)
		assert.ErrorIs(t, err, busy)
		assert.NotErrorIs(t, err, ErrOutcomeUnknown)
	})
}
