package uzi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fixture is a tiny issuer for parser tests. ECDSA keys keep it fast; the parser does not care
// about the key type.
type fixture struct {
	key    *ecdsa.PrivateKey
	leaf   *ecdsa.PrivateKey
	issuer *x509.Certificate
}

func newFixture(t testing.TB, issuerCN string) *fixture {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	lk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: issuerCN, Organization: []string{"CIBG"}, Country: []string{"NL"}},
		NotBefore: time.Unix(1.7e9, 0), NotAfter: time.Unix(1.9e9, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &fixture{key: k, leaf: lk, issuer: c}
}

// leafSpec describes one test certificate; zero fields get a valid Z AUT default.
type leafSpec struct {
	sid          string
	extraSIDs    []string
	upn          string
	permanent    []string // value, assigner
	serial       []string // subject serialNumber values
	ku           x509.KeyUsage
	kuNonCrit    bool
	eku          []x509.ExtKeyUsage
	policies     []string
	noSAN        bool
	rawSIDValue  []byte // DER for the otherName value instead of an IA5String
	dnsAndIP     bool
	skipDefaults bool
}

func (f *fixture) cert(t testing.TB, s leafSpec) *x509.Certificate {
	t.Helper()
	if !s.skipDefaults {
		if s.sid == "" {
			s.sid = "2.16.528.1.1003.1.3.5.5.2-1-123456789-Z-90000123-01.015-00000000"
		}
		if s.serial == nil {
			s.serial = []string{"123456789"}
		}
		if s.ku == 0 {
			s.ku = x509.KeyUsageDigitalSignature
		}
		if s.eku == nil {
			s.eku = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageEmailProtection}
		}
		if s.policies == nil {
			s.policies = []string{OIDPolicyZNAuth}
		}
	}
	var names []asn1.RawValue
	add := func(rv asn1.RawValue, err error) {
		require.NoError(t, err)
		names = append(names, rv)
	}
	if s.rawSIDValue != nil {
		add(OtherName(OIDSubjectID, s.rawSIDValue))
	} else if s.sid != "" {
		add(SubjectIDName(s.sid))
	}
	for _, x := range s.extraSIDs {
		add(SubjectIDName(x))
	}
	if s.upn != "" {
		add(UPNName(s.upn))
	}
	if s.permanent != nil {
		add(PermanentIdentifierName(s.permanent[0], s.permanent[1]))
	}
	if s.dnsAndIP {
		names = append(names, DNSName("aortagw.test"), IPName(net.ParseIP("127.0.0.1")))
	}
	var extra []pkix.Extension
	if !s.noSAN {
		san, err := MarshalSubjectAltName(names...)
		require.NoError(t, err)
		extra = append(extra, pkix.Extension{Id: oidSubjectAltName, Value: san})
	}
	subj := pkix.Name{CommonName: "J. Jansen", Country: []string{"NL"}, Organization: []string{"Huisartsenpraktijk Test"}}
	for _, sn := range s.serial {
		subj.ExtraNames = append(subj.ExtraNames, pkix.AttributeTypeAndValue{Type: oidSerialNumber, Value: sn})
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(4242), Subject: subj, NotBefore: time.Unix(1.75e9, 0), NotAfter: time.Unix(1.85e9, 0),
		ExtKeyUsage: s.eku, ExtraExtensions: extra,
	}
	if s.kuNonCrit {
		bits, err := asn1.Marshal(asn1.BitString{Bytes: []byte{reverse(byte(s.ku))}, BitLength: 8})
		require.NoError(t, err)
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidKeyUsage, Value: bits})
	} else {
		tmpl.KeyUsage = s.ku
	}
	for _, p := range s.policies {
		oid, err := x509.ParseOID(p)
		require.NoError(t, err)
		tmpl.Policies = append(tmpl.Policies, oid)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.issuer, &f.leaf.PublicKey, f.key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

func reverse(b byte) byte {
	var r byte
	for i := 0; i < 8; i++ {
		r = r<<1 | b&1
		b >>= 1
	}
	return r
}

var (
	euk5Auth = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageEmailProtection}
	ekuSign  = []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}
	ekuSrv   = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
)

func TestParse(t *testing.T) {
	zca := newFixture(t, "TEST UZI-register Zorgverlener CA G3")
	nca := newFixture(t, "TEST UZI-register Medewerker op naam CA G3")
	mca := newFixture(t, "TEST UZI-register Medewerker niet op naam CA G3")
	sca := newFixture(t, "TEST UZI-register Private Server CA G1")
	other := newFixture(t, "Some Other CA")

	type want struct {
		typ     CardType
		purpose KeyPurpose
		uzi     string
		ura     string
		role    string
		agb     string
		test    bool
		perm    string
	}
	tests := []struct {
		name    string
		ca      *fixture
		spec    leafSpec
		opts    ParseOptions
		want    *want
		wantErr error
	}{
		{name: "Z AUT production", ca: zca, spec: leafSpec{upn: "123456789@90000123"},
			want: &want{typ: CardZ, purpose: PurposeAuthentication, uzi: "123456789", ura: "90000123", role: "01.015", agb: "00000000"}},
		{name: "Z AUT under a non-UZI issuer name", ca: other, spec: leafSpec{},
			want: &want{typ: CardZ, purpose: PurposeAuthentication, uzi: "123456789", ura: "90000123", role: "01.015", agb: "00000000"}},
		{name: "Z HND test CA", ca: zca, spec: leafSpec{sid: OIDTestCAZorgverlener + "-1-123456789-Z-90000123-17.075-12345678",
			ku: x509.KeyUsageContentCommitment, eku: ekuSign, policies: []string{OIDPolicyZNNonRepudiation}},
			want: &want{typ: CardZ, purpose: PurposeNonRepudiation, uzi: "123456789", ura: "90000123", role: "17.075", agb: "12345678", test: true}},
		{name: "N VRT", ca: nca, spec: leafSpec{sid: OIDCAMedewerkerOpNaam + "-1-123456789-N-90000123-00.000-00000000",
			ku: x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment, eku: ekuSign, policies: []string{OIDPolicyZNEncryption}},
			want: &want{typ: CardN, purpose: PurposeEncryption, uzi: "123456789", ura: "90000123", role: "00.000", agb: "00000000"}},
		{name: "M AUT", ca: mca, spec: leafSpec{sid: OIDCAMedewerkerNietOpNaam + "-1-123456789-M-90000123-00.000-00000000", policies: []string{OIDPolicyMAuth}},
			want: &want{typ: CardM, purpose: PurposeAuthentication, uzi: "123456789", ura: "90000123", role: "00.000", agb: "00000000"}},
		{name: "S with permanentIdentifier", ca: sca, spec: leafSpec{sid: OIDTestCAServerAcceptance + "-1-123456789-S-90000380-00.000-00000000",
			ku: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, eku: ekuSrv, policies: []string{OIDPolicyServerPrivateG1},
			permanent: []string{"90000380", OIDURA}, dnsAndIP: true},
			want: &want{typ: CardS, purpose: PurposeServer, uzi: "123456789", ura: "90000380", role: "00.000", agb: "00000000", test: true, perm: "90000380"}},

		{name: "no SAN", ca: zca, spec: leafSpec{noSAN: true}, wantErr: ErrNotUZI},
		{name: "SAN without subject id", ca: sca, spec: leafSpec{sid: "", skipDefaults: true, dnsAndIP: true, ku: x509.KeyUsageDigitalSignature}, wantErr: ErrNotUZI},
		{name: "two subject ids", ca: zca, spec: leafSpec{extraSIDs: []string{"2.16.528.1.1003.1.3.5.5.2-1-123456789-Z-90000123-01.015-00000000"}}, wantErr: ErrMalformedSAN},
		{name: "subject id not IA5String", ca: zca, spec: leafSpec{rawSIDValue: mustMarshal(t, "2.16.528.1.1003.1.3.5.5.2-1-123456789-Z-90000123-01.015-00000000", "utf8")}, wantErr: ErrMalformedSAN},
		{name: "malformed subject id", ca: zca, spec: leafSpec{sid: "2.16.528.1.1003.1.3.5.5.2-1-12345678-Z-90000123-01.015-00000000"}, wantErr: ErrMalformedSAN},
		{name: "unknown OID CA", ca: zca, spec: leafSpec{sid: "2.16.528.1.1003.1.3.5.5.9-1-123456789-Z-90000123-01.015-00000000"}, wantErr: ErrUnknownCA},
		{name: "unlisted test arc OID", ca: zca, spec: leafSpec{sid: "2.16.528.1.1007.99.8-1-123456789-Z-90000123-01.015-00000000"}, wantErr: ErrUnknownCA},
		{name: "test CA refused in production", ca: zca, opts: ParseOptions{ProductionOnly: true},
			spec: leafSpec{sid: OIDTestCAZorgverlener + "-1-123456789-Z-90000123-01.015-00000000"}, wantErr: ErrTestCA},
		{name: "SAN letter N from Z CA", ca: zca, spec: leafSpec{sid: OIDCAZorgverlener + "-1-123456789-N-90000123-00.000-00000000"}, wantErr: ErrTypeMismatch},
		{name: "Z identifier issued by the N CA", ca: nca, spec: leafSpec{}, wantErr: ErrTypeMismatch},
		{name: "serialNumber differs", ca: zca, spec: leafSpec{serial: []string{"123456780"}}, wantErr: ErrSerialMismatch},
		{name: "serialNumber missing", ca: zca, spec: leafSpec{serial: []string{}}, wantErr: ErrSerialMismatch},
		{name: "serialNumber twice", ca: zca, spec: leafSpec{serial: []string{"123456789", "123456789"}}, wantErr: ErrSerialMismatch},
		{name: "N with a profession role", ca: nca, spec: leafSpec{sid: OIDCAMedewerkerOpNaam + "-1-123456789-N-90000123-01.015-00000000"}, wantErr: ErrRole},
		{name: "keyUsage not critical", ca: zca, spec: leafSpec{kuNonCrit: true}, wantErr: ErrKeyUsage},
		{name: "AUT with nonRepudiation", ca: zca, spec: leafSpec{ku: x509.KeyUsageContentCommitment, eku: ekuSign}, wantErr: ErrKeyUsage},
		{name: "HND with digitalSignature", ca: zca, spec: leafSpec{ku: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment, policies: []string{OIDPolicyZNNonRepudiation}}, wantErr: ErrKeyUsage},
		{name: "HND policy on digitalSignature key", ca: zca, spec: leafSpec{policies: []string{OIDPolicyZNNonRepudiation}}, wantErr: ErrPolicy},
		{name: "M non-repudiation", ca: mca, spec: leafSpec{sid: OIDCAMedewerkerNietOpNaam + "-1-123456789-M-90000123-00.000-00000000",
			ku: x509.KeyUsageContentCommitment, eku: ekuSign, policies: []string{OIDPolicyZNNonRepudiation}}, wantErr: ErrKeyUsage},
		{name: "AUT without clientAuth", ca: zca, spec: leafSpec{eku: ekuSign}, wantErr: ErrKeyUsage},
		{name: "HND with clientAuth", ca: zca, spec: leafSpec{ku: x509.KeyUsageContentCommitment, eku: euk5Auth, policies: []string{OIDPolicyZNNonRepudiation}}, wantErr: ErrKeyUsage},
		{name: "server key usage on a card", ca: zca, spec: leafSpec{ku: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}, wantErr: ErrKeyUsage},
		{name: "server without serverAuth", ca: sca, spec: leafSpec{sid: OIDCAServer + "-1-123456789-S-90000380-00.000-00000000",
			ku: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, eku: euk5Auth, policies: []string{OIDPolicyServer}}, wantErr: ErrKeyUsage},
		{name: "production without UZI policy", ca: zca, spec: leafSpec{policies: []string{}}, wantErr: ErrPolicy},
		{name: "M policy on Z card", ca: zca, spec: leafSpec{policies: []string{OIDPolicyMAuth}}, wantErr: ErrPolicy},
		{name: "UPN mismatch", ca: zca, spec: leafSpec{upn: "123456789@90000124"}, wantErr: ErrUPNMismatch},
		{name: "permanentIdentifier wrong assigner", ca: sca, spec: leafSpec{sid: OIDCAServer + "-1-123456789-S-90000380-00.000-00000000",
			ku: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, eku: ekuSrv, policies: []string{OIDPolicyServer},
			permanent: []string{"90000380", OIDUZIPerson}}, wantErr: ErrPermanentIdentifier},
		{name: "permanentIdentifier other URA", ca: sca, spec: leafSpec{sid: OIDCAServer + "-1-123456789-S-90000380-00.000-00000000",
			ku: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, eku: ekuSrv, policies: []string{OIDPolicyServer},
			permanent: []string{"90000381", OIDURA}}, wantErr: ErrPermanentIdentifier},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.ca.cert(t, tt.spec)
			id, err := ParseWithOptions(c, tt.opts)
			if tt.wantErr != nil {
				require.Error(t, err)
				assert.ErrorIs(t, err, tt.wantErr)
				assert.Nil(t, id)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want.typ, id.CardType)
			assert.Equal(t, tt.want.purpose, id.Purpose)
			assert.Equal(t, tt.want.uzi, id.UZI)
			assert.Equal(t, tt.want.ura, id.URA)
			assert.Equal(t, tt.want.role, id.Role)
			assert.Equal(t, tt.want.agb, id.AGB)
			assert.Equal(t, tt.want.test, id.Test)
			assert.Equal(t, tt.want.perm, id.PermanentURA)
			assert.Equal(t, "1", id.Version)
			assert.Equal(t, 0, id.Serial.Cmp(c.SerialNumber))
			assert.Equal(t, c.NotAfter, id.NotAfter)
			assert.Equal(t, tt.want.uzi+":"+tt.want.role, id.NameID())
			ext, ok := findSAN(t, c)
			require.True(t, ok)
			assert.Contains(t, string(ext), id.SubjectID().String())
		})
	}
}

func findSAN(t *testing.T, c *x509.Certificate) ([]byte, bool) {
	t.Helper()
	for _, e := range c.Extensions {
		if e.Id.Equal(oidSubjectAltName) {
			return e.Value, true
		}
	}
	return nil, false
}

func mustMarshal(t *testing.T, s, params string) []byte {
	t.Helper()
	b, err := asn1.MarshalWithParams(s, params)
	require.NoError(t, err)
	return b
}

func TestServerURA(t *testing.T) {
	sca := newFixture(t, "TEST UZI-register Private Server CA G1")
	zca := newFixture(t, "TEST UZI-register Zorgverlener CA G3")
	base := leafSpec{sid: OIDCAServer + "-1-123456789-S-90000380-00.000-00000000",
		ku: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, eku: ekuSrv, policies: []string{OIDPolicyServer}}
	withPerm := base
	withPerm.permanent = []string{"90000380", OIDURA}

	tests := []struct {
		name    string
		cert    *x509.Certificate
		require bool
		want    string
		wantErr error
	}{
		{name: "with permanentIdentifier", cert: sca.cert(t, withPerm), require: true, want: "90000380"},
		{name: "old cert without it, not required", cert: sca.cert(t, base), want: "90000380"},
		{name: "old cert without it, required", cert: sca.cert(t, base), require: true, wantErr: ErrPermanentIdentifier},
		{name: "card is not a server", cert: zca.cert(t, leafSpec{}), wantErr: ErrTypeMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ura, err := ServerURA(tt.cert, ParseOptions{}, tt.require)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, ura)
		})
	}
	ura, err := PermanentIdentifierURA(sca.cert(t, withPerm))
	require.NoError(t, err)
	assert.Equal(t, "90000380", ura)
	_, err = PermanentIdentifierURA(sca.cert(t, base))
	assert.ErrorIs(t, err, ErrPermanentIdentifier)
}

func TestParseSAN(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr error
	}{
		{name: "Z example from the CPS", in: "2.16.528.1.1003.1.3.5.5.2-1-123456789-Z-90000123-01.015-00000000"},
		{name: "Z without specialism", in: "2.16.528.1.1003.1.3.5.5.2-1-123456789-Z-90000123-30.000-00000000"},
		{name: "S acceptance", in: "2.16.528.1.1007.99.2110-1-900030787-S-90000380-00.000-11223344"},
		{name: "empty", in: "", wantErr: ErrMalformedSAN},
		{name: "six fields", in: "2.16.528.1.1003.1.3.5.5.2-1-123456789-Z-90000123-01.015", wantErr: ErrMalformedSAN},
		{name: "eight fields", in: "2.16.528.1.1003.1.3.5.5.2-1-123456789-Z-90000123-01.015-00000000-1", wantErr: ErrMalformedSAN},
		{name: "OID with leading zero", in: "2.16.0528.1.1003.1.3.5.5.2-1-123456789-Z-90000123-01.015-00000000", wantErr: ErrMalformedSAN},
		{name: "OID first arc 3", in: "3.16-1-123456789-Z-90000123-01.015-00000000", wantErr: ErrMalformedSAN},
		{name: "version two digits", in: "2.16.528.1.1003.1.3.5.5.2-10-123456789-Z-90000123-01.015-00000000", wantErr: ErrMalformedSAN},
		{name: "UZI 10 digits", in: "2.16.528.1.1003.1.3.5.5.2-1-1234567890-Z-90000123-01.015-00000000", wantErr: ErrMalformedSAN},
		{name: "UZI with letter", in: "2.16.528.1.1003.1.3.5.5.2-1-12345678a-Z-90000123-01.015-00000000", wantErr: ErrMalformedSAN},
		{name: "lowercase type", in: "2.16.528.1.1003.1.3.5.5.2-1-123456789-z-90000123-01.015-00000000", wantErr: ErrMalformedSAN},
		{name: "type X", in: "2.16.528.1.1003.1.3.5.5.2-1-123456789-X-90000123-01.015-00000000", wantErr: ErrMalformedSAN},
		{name: "URA 7 digits", in: "2.16.528.1.1003.1.3.5.5.2-1-123456789-Z-9000012-01.015-00000000", wantErr: ErrMalformedSAN},
		{name: "AGB 9 digits", in: "2.16.528.1.1003.1.3.5.5.2-1-123456789-Z-90000123-01.015-000000000", wantErr: ErrMalformedSAN},
		{name: "role without dot", in: "2.16.528.1.1003.1.3.5.5.2-1-123456789-Z-90000123-010150-00000000", wantErr: ErrRole},
		{name: "role for M", in: "2.16.528.1.1003.1.3.5.5.4-1-123456789-M-90000123-01.015-00000000", wantErr: ErrRole},
		{name: "space padded", in: " 2.16.528.1.1003.1.3.5.5.2-1-123456789-Z-90000123-01.015-00000000", wantErr: ErrMalformedSAN},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sid, err := ParseSAN(tt.in)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.in, sid.String())
		})
	}
}

func TestBSN(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{name: "valid 111222333", in: "111222333", ok: true},
		{name: "valid 123456782", in: "123456782", ok: true},
		{name: "valid 999990019", in: "999990019", ok: true},
		{name: "eleven-test fails", in: "123456789"},
		{name: "all zero", in: "000000000"},
		{name: "eight digits", in: "11122233"},
		{name: "ten digits", in: "1112223330"},
		{name: "letters", in: "11122233a"},
		{name: "empty", in: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.ok, ValidBSN(tt.in))
			got, err := ParseBSN(tt.in)
			if tt.ok {
				require.NoError(t, err)
				assert.Equal(t, tt.in, got)
			} else {
				assert.ErrorIs(t, err, ErrInvalidBSN)
				if tt.in != "" {
					assert.NotContains(t, err.Error(), tt.in)
				}
			}
		})
	}
}

func TestHelpers(t *testing.T) {
	assert.Equal(t, "Z", CardZ.String())
	assert.Equal(t, "zorgverlenerpas", CardZ.Description())
	for _, p := range []string{"aut", "HND", "vrt", "server"} {
		_, err := ParsePurpose(p)
		assert.NoError(t, err, p)
	}
	_, err := ParsePurpose("bogus")
	assert.ErrorIs(t, err, ErrKeyUsage)
	assert.Equal(t, OIDPolicyZNNonRepudiation, PolicyFor(CardN, PurposeNonRepudiation))
	assert.Empty(t, PolicyFor(CardM, PurposeNonRepudiation))
	for oid, typ := range TestCAOIDs() {
		assert.Equal(t, oid, CAOIDFor(typ, true))
		assert.True(t, len(oid) > len(OIDTestArc) && oid[:len(OIDTestArc)+1] == OIDTestArc+".")
	}
	assert.Equal(t, OIDCAMedewerkerNietOpNaam, CAOIDFor(CardM, false))
	assert.Panics(t, func() { MustOID("2..1") })
	assert.True(t, errors.Is(func() error { _, e := Parse(nil); return e }(), ErrNotUZI))
	assert.True(t, ValidRole(CardZ, "00.000"))
	assert.False(t, ValidRole(CardS, "01.015"))
}

func BenchmarkParse(b *testing.B) {
	fx := newFixture(b, "TEST UZI-register Zorgverlener CA G3")
	c := fx.cert(b, leafSpec{upn: "123456789@90000123"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(c); err != nil {
			b.Fatal(err)
		}
	}
}
