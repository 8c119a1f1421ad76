package sbvz

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/internal/uzi"
	"github.com/aortagw/aortagw/testpki"
)

// testCert is a certificate with its key, generated at test time.
// (Replace by testpki once it lands: it makes the same UZI shapes.)
type testCert struct {
	cert   *x509.Certificate
	key    crypto.Signer
	parent *testCert
	full   []*x509.Certificate // chain from testpki
}

// chain returns the certificate and its issuers, leaf first.
func (c *testCert) chain() []*x509.Certificate {
	if c.full != nil {
		return c.full
	}
	var out []*x509.Certificate
	for x := c; x != nil; x = x.parent {
		out = append(out, x.cert)
	}
	return out
}

func uziSAN(t testing.TB, dns string, subjectID string) []byte {
	t.Helper()
	var raws []asn1.RawValue
	if dns != "" {
		raws = append(raws, uzi.DNSName(dns))
	}
	on, err := uzi.SubjectIDName(subjectID)
	require.NoError(t, err)
	raws = append(raws, on)
	b, err := uzi.MarshalSubjectAltName(raws...)
	require.NoError(t, err)
	return b
}

var oidSAN = asn1.ObjectIdentifier{2, 5, 29, 17}

var serialSeq int64 = 1000

// issue makes a certificate. kind: "ca", "server-S" (UZI type S, server+client
// auth), "client-Z" (a UZI card auth cert), "plain-server".
func issue(t testing.TB, cn, kind string, parent *testCert) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serialSeq++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serialSeq),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Ziekenhuis Test"}, Country: []string{"NL"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	switch kind {
	case "ca":
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	case "server-S":
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.Subject.SerialNumber = "900000123"
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidSAN, Value: uziSAN(t, cn, uzi.OIDTestCAServerAcceptance+"-1-900000123-S-90000123-00.000-00000000")}}
	case "client-Z":
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		tmpl.Subject.SerialNumber = "900000456"
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidSAN, Value: uziSAN(t, "", uzi.OIDTestCAZorgverlener+"-1-900000456-Z-90000123-01.015-00000000")}}
	case "plain-server":
		tmpl.DNSNames = []string{cn}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	signer, parentCert := crypto.Signer(key), tmpl
	if parent != nil {
		signer, parentCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), signer)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testCert{cert: c, key: key, parent: parent}
}

// testPKI is the set every test uses: a UZI server CA issuing the
// simulator's certificate and the gateway's client certificate, plus
// wrong-client variants. cardRoot is the root of clientZ when it differs
// from ca.
type testPKI struct {
	ca, otherCA, cardRoot *testCert
	simServer, client     *testCert
	clientZ, otherClient  *testCert
}

var (
	sharedOnce sync.Once
	shared     *testPKI
	sharedErr  error
)

// sharedPKI returns one testpki-generated PKI for the whole test binary
// (generating RSA keys is the slow part): the SBV-Z simulator's and the
// gateway's UZI server certificates under the TEST Private Root G1, a Z card
// under the card root, and a type-S certificate from an unrelated CA.
func sharedPKI(t testing.TB) *testPKI {
	t.Helper()
	sharedOnce.Do(func() {
		p, err := testpki.New(testpki.Options{Seed: 5})
		if err != nil {
			sharedErr = err
			return
		}
		wrap := func(c *testpki.Cert) *testCert { return &testCert{cert: c.Cert, key: c.Key, full: c.Chain} }
		shared = &testPKI{
			ca:        wrap(p.ServerRoot),
			cardRoot:  wrap(p.Root),
			simServer: wrap(p.Servers[testpki.ServerSBVZ]),
			client:    wrap(p.Servers[testpki.ServerGateway]),
			clientZ:   wrap(p.Cards[0].Auth),
		}
		local := newTestPKI(t)
		shared.otherCA, shared.otherClient = local.otherCA, local.otherClient
	})
	if sharedErr != nil {
		t.Fatalf("testpki: %v", sharedErr)
	}
	return shared
}

// newTestPKI generates a small UZI-shaped PKI locally (fast; used where the
// testpki hierarchy is not needed).
func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	ca := issue(t, "TEST UZI-register Private Server CA G1", "ca", nil)
	zca := issue(t, "TEST UZI-register Zorgverlener CA G3", "ca", ca)
	other := issue(t, "Other CA", "ca", nil)
	return &testPKI{
		ca: ca, otherCA: other, cardRoot: ca,
		simServer:   issue(t, "localhost", "server-S", ca),
		client:      issue(t, "gateway.ziekenhuis.test", "server-S", ca),
		clientZ:     issue(t, "Dr. Test", "client-Z", zca),
		otherClient: issue(t, "gateway.ziekenhuis.test", "server-S", other),
	}
}
