//go:build cgo && !nopkcs11

package pkcs11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aortagw/aortagw/internal/uzi"
	"github.com/miekg/pkcs11"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// Key IDs every backend provides.
var (
	idAuth = []byte{0x01} // RSA-2048, certificate keyUsage digitalSignature
	idSign = []byte{0x02} // RSA-2048, CKA_ALWAYS_AUTHENTICATE, keyUsage nonRepudiation
)

// backend is one of the two implementations the suite runs against.
type backend struct {
	name    string
	fault   *faultModule
	lib     *library
	label   string
	pin     []byte
	pinFile string
	ca      *testCA
	logs    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

var tokenSeq atomic.Int64

var softKeys = sync.OnceValues(func() ([]*rsa.PrivateKey, error) {
	var out []*rsa.PrivateKey
	for range 2 {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
})

// forEachBackend runs fn against the soft fake and against SoftHSM, each on a fresh token
// behind the fault-injecting wrapper.
func forEachBackend(t *testing.T, fn func(t *testing.T, b *backend)) {
	t.Run("fake", func(t *testing.T) { fn(t, newFakeBackend(t)) })
	t.Run("softhsm", func(t *testing.T) { fn(t, newSoftHSMBackend(t)) })
}

func writePINFile(t testing.TB, pin []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pin")
	require.NoError(t, os.WriteFile(p, append(bytes.Clone(pin), '\n'), 0o600))
	return p
}

func newFakeBackend(t *testing.T) *backend {
	t.Helper()
	keys, err := softKeys()
	require.NoError(t, err)
	b := &backend{name: "fake", label: fmt.Sprintf("fake-%d", tokenSeq.Add(1)), pin: []byte("fake-pin-4321"), ca: newTestCA(t), logs: &syncBuffer{}}
	soft := newSoftModule()
	soft.addToken(7, b.label, b.pin, 0)
	for i, k := range keys {
		id := []byte{byte(i + 1)}
		ku := x509.KeyUsageDigitalSignature
		if i == 1 {
			ku = x509.KeyUsageContentCommitment
		}
		cert := b.ca.issue(t, k.Public(), "key "+string(rune('A'+i)), ku)
		soft.addObject(7, &softObject{class: pkcs11.CKO_PRIVATE_KEY, id: id, label: "k", key: k, pub: k.Public(), alwaysAuth: i == 1})
		soft.addObject(7, &softObject{class: pkcs11.CKO_PUBLIC_KEY, id: id, label: "k", pub: k.Public()})
		soft.addObject(7, &softObject{class: pkcs11.CKO_CERTIFICATE, id: id, label: "k", certDER: cert.Raw})
	}
	// A CA certificate on the token too, so Chain has something to find.
	soft.addObject(7, &softObject{class: pkcs11.CKO_CERTIFICATE, id: []byte("ca"), label: "ca", certDER: b.ca.cert.Raw})
	b.fault = newFaultModule(soft)
	b.lib = newTestLibrary(b.fault)
	b.pinFile = writePINFile(t, b.pin)
	return b
}

func newSoftHSMBackend(t *testing.T) *backend {
	t.Helper()
	mod := softhsm(t)
	b := &backend{name: "softhsm", label: fmt.Sprintf("hsm-%d", tokenSeq.Add(1)), pin: []byte("hsm-user-8765"), ca: newTestCA(t), logs: &syncBuffer{}}
	a, err := OpenAdmin(mod)
	require.NoError(t, err)
	defer a.Close()
	require.NoError(t, a.InitToken(b.label, []byte("hsm-so-1111"), b.pin))
	for i, id := range [][]byte{idAuth, idSign} {
		pub, err := a.GenerateRSAKey(b.label, b.pin, id, "k", 2048, i == 1)
		require.NoError(t, err)
		ku := x509.KeyUsageDigitalSignature
		if i == 1 {
			ku = x509.KeyUsageContentCommitment
		}
		require.NoError(t, a.ImportCertificate(b.label, b.pin, id, "k", b.ca.issue(t, pub, "key", ku)))
	}
	require.NoError(t, a.ImportCertificate(b.label, b.pin, []byte("ca"), "ca", b.ca.cert))
	// Keep the real module loaded for the test and wrap it in the fault injector.
	real, err := loadModule(mod)
	require.NoError(t, err)
	t.Cleanup(real.release)
	b.fault = newFaultModule(real.mod)
	b.lib = newTestLibrary(b.fault)
	b.pinFile = writePINFile(t, b.pin)
	return b
}

func (b *backend) uri(id []byte) string {
	u := "pkcs11:token=" + b.label
	if id != nil {
		u += ";id="
		for _, c := range id {
			u += fmt.Sprintf("%%%02X", c)
		}
	}
	return u + "?pin-source=file:" + b.pinFile
}

func (b *backend) opts() Options {
	return Options{
		Logger:          slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OpTimeout:       5 * time.Second,
		PoolSize:        2,
		RecoveryBackoff: time.Millisecond, MaxRecoveryBackoff: 5 * time.Millisecond,
	}
}

// open opens a key on the backend's wrapped library (what Open does after the allow-list).
func (b *backend) open(ctx context.Context, uri string, opts Options) (*Key, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	registry.mu.Lock()
	b.lib.refs++
	registry.mu.Unlock()
	tok, err := openTokenOn(ctx, b.lib, u, opts)
	if err != nil {
		b.lib.release()
		return nil, err
	}
	obj, _ := u.Path("object")
	k, err := newKey(ctx, tok, u, u.ID(), obj, opts)
	if err != nil {
		tok.release()
		b.lib.release()
		return nil, err
	}
	return k, nil
}

func (b *backend) mustOpen(t *testing.T, id []byte) *Key {
	t.Helper()
	k, err := b.open(context.Background(), b.uri(id), b.opts())
	require.NoError(t, err)
	t.Cleanup(func() { _ = k.Close() })
	return k
}

// assertClean checks what every fault test must: no PIN in logs or errors, no goroutine left.
func (b *backend) assertClean(t *testing.T, errs ...error) {
	t.Helper()
	assert.NotContains(t, string(b.logs.Bytes()), string(b.pin), "PIN in logs")
	for _, err := range errs {
		if err != nil {
			assert.NotContains(t, err.Error(), string(b.pin), "PIN in error")
		}
	}
}

func leakCheck(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

var digest = func() []byte { d := sha256.Sum256([]byte("aortagw test")); return d[:] }()

// verify checks a signature with the key's public key.
func verify(t *testing.T, k *Key, sig []byte, opts crypto.SignerOpts) {
	t.Helper()
	switch pub := k.Public().(type) {
	case *rsa.PublicKey:
		if po, ok := opts.(*rsa.PSSOptions); ok {
			assert.NoError(t, rsa.VerifyPSS(pub, opts.HashFunc(), digest, sig, po), "wrong PSS signature")
			return
		}
		assert.NoError(t, rsa.VerifyPKCS1v15(pub, opts.HashFunc(), digest, sig), "wrong signature")
	case *ecdsa.PublicKey:
		assert.True(t, ecdsa.VerifyASN1(pub, digest, sig), "wrong ecdsa signature")
	default:
		t.Fatalf("unexpected public key %T", pub)
	}
}

// signUntil retries until the token recovered (bounded), verifying what comes out.
func signUntil(t *testing.T, k *Key) {
	t.Helper()
	var err error
	for range 200 {
		var sig []byte
		sig, err = k.Sign(rand.Reader, digest, crypto.SHA256)
		if err == nil {
			verify(t, k, sig, crypto.SHA256)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("token did not recover: %v", err)
}

func TestSignMechanisms(t *testing.T) {
	leakCheck(t)
	forEachBackend(t, func(t *testing.T, b *backend) {
		k := b.mustOpen(t, idAuth)
		require.NotNil(t, k.Certificate())
		assert.True(t, publicEqual(k.Certificate().PublicKey, k.Public()))
		chain := k.Chain()
		require.Len(t, chain, 2)
		assert.True(t, chain[1].Equal(b.ca.cert))
		assert.NoError(t, k.Healthy(context.Background()))
		assert.Contains(t, k.URI(), "id=%01")
		assert.NotContains(t, k.URI(), string(b.pin))

		for _, tc := range []struct {
			name string
			opts crypto.SignerOpts
		}{
			{"pkcs1 sha256", crypto.SHA256},
			{"pss equals hash", &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}},
			{"pss auto", &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: crypto.SHA256}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				sig, err := k.Sign(rand.Reader, digest, tc.opts)
				require.NoError(t, err)
				verify(t, k, sig, tc.opts)
			})
		}
		t.Run("sha384 and sha512", func(t *testing.T) {
			for _, h := range []crypto.Hash{crypto.SHA384, crypto.SHA512} {
				hh := h.New()
				hh.Write([]byte("m"))
				d := hh.Sum(nil)
				sig, err := k.SignContext(context.Background(), d, h)
				require.NoError(t, err)
				assert.NoError(t, rsa.VerifyPKCS1v15(k.Public().(*rsa.PublicKey), h, d, sig))
			}
		})
		t.Run("sign message", func(t *testing.T) {
			sig, err := k.SignMessage(context.Background(), []byte("aortagw test"), crypto.SHA256)
			require.NoError(t, err)
			verify(t, k, sig, crypto.SHA256)
		})
		t.Run("refusals", func(t *testing.T) {
			_, err := k.Sign(rand.Reader, digest[:31], crypto.SHA256)
			assert.ErrorIs(t, err, ErrDigestLength)
			_, err = k.Sign(rand.Reader, digest, crypto.Hash(0))
			assert.ErrorIs(t, err, ErrUnsupported)
			_, err = k.Sign(rand.Reader, digest[:20], crypto.SHA1)
			assert.ErrorIs(t, err, ErrUnsupported)
		})
		require.NoError(t, k.Close())
		require.NoError(t, k.Close())
		_, err := k.Sign(rand.Reader, digest, crypto.SHA256)
		assert.ErrorIs(t, err, ErrClosed)
		assert.Zero(t, b.fault.liveSessions(), "sessions left open after the last Close")
		b.assertClean(t, err)
	})
}

func TestTokenRemovedMidSign(t *testing.T) {
	leakCheck(t)
	forEachBackend(t, func(t *testing.T, b *backend) {
		k := b.mustOpen(t, idAuth)
		b.fault.setSignHook(func(f *faultModule) error {
			f.remove()
			f.signHook = nil // called without f.mu held
			return nil       // the module now answers CKR_DEVICE_REMOVED
		})
		sig, err := k.Sign(rand.Reader, digest, crypto.SHA256)
		assert.Nil(t, sig)
		require.Error(t, err)
		assert.ErrorIs(t, err, ErrDevice)
		var errs []error
		for range 5 { // fail closed while the token is gone
			sig, err := k.Sign(rand.Reader, digest, crypto.SHA256)
			assert.Nil(t, sig)
			assert.ErrorIs(t, err, ErrTokenUnavailable)
			errs = append(errs, err)
		}
		assert.Error(t, k.Healthy(context.Background()))
		b.fault.insert()
		signUntil(t, k)
		assert.NoError(t, k.Healthy(context.Background()))
		assert.Equal(t, 1.0, testutil.ToFloat64(k.tok.m.relogins))
		assert.GreaterOrEqual(t, testutil.ToFloat64(k.tok.m.errs.WithLabelValues(b.label, "CKR_DEVICE_REMOVED")), 1.0)
		assert.GreaterOrEqual(t, testutil.ToFloat64(k.tok.m.errs.WithLabelValues(b.label, "unavailable")), 5.0)
		assert.GreaterOrEqual(t, testutil.ToFloat64(k.tok.m.evictions), 1.0)
		b.assertClean(t, errs...)
	})
}

func TestHSMRestartBetweenSignInitAndSign(t *testing.T) {
	leakCheck(t)
	forEachBackend(t, func(t *testing.T, b *backend) {
		k := b.mustOpen(t, idAuth)
		var once sync.Once
		b.fault.setSignHook(func(f *faultModule) error {
			once.Do(f.restart) // every handle invalid, login state gone
			return nil
		})
		sig, err := k.Sign(rand.Reader, digest, crypto.SHA256)
		assert.Nil(t, sig)
		require.Error(t, err)
		before := b.fault.userLogins.Load()
		signUntil(t, k) // recovery: new sessions, one new login, key found again by CKA_ID
		assert.Equal(t, before+1, b.fault.userLogins.Load(), "exactly one re-login")
		for range 3 {
			sig, err := k.Sign(rand.Reader, digest, crypto.SHA256)
			require.NoError(t, err)
			verify(t, k, sig, crypto.SHA256)
		}
		b.assertClean(t, err)
	})
}

func TestPoolExhausted(t *testing.T) {
	leakCheck(t)
	forEachBackend(t, func(t *testing.T, b *backend) {
		k := b.mustOpen(t, idAuth)
		gate := make(chan struct{})
		b.fault.mu.Lock()
		b.fault.gate = gate
		b.fault.mu.Unlock()
		type res struct {
			sig []byte
			err error
		}
		slow := make(chan res, 2)
		for range 2 { // occupy the pool (size 2)
			go func() {
				sig, err := k.Sign(rand.Reader, digest, crypto.SHA256)
				slow <- res{sig, err}
			}()
		}
		for b.fault.blocked.Load() < 2 {
			time.Sleep(time.Millisecond)
		}
		var wg sync.WaitGroup
		errs := make([]error, 100)
		sigs := make([][]byte, 100)
		for i := range 100 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				sigs[i], errs[i] = k.SignContext(ctx, digest, crypto.SHA256)
			})
		}
		wg.Wait()
		for i := range 100 {
			assert.Nil(t, sigs[i])
			assert.ErrorIs(t, errs[i], ErrTokenBusy)
			assert.ErrorIs(t, errs[i], context.DeadlineExceeded)
		}
		b.fault.mu.Lock()
		b.fault.gate = nil
		b.fault.mu.Unlock()
		close(gate)
		for range 2 {
			r := <-slow
			require.NoError(t, r.err)
			verify(t, k, r.sig, crypto.SHA256)
		}
		signUntil(t, k)
		b.assertClean(t, errs...)
	})
}

func TestWrongPINExactlyOneLogin(t *testing.T) {
	leakCheck(t)
	forEachBackend(t, func(t *testing.T, b *backend) {
		t.Run("at open", func(t *testing.T) {
			b.pinFile = writePINFile(t, []byte("wrong-pin-0000"))
			before := b.fault.userLogins.Load()
			k, err := b.open(context.Background(), b.uri(idAuth), b.opts())
			assert.Nil(t, k)
			assert.ErrorIs(t, err, ErrPIN)
			assert.Equal(t, before+1, b.fault.userLogins.Load(), "exactly one C_Login")
			assert.NotContains(t, err.Error(), "wrong-pin-0000")
			assert.NotContains(t, string(b.logs.Bytes()), "wrong-pin-0000")
		})
		t.Run("at recovery", func(t *testing.T) {
			b.pinFile = writePINFile(t, b.pin)
			k := b.mustOpen(t, idAuth)
			// The PIN changes underneath (an operator typo in the mounted secret), then the
			// token restarts: recovery logs in once, is refused, and never tries again.
			require.NoError(t, os.WriteFile(b.pinFile, []byte("wrong-pin-1111\n"), 0o600))
			b.fault.restart()
			before := b.fault.userLogins.Load()
			var errs []error
			for range 10 {
				sig, err := k.Sign(rand.Reader, digest, crypto.SHA256)
				assert.Nil(t, sig)
				errs = append(errs, err)
			}
			assert.ErrorIs(t, errs[len(errs)-1], ErrPIN)
			assert.Equal(t, before+1, b.fault.userLogins.Load(), "exactly one C_Login after the restart")
			assert.ErrorIs(t, k.Healthy(context.Background()), ErrPIN)
			for _, err := range errs {
				assert.NotContains(t, err.Error(), "wrong-pin-1111")
			}
			assert.NotContains(t, string(b.logs.Bytes()), "wrong-pin-1111")
			// Fixed and reopened: works again.
			require.NoError(t, os.WriteFile(b.pinFile, append(bytes.Clone(b.pin), '\n'), 0o600))
			require.NoError(t, k.Close())
			k2 := b.mustOpen(t, idAuth)
			signUntil(t, k2)
			b.assertClean(t, errs...)
		})
	})
}

func TestAlwaysAuthenticate(t *testing.T) {
	leakCheck(t)
	forEachBackend(t, func(t *testing.T, b *backend) {
		k := b.mustOpen(t, idSign)
		require.True(t, k.alwaysAuth)
		before := b.fault.ctxLogins.Load()
		for range 2 {
			sig, err := k.Sign(rand.Reader, digest, crypto.SHA256)
			require.NoError(t, err)
			verify(t, k, sig, crypto.SHA256)
		}
		assert.Equal(t, before+2, b.fault.ctxLogins.Load(), "one context-specific login per signature")
		// Concurrent signatures are serialised and all verify.
		var wg sync.WaitGroup
		sigs := make([][]byte, 6)
		errs := make([]error, 6)
		for i := range 6 {
			wg.Go(func() { sigs[i], errs[i] = k.Sign(rand.Reader, digest, crypto.SHA256) })
		}
		wg.Wait()
		for i := range 6 {
			require.NoError(t, errs[i])
			verify(t, k, sigs[i], crypto.SHA256)
		}
		b.assertClean(t, errs...)
	})
}

func TestCloseWhileInFlight(t *testing.T) {
	leakCheck(t)
	forEachBackend(t, func(t *testing.T, b *backend) {
		k, err := b.open(context.Background(), b.uri(idAuth), b.opts())
		require.NoError(t, err)
		gate := make(chan struct{})
		b.fault.mu.Lock()
		b.fault.gate = gate
		b.fault.mu.Unlock()
		type res struct {
			sig []byte
			err error
		}
		out := make(chan res, 4)
		for range 4 {
			go func() {
				sig, err := k.Sign(rand.Reader, digest, crypto.SHA256)
				out <- res{sig, err}
			}()
		}
		for b.fault.blocked.Load() < 2 {
			time.Sleep(time.Millisecond)
		}
		closed := make(chan error, 1)
		go func() { closed <- k.Close() }()
		time.Sleep(20 * time.Millisecond)
		select {
		case <-closed:
			t.Fatal("Close returned while signatures were in flight")
		default:
		}
		b.fault.mu.Lock()
		b.fault.gate = nil
		b.fault.mu.Unlock()
		close(gate)
		require.NoError(t, <-closed)
		var errs []error
		for range 4 {
			r := <-out
			if r.err != nil {
				assert.ErrorIs(t, r.err, ErrClosed)
				errs = append(errs, r.err)
				continue
			}
			verify(t, k, r.sig, crypto.SHA256)
		}
		_, err = k.Sign(rand.Reader, digest, crypto.SHA256)
		assert.ErrorIs(t, err, ErrClosed)
		assert.Zero(t, b.fault.liveSessions())
		// The token works again for a new Key.
		k2 := b.mustOpen(t, idAuth)
		signUntil(t, k2)
		b.assertClean(t, errs...)
	})
}

func TestOpenForPurpose(t *testing.T) {
	leakCheck(t)
	forEachBackend(t, func(t *testing.T, b *backend) {
		for _, tc := range []struct {
			name    string
			purpose uzi.KeyPurpose
			id      []byte
		}{
			{"authentication", uzi.PurposeAuthentication, idAuth},
			{"non-repudiation", uzi.PurposeNonRepudiation, idSign},
		} {
			t.Run(tc.name, func(t *testing.T) {
				u, err := ParseURI(b.uri(nil))
				require.NoError(t, err)
				registry.mu.Lock()
				b.lib.refs++
				registry.mu.Unlock()
				tok, err := openTokenOn(context.Background(), b.lib, u, b.opts())
				require.NoError(t, err)
				k, err := openPurposeOn(context.Background(), tok, u, tc.purpose, b.opts())
				require.NoError(t, err)
				defer k.Close()
				assert.Equal(t, tc.id, k.id)
				sig, err := k.Sign(rand.Reader, digest, crypto.SHA256)
				require.NoError(t, err)
				verify(t, k, sig, crypto.SHA256)
			})
		}
	})
}

func TestPINSourceRules(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		require.NoError(t, os.Chmod(p, mode))
		return p
	}
	for _, tc := range []struct {
		name, path string
		want       string
		err        error
	}{
		{"trims one newline", write("a", "1234\n", 0o600), "1234", nil},
		{"trims crlf", write("b", "1234\r\n", 0o400), "1234", nil},
		{"keeps a second newline", write("c", "1234\n\n", 0o600), "1234\n", nil},
		{"group readable", write("d", "1234", 0o640), "", ErrPINSource},
		{"world readable", write("e", "1234", 0o604), "", ErrPINSource},
		{"empty", write("f", "\n", 0o600), "", ErrPINSource},
		{"missing", filepath.Join(dir, "nope"), "", ErrPINSource},
		{"directory", dir, "", ErrPINSource},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := ParseURI("pkcs11:token=x?pin-source=file:" + (&url.URL{Path: tc.path}).EscapedPath())
			require.NoError(t, err)
			pin, err := u.readPIN(false)
			if tc.err != nil {
				assert.ErrorIs(t, err, tc.err)
				assert.NotContains(t, fmt.Sprint(err), "1234")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, string(pin))
		})
	}
	u, err := ParseURI("pkcs11:token=x?pin-value=1234")
	require.NoError(t, err)
	_, err = u.readPIN(false)
	assert.ErrorIs(t, err, ErrPINValueNotAllowed)
	pin, err := u.readPIN(true)
	require.NoError(t, err)
	assert.Equal(t, "1234", string(pin))
}

func TestECDSAAndHashAndSignOnly(t *testing.T) {
	leakCheck(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	keys, err := softKeys()
	require.NoError(t, err)
	for _, tc := range []struct {
		name  string
		mechs []uint
		key   crypto.Signer
	}{
		{"ecdsa", []uint{pkcs11.CKM_ECDSA}, ec},
		{"hash-and-sign only", []uint{pkcs11.CKM_SHA256_RSA_PKCS}, keys[0]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			soft := newSoftModule(tc.mechs...)
			soft.addToken(1, "t", []byte("pin-1"), 0)
			soft.addObject(1, &softObject{class: pkcs11.CKO_PRIVATE_KEY, id: []byte{9}, key: tc.key, pub: tc.key.Public()})
			soft.addObject(1, &softObject{class: pkcs11.CKO_PUBLIC_KEY, id: []byte{9}, pub: tc.key.Public()})
			b := &backend{name: "fake", label: "t", pin: []byte("pin-1"), fault: newFaultModule(soft), logs: &syncBuffer{}}
			b.lib = newTestLibrary(b.fault)
			b.pinFile = writePINFile(t, b.pin)
			k := b.mustOpen(t, []byte{9})
			assert.Nil(t, k.Certificate())
			if _, isEC := tc.key.(*ecdsa.PrivateKey); isEC {
				sig, err := k.Sign(rand.Reader, digest, crypto.SHA256)
				require.NoError(t, err)
				verify(t, k, sig, crypto.SHA256)
				return
			}
			_, err := k.Sign(rand.Reader, digest, crypto.SHA256)
			assert.ErrorIs(t, err, ErrNeedsMessage)
			sig, err := k.SignMessage(context.Background(), []byte("aortagw test"), crypto.SHA256)
			require.NoError(t, err)
			verify(t, k, sig, crypto.SHA256)
		})
	}
}
