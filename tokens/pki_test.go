package tokens

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/beevik/etree"

	"github.com/aortagw/aortagw/internal/uzi"
)

// The test PKI below is UZI-shaped (SAN otherName 2.5.5.5, key usages and
// policies per CPS, issuer DN with organizationIdentifier as UTF8String) and
// generated at test time. The golden-file signer key is fixed in testdata so
// that golden tokens are byte-stable (PKCS#1 v1.5 is deterministic).

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type tcert struct {
	cert *x509.Certificate
	key  *rsa.PrivateKey
}

type tpki struct {
	root, zCA, sCA      *tcert
	zAut, zHnd, zEnc    *tcert // Z card of 123456782, URA 90000382, 01.015
	nAut                *tcert // N card 000000012
	server              *tcert // S cert, URA 90000382
	revokedAut          *tcert // revoked at t0-1h
	expiredAut          *tcert // expired
	futureAut           *tcert // not yet valid
	weakAut             *tcert // RSA 1024
	evilRoot, evilZCA   *tcert // look-alike chain (same names, other keys)
	evilAut             *tcert
	crlZ, crlS, crlRoot *x509.RevocationList
	staleCRLZ           *x509.RevocationList
}

var (
	pkiOnce sync.Once
	thePKI  *tpki
	pkiErr  error
)

func newKey(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

var oidOrgID = asn1.ObjectIdentifier{2, 5, 4, 97}

func caName(cn string) pkix.Name {
	orgID, _ := asn1.Marshal(asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte("NTRNL-50000535")})
	return pkix.Name{Country: []string{"NL"}, Organization: []string{"CIBG"}, CommonName: cn,
		ExtraNames: []pkix.AttributeTypeAndValue{{Type: oidOrgID, Value: asn1.RawValue{FullBytes: orgID}}}}
}

var serialSeq int64 = 1000

func nextSerial() *big.Int { serialSeq++; return big.NewInt(serialSeq * 7919) }

func mkCA(name pkix.Name, parent *tcert, key *rsa.PrivateKey, nb, na time.Time) *tcert {
	tpl := &x509.Certificate{SerialNumber: nextSerial(), Subject: name, NotBefore: nb, NotAfter: na,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	pc, pk := tpl, key
	if parent != nil {
		pc, pk = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, pc, &key.PublicKey, pk)
	if err != nil {
		panic(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &tcert{cert: c, key: key}
}

type leafSpec struct {
	typ      uzi.CardType
	purpose  uzi.KeyPurpose
	uziNr    string
	ura      string
	role     string
	nb, na   time.Time
	bits     int
	fixedKey *rsa.PrivateKey
	serial   *big.Int
}

func mkLeaf(ca *tcert, s leafSpec) *tcert {
	key := s.fixedKey
	if key == nil {
		key = newKey(max(s.bits, 2048))
		if s.bits > 0 && s.bits < 2048 {
			key = newKey(s.bits)
		}
	}
	san := fmt.Sprintf("%s-1-%s-%s-%s-%s-00000000", uzi.CAOIDFor(s.typ, true), s.uziNr, s.typ, s.ura, s.role)
	gn, err := uzi.SubjectIDName(san)
	if err != nil {
		panic(err)
	}
	names := []asn1.RawValue{gn}
	if s.typ == uzi.CardS {
		names = append(names, uzi.DNSName("gw.example.nl"))
	}
	sanDER, err := uzi.MarshalSubjectAltName(names...)
	if err != nil {
		panic(err)
	}
	serial := s.serial
	if serial == nil {
		serial = nextSerial()
	}
	tpl := &x509.Certificate{SerialNumber: serial,
		Subject:   pkix.Name{Country: []string{"NL"}, Organization: []string{"Ziekenhuis Test"}, CommonName: "Test " + s.uziNr, SerialNumber: s.uziNr},
		NotBefore: s.nb, NotAfter: s.na, KeyUsage: s.purpose.KeyUsage(),
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: sanDER}},
	}
	switch s.purpose {
	case uzi.PurposeAuthentication:
		tpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageEmailProtection}
	case uzi.PurposeServer:
		tpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case uzi.PurposeNonRepudiation, uzi.PurposeEncryption:
		tpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}
	}
	if pol := uzi.PolicyFor(s.typ, s.purpose); pol != "" {
		tpl.PolicyIdentifiers = []asn1.ObjectIdentifier{uzi.MustOID(pol)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return &tcert{cert: c, key: key}
}

func mkCRL(ca *tcert, num int64, thisUpdate, nextUpdate time.Time, revoked ...x509.RevocationListEntry) *x509.RevocationList {
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(num),
		ThisUpdate: thisUpdate, NextUpdate: nextUpdate, RevokedCertificateEntries: revoked}, ca.cert, ca.key)
	if err != nil {
		panic(err)
	}
	l, err := x509.ParseRevocationList(der)
	if err != nil {
		panic(err)
	}
	return l
}

// goldenKey is the fixed RSA-2048 key of the golden signer (testdata/golden-key.pem).
func goldenKey(t testing.TB) *rsa.PrivateKey {
	b, err := os.ReadFile("testdata/golden-key.pem")
	if err != nil {
		t.Fatalf("golden key: %v", err)
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatalf("golden key: %v", err)
	}
	return k
}

func testPKI(t testing.TB) *tpki {
	t.Helper()
	pkiOnce.Do(func() {
		gk := goldenKey(t)
		p := &tpki{}
		nb, na := t0.Add(-365*24*time.Hour), t0.Add(3*365*24*time.Hour)
		p.root = mkCA(pkix.Name{Country: []string{"NL"}, Organization: []string{"Staat der Nederlanden"}, CommonName: "Staat der Nederlanden Test Root CA - G3"}, nil, newKey(2048), nb.Add(-time.Hour), na.Add(time.Hour))
		p.zCA = mkCA(caName("UZI-register Zorgverlener CA G3"), p.root, newKey(2048), nb, na)
		p.sCA = mkCA(caName("UZI-register Private Server CA G1"), p.root, newKey(2048), nb, na)
		cardNB, cardNA := t0.Add(-30*24*time.Hour), t0.Add(2*365*24*time.Hour)
		p.zAut = mkLeaf(p.zCA, leafSpec{typ: uzi.CardZ, purpose: uzi.PurposeAuthentication, uziNr: "123456782", ura: "90000382", role: "01.015", nb: cardNB, na: cardNA, fixedKey: gk, serial: big.NewInt(4242424242)})
		p.zHnd = mkLeaf(p.zCA, leafSpec{typ: uzi.CardZ, purpose: uzi.PurposeNonRepudiation, uziNr: "123456782", ura: "90000382", role: "01.015", nb: cardNB, na: cardNA, fixedKey: gk, serial: big.NewInt(4242424243)})
		p.zEnc = mkLeaf(p.zCA, leafSpec{typ: uzi.CardZ, purpose: uzi.PurposeEncryption, uziNr: "123456782", ura: "90000382", role: "01.015", nb: cardNB, na: cardNA, fixedKey: gk})
		p.server = mkLeaf(p.sCA, leafSpec{typ: uzi.CardS, purpose: uzi.PurposeServer, uziNr: "000012345", ura: "90000382", role: "00.000", nb: cardNB, na: cardNA, fixedKey: gk, serial: big.NewInt(4242424244)})
		p.nAut = mkLeaf(p.zCA, leafSpec{typ: uzi.CardZ, purpose: uzi.PurposeAuthentication, uziNr: "000000012", ura: "90000999", role: "30.000", nb: cardNB, na: cardNA, fixedKey: gk})
		p.revokedAut = mkLeaf(p.zCA, leafSpec{typ: uzi.CardZ, purpose: uzi.PurposeAuthentication, uziNr: "123456782", ura: "90000382", role: "01.015", nb: cardNB, na: cardNA, fixedKey: gk})
		p.expiredAut = mkLeaf(p.zCA, leafSpec{typ: uzi.CardZ, purpose: uzi.PurposeAuthentication, uziNr: "123456782", ura: "90000382", role: "01.015", nb: t0.Add(-300 * 24 * time.Hour), na: t0.Add(-24 * time.Hour), fixedKey: gk})
		p.futureAut = mkLeaf(p.zCA, leafSpec{typ: uzi.CardZ, purpose: uzi.PurposeAuthentication, uziNr: "123456782", ura: "90000382", role: "01.015", nb: t0.Add(24 * time.Hour), na: cardNA, fixedKey: gk})
		p.weakAut = mkLeaf(p.zCA, leafSpec{typ: uzi.CardZ, purpose: uzi.PurposeAuthentication, uziNr: "123456782", ura: "90000382", role: "01.015", nb: cardNB, na: cardNA, bits: 1024})
		p.evilRoot = mkCA(p.root.cert.Subject, nil, newKey(2048), nb, na)
		p.evilZCA = mkCA(caName("UZI-register Zorgverlener CA G3"), p.evilRoot, newKey(2048), nb, na)
		p.evilAut = mkLeaf(p.evilZCA, leafSpec{typ: uzi.CardZ, purpose: uzi.PurposeAuthentication, uziNr: "123456782", ura: "90000382", role: "01.015", nb: cardNB, na: cardNA, serial: big.NewInt(4242424242)})
		rev := []x509.RevocationListEntry{{SerialNumber: p.revokedAut.cert.SerialNumber, RevocationTime: t0.Add(-time.Hour)}}
		p.crlZ = mkCRL(p.zCA, 2, t0.Add(-time.Hour), t0.Add(48*time.Hour), rev...)
		p.staleCRLZ = mkCRL(p.zCA, 1, t0.Add(-72*time.Hour), t0.Add(-24*time.Hour), rev...)
		p.crlS = mkCRL(p.sCA, 1, t0.Add(-time.Hour), t0.Add(48*time.Hour))
		p.crlRoot = mkCRL(p.root, 1, t0.Add(-time.Hour), t0.Add(48*time.Hour))
		thePKI = p
	})
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return thePKI
}

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

func seqIDs() func() string {
	var mu sync.Mutex
	n := 0
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		n++
		return fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
	}
}

func newTestSigner(t testing.TB, c *tcert, opts ...Option) *Signer {
	t.Helper()
	p := testPKI(t)
	chain := []*x509.Certificate{c.cert, p.zCA.cert, p.root.cert}
	if c == p.server {
		chain = []*x509.Certificate{c.cert, p.sCA.cert, p.root.cert}
	}
	opts = append([]Option{WithClock(fixedClock(t0)), WithIDGenerator(seqIDs())}, opts...)
	s, err := NewSigner(c.key, chain, opts...)
	if err != nil {
		t.Fatalf("signer: %v", err)
	}
	return s
}

func newTestValidator(t testing.TB, mod ...func(*ValidatorConfig)) *Validator {
	t.Helper()
	p := testPKI(t)
	cfg := ValidatorConfig{
		Roots:         []*x509.Certificate{p.root.cert},
		Intermediates: []*x509.Certificate{p.zCA.cert, p.sCA.cert},
		CRLs:          []*x509.RevocationList{p.crlZ, p.crlS, p.crlRoot},
		Now:           fixedClock(t0.Add(time.Second)),
	}
	dir := &FileDirectory{}
	dir.Add(p.zAut.cert, p.zHnd.cert, p.server.cert, p.nAut.cert, p.revokedAut.cert, p.expiredAut.cert, p.futureAut.cert, p.weakAut.cert)
	cfg.Directory = dir
	for _, m := range mod {
		m(&cfg)
	}
	v, err := NewValidator(cfg)
	if err != nil {
		t.Fatalf("validator: %v", err)
	}
	return v
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func parseForTest(s string) (*etree.Element, error) {
	doc := etree.NewDocument()
	if err := doc.ReadFromString(s); err != nil {
		return nil, err
	}
	return doc.Root(), nil
}
