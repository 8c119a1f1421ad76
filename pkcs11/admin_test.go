//go:build cgo && !nopkcs11

package pkcs11

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testCA is a software CA that certifies token keys in tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testCA{cert: c, key: key}
}

func (ca *testCA) issue(t testing.TB, pub crypto.PublicKey, cn string, ku x509.KeyUsage) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: ku,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

func TestAdminProvisionsSoftHSM(t *testing.T) {
	mod := softhsm(t)
	a, err := OpenAdmin(mod)
	require.NoError(t, err)
	defer a.Close()

	so, user := []byte("so-pin-1234"), []byte("user-pin-5678")
	label := fmt.Sprintf("admin-%d", tokenSeq.Add(1))
	require.NoError(t, a.InitToken(label, so, user))
	assert.ErrorIs(t, a.InitToken(label, so, user), ErrTokenExists)

	pub, err := a.GenerateRSAKey(label, user, []byte{0x01}, "auth", 2048, false)
	require.NoError(t, err)
	rpub, ok := pub.(*rsa.PublicKey)
	require.True(t, ok)
	assert.Equal(t, 2048, rpub.N.BitLen())
	_, err = a.GenerateRSAKey(label, user, []byte{0x02}, "sign", 2048, true)
	require.NoError(t, err)

	_, err = a.GenerateRSAKey(label, []byte("wrong"), []byte{0x03}, "x", 2048, false)
	assert.ErrorIs(t, err, ErrPIN)
	_, err = a.GenerateRSAKey("no-such-token", user, []byte{0x03}, "x", 2048, false)
	assert.ErrorIs(t, err, ErrTokenNotFound)

	ca := newTestCA(t)
	cert := ca.issue(t, pub, "auth cert", x509.KeyUsageDigitalSignature)
	require.NoError(t, a.ImportCertificate(label, user, []byte{0x01}, "auth", cert))

	// Read back what the token holds, through the same shared module context.
	m := a.lib.mod
	sh, done, err := userSession(m, label, user)
	require.NoError(t, err)
	defer done()
	find := func(class uint, id []byte) []pkcs11.ObjectHandle {
		require.NoError(t, m.FindObjectsInit(sh, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, class), pkcs11.NewAttribute(pkcs11.CKA_ID, id)}))
		hs, _, err := m.FindObjects(sh, 10)
		require.NoError(t, err)
		require.NoError(t, m.FindObjectsFinal(sh))
		return hs
	}
	for _, tc := range []struct {
		name       string
		id         []byte
		alwaysAuth bool
	}{{"auth", []byte{1}, false}, {"sign", []byte{2}, true}} {
		t.Run(tc.name, func(t *testing.T) {
			hs := find(pkcs11.CKO_PRIVATE_KEY, tc.id)
			require.Len(t, hs, 1)
			attrs, err := m.GetAttributeValue(sh, hs[0], []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
				pkcs11.NewAttribute(pkcs11.CKA_SIGN, nil), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, nil),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, nil), pkcs11.NewAttribute(pkcs11.CKA_ALWAYS_AUTHENTICATE, nil),
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil)})
			require.NoError(t, err)
			assert.Equal(t, []byte{1}, attrs[0].Value, "sensitive")
			assert.Equal(t, []byte{0}, attrs[1].Value, "extractable")
			assert.Equal(t, []byte{1}, attrs[2].Value, "sign")
			assert.Equal(t, []byte{1}, attrs[3].Value, "private")
			assert.Equal(t, []byte{1}, attrs[4].Value, "token")
			assert.Equal(t, boolByte(tc.alwaysAuth), attrs[5].Value, "always authenticate")
			assert.Equal(t, tc.name, string(attrs[6].Value))
			// The private value must not be readable.
			_, err = m.GetAttributeValue(sh, hs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_PRIVATE_EXPONENT, nil)})
			assert.Error(t, err)
		})
	}
	hs := find(pkcs11.CKO_CERTIFICATE, []byte{1})
	require.Len(t, hs, 1)
	attrs, err := m.GetAttributeValue(sh, hs[0], []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil), pkcs11.NewAttribute(pkcs11.CKA_SUBJECT, nil),
		pkcs11.NewAttribute(pkcs11.CKA_ISSUER, nil), pkcs11.NewAttribute(pkcs11.CKA_SERIAL_NUMBER, nil),
		pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_TYPE, nil)})
	require.NoError(t, err)
	assert.Equal(t, cert.Raw, attrs[0].Value)
	assert.Equal(t, cert.RawSubject, attrs[1].Value)
	assert.Equal(t, cert.RawIssuer, attrs[2].Value)
	wantSerial, _ := derInteger(cert.SerialNumber)
	assert.Equal(t, wantSerial, attrs[3].Value)

	// A signature made in the token verifies with the returned public key.
	require.NoError(t, m.SignInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS, nil)}, find(pkcs11.CKO_PRIVATE_KEY, []byte{1})[0]))
	sig, err := m.Sign(sh, []byte("hello"))
	require.NoError(t, err)
	d := sha256.Sum256([]byte("hello"))
	assert.NoError(t, rsa.VerifyPKCS1v15(rpub, crypto.SHA256, d[:], sig))

	require.NoError(t, a.Close())
	require.NoError(t, a.Close())
	assert.ErrorIs(t, a.InitToken("x", so, user), ErrClosed)
}

func boolByte(b bool) []byte {
	if b {
		return []byte{1}
	}
	return []byte{0}
}
