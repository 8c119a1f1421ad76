package tokens

import (
	"bytes"
	"context"
	"crypto/x509"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

func sampleEnrolment() Enrolment {
	return Enrolment{URA: "90000382", BSN: "999911120"}
}

func sampleMandate() Mandate {
	return Mandate{URA: "90000382", Mandated: []string{"000000012", AppIDPrefix + "90000326"},
		ApplicationID: AppIDPrefix + "90000326", Context: "https://ziekenhuis.example/autorisatieregels/medicatiecontext/v2",
		NotOnOrAfter: t0.Add(180 * 24 * time.Hour)}
}

func sampleTransaction() Transaction {
	return Transaction{URA: "90000382", BSN: "999911120", InteractionID: "GQZG_IN000001NL",
		MessageIDRoot: "2.16.528.1.1007.3.3.90326.1", MessageIDExt: "90326-2",
		ApplicationID: AppIDPrefix + "90000326", Context: "https://ziekenhuis.example/autorisatieregels/medicatiecontext/v2",
		ContextCodeSystem: "2.16.840.1.113883.2.4.3.111.15.1", ContextCode: "KZDI"}
}

type signedCase struct {
	name string
	typ  Type
	sign func(t *testing.T, p *tpki) *Signed
}

func signedCases() []signedCase {
	return []signedCase{
		{"enrolment", TypeEnrolment, func(t *testing.T, p *tpki) *Signed {
			s, err := newTestSigner(t, p.zAut).SignEnrolment(sampleEnrolment())
			require.NoError(t, err)
			return s
		}},
		{"mandate", TypeMandate, func(t *testing.T, p *tpki) *Signed {
			s, err := newTestSigner(t, p.zHnd).SignMandate(sampleMandate())
			require.NoError(t, err)
			return s
		}},
		{"transaction", TypeTransaction, func(t *testing.T, p *tpki) *Signed {
			s, err := newTestSigner(t, p.zAut).SignTransaction(sampleTransaction())
			require.NoError(t, err)
			return s
		}},
		{"transaction-server", TypeTransaction, func(t *testing.T, p *tpki) *Signed {
			s, err := newTestSigner(t, p.server).SignTransaction(sampleTransaction())
			require.NoError(t, err)
			return s
		}},
		{"transaction-embedded-cert", TypeTransaction, func(t *testing.T, p *tpki) *Signed {
			s, err := newTestSigner(t, p.zAut, WithEmbeddedCertificate(true)).SignTransaction(sampleTransaction())
			require.NoError(t, err)
			return s
		}},
	}
}

func TestGolden(t *testing.T) {
	p := testPKI(t)
	for _, tc := range signedCases() {
		if tc.name == "transaction-embedded-cert" {
			continue // the test certificate is regenerated per run
		}
		t.Run(tc.name, func(t *testing.T) {
			s := tc.sign(t, p)
			path := filepath.Join("testdata", tc.name+".golden.xml")
			if *update {
				require.NoError(t, os.WriteFile(path, s.Bytes(), 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run go test ./tokens -run TestGolden -update")
			assert.Equal(t, string(want), string(s.Bytes()))
			assert.Equal(t, tc.typ, s.Type())
		})
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	p := testPKI(t)
	for _, tc := range signedCases() {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.sign(t, p)
			v := newTestValidator(t)
			got, err := v.Verify(context.Background(), s.Bytes(), tc.typ)
			require.NoError(t, err)
			assert.Equal(t, s.ID(), got.ID)
			assert.Equal(t, s.Issuer(), got.Issuer)
			want := "123456782"
			if tc.name == "transaction-server" {
				want = "000012345"
			}
			assert.Equal(t, want, got.Signer.UZI)
		})
	}
}

// TestCanonicalFormMatchesGoxmldsig: the token bytes are in exclusive-canonical
// form, our canonicaliser agrees with goxmldsig's on them, and goxmldsig's own
// recipe (its canonicaliser, same key) yields byte-identical output.
func TestCanonicalFormMatchesGoxmldsig(t *testing.T) {
	p := testPKI(t)
	for _, tc := range signedCases() {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.sign(t, p)
			doc := etree.NewDocument()
			require.NoError(t, doc.ReadFromBytes(s.Bytes()))
			ours, err := canonicalizer{}.Canonicalize(doc.Root())
			require.NoError(t, err)
			theirs, err := dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("").Canonicalize(doc.Root().Copy())
			require.NoError(t, err)
			assert.Equal(t, string(theirs), string(ours))
			assert.Equal(t, string(s.Bytes()), string(ours), "emitted bytes are canonical")
		})
	}
	t.Run("goxmldsig recipe gives identical bytes", func(t *testing.T) {
		signer := newTestSigner(t, p.zAut)
		tr := sampleTransaction()
		tr.ID, tr.IssueInstant, tr.NotBefore, tr.NotOnOrAfter, tr.NameID = "trx_x", t0, t0.Add(-time.Minute), t0.Add(5*time.Minute), "123456782:01.015"
		tr.Audiences = []string{AudienceZIM}
		ours, err := signer.SignTransaction(tr)
		require.NoError(t, err)

		el := buildTransaction(&tr, signer.issuerName, signer.serial)
		ctx, err := dsig.NewSigningContext(p.zAut.key, nil)
		require.NoError(t, err)
		ctx.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
		require.NoError(t, ctx.SetSignatureMethod(dsig.RSASHA256SignatureMethod))
		sig, err := ctx.ConstructSignature(el, true)
		require.NoError(t, err)
		addIssuerSerial(sig, signer.issuerName, signer.serial)
		el.InsertChildAt(1, sig)
		doc := etree.NewDocument()
		doc.SetRoot(el)
		doc.WriteSettings = etree.WriteSettings{CanonicalEndTags: true, CanonicalText: true, CanonicalAttrVal: true}
		var b bytes.Buffer
		_, err = doc.WriteTo(&b)
		require.NoError(t, err)
		assert.Equal(t, b.String(), string(ours.Bytes()))
	})
}

func TestSignerRules(t *testing.T) {
	p := testPKI(t)
	tests := []struct {
		name string
		run  func() error
		want error
	}{
		{"mandate with auth key", func() error { _, err := newTestSigner(t, p.zAut).SignMandate(sampleMandate()); return err }, ErrSignerKey},
		{"enrolment with nonrep key", func() error { _, err := newTestSigner(t, p.zHnd).SignEnrolment(sampleEnrolment()); return err }, ErrSignerKey},
		{"enrolment with server cert", func() error { _, err := newTestSigner(t, p.server).SignEnrolment(sampleEnrolment()); return err }, ErrSignerKey},
		{"transaction with encryption key", func() error { _, err := newTestSigner(t, p.zEnc).SignTransaction(sampleTransaction()); return err }, ErrSignerKey},
		{"transaction lifetime above 90 min", func() error {
			tr := sampleTransaction()
			tr.NotOnOrAfter = t0.Add(90 * time.Minute)
			_, err := newTestSigner(t, p.zAut).SignTransaction(tr)
			return err
		}, ErrValidityRule},
		{"transaction lifetime option above 90 min", func() error {
			_, err := NewSigner(p.zAut.key, []*x509.Certificate{p.zAut.cert}, WithTransactionLifetime(90*time.Minute))
			return err
		}, ErrConfig},
		{"transaction nameid of someone else", func() error {
			tr := sampleTransaction()
			tr.NameID = "000000012:30.000"
			_, err := newTestSigner(t, p.zAut).SignTransaction(tr)
			return err
		}, ErrInvalidClaims},
		{"server transaction with other ura", func() error {
			tr := sampleTransaction()
			tr.URA = "90000999"
			_, err := newTestSigner(t, p.server).SignTransaction(tr)
			return err
		}, ErrInvalidClaims},
		{"mandate past card expiry", func() error {
			m := sampleMandate()
			m.NotOnOrAfter = p.zHnd.cert.NotAfter.Add(time.Hour)
			_, err := newTestSigner(t, p.zHnd).SignMandate(m)
			return err
		}, ErrValidityRule},
		{"mandate without end", func() error {
			m := sampleMandate()
			m.NotOnOrAfter = time.Time{}
			_, err := newTestSigner(t, p.zHnd).SignMandate(m)
			return err
		}, ErrValidityRule},
		{"enrolment longer than 548 days", func() error {
			e := sampleEnrolment()
			e.NotOnOrAfter = t0.Add(549 * 24 * time.Hour)
			_, err := newTestSigner(t, p.zAut).SignEnrolment(e)
			return err
		}, ErrValidityRule},
		{"enrolment before cert notbefore", func() error {
			e := sampleEnrolment()
			e.NotBefore = p.zAut.cert.NotBefore.Add(-time.Hour)
			_, err := newTestSigner(t, p.zAut).SignEnrolment(e)
			return err
		}, ErrValidityRule},
		{"enrolment bad bsn", func() error {
			e := sampleEnrolment()
			e.BSN = "123456789"
			_, err := newTestSigner(t, p.zAut).SignEnrolment(e)
			return err
		}, ErrInvalidClaims},
		{"expired certificate", func() error {
			_, err := newTestSigner(t, p.expiredAut).SignTransaction(sampleTransaction())
			return err
		}, ErrSignerKey},
		{"weak key", func() error {
			_, err := NewSigner(p.weakAut.key, []*x509.Certificate{p.weakAut.cert})
			return err
		}, ErrSignerKey},
		{"key does not match certificate", func() error {
			_, err := NewSigner(p.evilAut.key, []*x509.Certificate{p.zAut.cert})
			return err
		}, ErrSignerKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.ErrorIs(t, tc.run(), tc.want)
		})
	}
}

func TestMandateUntilCardExpiry(t *testing.T) {
	p := testPKI(t)
	m := sampleMandate()
	m.NotOnOrAfter, m.UntilCardExpiry = time.Time{}, true
	s, err := newTestSigner(t, p.zHnd).SignMandate(m)
	require.NoError(t, err)
	assert.Equal(t, p.zHnd.cert.NotAfter.UTC().Truncate(time.Millisecond), s.NotOnOrAfter())
}

func TestRenderIssuerName(t *testing.T) {
	p := testPKI(t)
	got, err := RenderIssuerName(p.zAut.cert.RawIssuer)
	require.NoError(t, err)
	// Go puts ExtraNames last in the DER, so RFC 4514 order shows it first.
	assert.Equal(t, "2.5.4.97=#0c0e4e54524e4c2d3530303030353335, CN=UZI-register Zorgverlener CA G3, O=CIBG, C=NL", got)
	assert.True(t, issuerNameMatches(got, p.zAut.cert.RawIssuer))
	assert.True(t, issuerNameMatches("OID.2.5.4.97=NTRNL-50000535,CN=UZI-register Zorgverlener CA G3,O=CIBG,C=NL", p.zAut.cert.RawIssuer))
	assert.True(t, issuerNameMatches("2.5.4.97=#0C0E4E54524E4C2D3530303030353335, CN=UZI-register Zorgverlener CA G3, O=CIBG, C=NL", p.zAut.cert.RawIssuer))
	assert.False(t, issuerNameMatches("CN=UZI-register Zorgverlener CA G3, O=CIBG, C=NL", p.zAut.cert.RawIssuer))
	assert.False(t, issuerNameMatches(got, p.sCA.cert.RawSubject))
}
