package store

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/internal/testenv"
)

type testCA struct {
	root, inter, leaf *x509.Certificate
	leafKey           *rsa.PrivateKey
}

func newTestCA(t testing.TB, now time.Time) *testCA {
	t.Helper()
	mk := func(tmpl, parent *x509.Certificate, pub any, signer any) *x509.Certificate {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		require.NoError(t, err)
		c, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		return c
	}
	key := func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		return k
	}
	rk, ik, lk := key(), key(), key()
	rootT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(5, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	root := mk(rootT, rootT, &rk.PublicKey, rk)
	interT := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Test Server CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(4, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	inter := mk(interT, root, &ik.PublicKey, rk)
	leafT := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "aortagw.ziekenhuis.test",
		SerialNumber: "900000999"}, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(3, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	leaf := mk(leafT, inter, &lk.PublicKey, ik)
	return &testCA{root: root, inter: inter, leaf: leaf, leafKey: lk}
}

func TestExportAudit(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := openStore(t, "sqlite:"+filepath.Join(t.TempDir(), "x.db"), clk)
	for i := 1; i <= 9; i++ {
		clk.Add(time.Minute)
		_, err := s.Append(ctx, auditRec(i))
		require.NoError(t, err)
	}
	ca := newTestCA(t, clk.Now())
	roots := x509.NewCertPool()
	roots.AddCert(ca.root)

	der, err := ExportAudit(ctx, s, clk.Now(), ExportOptions{BSN: "999990001", Signer: ca.leafKey,
		Chain: []*x509.Certificate{ca.leaf, ca.inter, ca.root}})
	require.NoError(t, err)
	doc, signer, err := VerifyExport(der, roots, clk.Now())
	require.NoError(t, err)
	assert.Equal(t, ca.leaf.Raw, signer.Raw)
	assert.Equal(t, ExportFormat, doc.Format)
	assert.Equal(t, "999990001", doc.BSN)
	assert.Len(t, doc.Records, 3)
	assert.Equal(t, int64(9), doc.ChainHead.Seq)
	for _, r := range doc.Records {
		assert.Equal(t, "999990001", r.BSN)
	}

	// From/To select a window.
	from := newClock().Now().Add(3 * time.Minute)
	der2, err := ExportAudit(ctx, s, clk.Now(), ExportOptions{BSN: "999990001", From: from, To: from.Add(4 * time.Minute),
		Signer: ca.leafKey, Chain: []*x509.Certificate{ca.leaf, ca.inter}})
	require.NoError(t, err)
	doc2, _, err := VerifyExport(der2, roots, clk.Now())
	require.NoError(t, err)
	require.Len(t, doc2.Records, 1)
	assert.Equal(t, int64(4), doc2.Records[0].Seq)

	// Verification failures.
	other := newTestCA(t, clk.Now())
	otherRoots := x509.NewCertPool()
	otherRoots.AddCert(other.root)
	flipped := append([]byte(nil), der...)
	idx := len(flipped) / 2
	flipped[idx] ^= 0x01
	tests := []struct {
		name  string
		der   []byte
		roots *x509.CertPool
		at    time.Time
	}{
		{name: "other root", der: der, roots: otherRoots, at: clk.Now()},
		{name: "flipped byte", der: flipped, roots: roots, at: clk.Now()},
		{name: "truncated", der: der[:len(der)-10], roots: roots, at: clk.Now()},
		{name: "empty", der: nil, roots: roots, at: clk.Now()},
		{name: "after certificate expiry", der: der, roots: roots, at: clk.Now().AddDate(10, 0, 0)},
		{name: "no roots", der: der, roots: nil, at: clk.Now()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := VerifyExport(tc.der, tc.roots, tc.at)
			assert.ErrorIs(t, err, ErrBadExport)
		})
	}

	// A broken chain is not exported.
	tamper(t, s, "UPDATE audit_log SET outcome = 'x' WHERE seq = 2")
	_, err = ExportAudit(ctx, s, clk.Now(), ExportOptions{BSN: "999990001", Signer: ca.leafKey, Chain: []*x509.Certificate{ca.leaf}})
	assert.ErrorIs(t, err, ErrChainBroken)
	_, err = ExportAudit(ctx, s, clk.Now(), ExportOptions{BSN: "999990001"})
	assert.ErrorIs(t, err, ErrInvalid)
}

// TestExportOpenSSL checks the export with an independent CMS implementation.
func TestExportOpenSSL(t *testing.T) {
	openssl := testenv.RequireTool(t, "openssl")[0]
	ctx := context.Background()
	clk := &fakeClock{t: time.Now()}
	s := openStore(t, "sqlite:"+filepath.Join(t.TempDir(), "x.db"), clk)
	for i := 1; i <= 4; i++ {
		_, err := s.Append(ctx, auditRec(i))
		require.NoError(t, err)
	}
	ca := newTestCA(t, clk.Now())
	der, err := ExportAudit(ctx, s, clk.Now(), ExportOptions{BSN: "999990001", Signer: ca.leafKey,
		Chain: []*x509.Certificate{ca.leaf, ca.inter, ca.root}})
	require.NoError(t, err)

	dir := t.TempDir()
	in := filepath.Join(dir, "export.p7m")
	rootPEM := filepath.Join(dir, "root.pem")
	require.NoError(t, os.WriteFile(in, der, 0o600))
	require.NoError(t, os.WriteFile(rootPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.root.Raw}), 0o600))
	out, err := exec.Command(openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", in, "-CAfile", rootPEM,
		"-purpose", "any").CombinedOutput()
	require.NoError(t, err, "openssl cms -verify: %s", out)
	assert.Contains(t, string(out), `"format":"aortagw-audit-export/v1"`)
	assert.Contains(t, string(out), "Verification successful")

	// A byte flipped in the signed content fails openssl too.
	content := []byte(`"bsn":"999990001"`)
	i := indexOf(der, content)
	require.Positive(t, i)
	der[i+8] = '8'
	require.NoError(t, os.WriteFile(in, der, 0o600))
	out, err = exec.Command(openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", in, "-CAfile", rootPEM,
		"-purpose", "any").CombinedOutput()
	assert.Error(t, err, "tampered export must fail openssl: %s", out)
}

func indexOf(b, sub []byte) int {
	for i := 0; i+len(sub) <= len(b); i++ {
		if string(b[i:i+len(sub)]) == string(sub) {
			return i
		}
	}
	return -1
}

// FuzzVerifyExport feeds untrusted bytes to the export verifier.
func FuzzVerifyExport(f *testing.F) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ca := newTestCA(f, now)
	roots := x509.NewCertPool()
	roots.AddCert(ca.root)
	clk := &fakeClock{t: now}
	dir, err := os.MkdirTemp("", "agwfuzz")
	require.NoError(f, err)
	f.Cleanup(func() { _ = os.RemoveAll(dir) })
	st, err := Open(context.Background(), "sqlite:"+filepath.Join(dir, "f.db"), Options{Now: clk.Now, Logger: quietLogger()})
	require.NoError(f, err)
	defer st.Close()
	_, err = st.Append(context.Background(), auditRec(1))
	require.NoError(f, err)
	der, err := ExportAudit(context.Background(), st, now, ExportOptions{BSN: "999990001", Signer: ca.leafKey,
		Chain: []*x509.Certificate{ca.leaf, ca.inter}})
	require.NoError(f, err)
	f.Add(der)
	f.Add([]byte{0x30, 0x80})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		doc, _, err := VerifyExport(b, roots, now)
		if err == nil && doc == nil {
			t.Fatal("nil document without error")
		}
	})
}
