package tokens

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/internal/testenv"
	"github.com/aortagw/aortagw/internal/uzi"
	"github.com/aortagw/aortagw/pkcs11"
	"github.com/aortagw/aortagw/testpki"
)

// One SoftHSM token directory per process (SoftHSM reads SOFTHSM2_CONF once).
var (
	hsmOnce sync.Once
	hsmPKI  *testpki.PKI
	hsmDir  string
	hsmErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if hsmDir != "" {
		_ = os.RemoveAll(hsmDir)
	}
	os.Exit(code)
}

func softHSMPKI(t testing.TB) *testpki.PKI {
	t.Helper()
	module := testenv.SoftHSMModule(t)
	hsmOnce.Do(func() {
		hsmDir, hsmErr = os.MkdirTemp("", "agw-tok")
		if hsmErr != nil {
			return
		}
		hsmPKI, hsmErr = testpki.New(testpki.Options{Seed: 7, SoftHSM: true, Dir: hsmDir, ModulePath: module})
	})
	if errors.Is(hsmErr, pkcs11.ErrNoCgo) {
		testenv.Missing(t, "pkcs11 needs cgo; this build has none")
	}
	if hsmErr != nil {
		t.Fatalf("softhsm pki: %v", hsmErr)
	}
	return hsmPKI
}

func openHSMKey(t testing.TB, p *testpki.PKI, c *testpki.Cert) *pkcs11.Key {
	t.Helper()
	k, err := pkcs11.Open(context.Background(), c.KeyURI, pkcs11.Options{AllowedModules: []string{p.Module}})
	if err != nil {
		t.Fatalf("open key: %v", err)
	}
	t.Cleanup(func() { _ = k.Close() })
	return k
}

func hsmTransaction(ura string) Transaction {
	return Transaction{URA: ura, BSN: "999911120", InteractionID: "GQZG_IN000001NL", MessageIDRoot: "2.16.528.1.1007.3.3.1",
		MessageIDExt: "1", ApplicationID: AppIDPrefix + "1234", Context: "https://x.example/regel"}
}

// TestSignWithSoftHSM signs a conditional-query transaction token with the
// server key held in SoftHSM (through package pkcs11) and verifies it.
func TestSignWithSoftHSM(t *testing.T) {
	p := softHSMPKI(t)
	k := openHSMKey(t, p, p.Server)
	id, err := uzi.Parse(p.Server.Cert)
	require.NoError(t, err)
	s, err := NewSigner(k, p.Server.Chain, WithClock(fixedClock(p.Now)))
	require.NoError(t, err)
	tok, err := s.SignTransaction(hsmTransaction(id.URA))
	require.NoError(t, err)
	v, err := NewValidator(ValidatorConfig{Roots: p.RootCerts(), Intermediates: p.IntermediateCerts(), CRLs: p.CRLList(),
		Now: fixedClock(p.Now), Directory: func() *FileDirectory { d := &FileDirectory{}; d.Add(p.Server.Cert); return d }()})
	require.NoError(t, err)
	got, err := v.Verify(context.Background(), tok.Bytes(), TypeTransaction)
	require.NoError(t, err)
	assert.Equal(t, "", got.Transaction.NameID)
}

type actorKey struct{}

// TestSignTransactionContext checks that a transaction token is signed under
// the caller's context: the key's audit event sees it, and a cancelled
// context signs nothing.
func TestSignTransactionContext(t *testing.T) {
	p := softHSMPKI(t)
	var mu sync.Mutex
	var actors []string
	k, err := pkcs11.Open(context.Background(), p.Server.KeyURI, pkcs11.Options{AllowedModules: []string{p.Module},
		Actor: func(ctx context.Context) string { a, _ := ctx.Value(actorKey{}).(string); return a },
		Audit: func(_ context.Context, ev pkcs11.AuditEvent) {
			mu.Lock()
			actors = append(actors, ev.Actor)
			mu.Unlock()
		}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = k.Close() })
	id, err := uzi.Parse(p.Server.Cert)
	require.NoError(t, err)
	s, err := NewSigner(k, p.Server.Chain, WithClock(fixedClock(p.Now)))
	require.NoError(t, err)

	ctx := context.WithValue(context.Background(), actorKey{}, "uzi:900000001")
	_, err = s.SignTransactionContext(ctx, hsmTransaction(id.URA))
	require.NoError(t, err)
	_, err = s.SignTransaction(hsmTransaction(id.URA))
	require.NoError(t, err)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	tok, err := s.SignTransactionContext(cctx, hsmTransaction(id.URA))
	require.ErrorIs(t, err, ErrSigningFailed)
	require.ErrorIs(t, err, context.Canceled)
	assert.Nil(t, tok)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"uzi:900000001", "", "uzi:900000001"}, actors)
}

// BenchmarkSoftHSM compares one raw C_Sign (RSA-2048 PKCS#1 v1.5 over a
// SHA-256 digest) with building, signing and serialising a transaction token
// with the same SoftHSM key, one operation in flight.
func BenchmarkSoftHSM(b *testing.B) {
	p := softHSMPKI(b)
	k := openHSMKey(b, p, p.Server)
	id, err := uzi.Parse(p.Server.Cert)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("raw-sign", func(b *testing.B) {
		d := sha256.Sum256([]byte("x"))
		for b.Loop() {
			if _, err := k.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("transaction", func(b *testing.B) {
		s, err := NewSigner(k, p.Server.Chain, WithClock(fixedClock(p.Now)))
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := s.SignTransaction(hsmTransaction(id.URA)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
