package tokens

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// forge signs an arbitrary transaction with the given certificate and key,
// bypassing every signing rule (what an attacker or a buggy signer could do).
func forge(t testing.TB, c *tcert, tr Transaction, embed bool) []byte {
	t.Helper()
	name, err := RenderIssuerName(c.cert.RawIssuer)
	require.NoError(t, err)
	s := &Signer{key: c.key, leaf: c.cert, issuerName: name, serial: c.cert.SerialNumber.String(), embedCert: embed}
	if tr.ID == "" {
		tr.ID = "trx_forged"
	}
	if tr.IssueInstant.IsZero() {
		tr.IssueInstant, tr.NotBefore, tr.NotOnOrAfter = t0, t0.Add(-time.Minute), t0.Add(5*time.Minute)
	}
	if len(tr.Audiences) == 0 {
		tr.Audiences = []string{AudienceZIM}
	}
	signed, err := s.sign(context.Background(), buildTransaction(&tr, name, s.serial), TypeTransaction, tr.ID, URAPrefix+tr.URA, tr.NotOnOrAfter)
	require.NoError(t, err)
	return signed.Bytes()
}

func caregiverTrx() Transaction {
	tr := sampleTransaction()
	tr.NameID = "123456782:01.015"
	return tr
}

func mutate(t testing.TB, b []byte, old, new string) []byte {
	t.Helper()
	s := string(b)
	require.Contains(t, s, old, "mutation anchor missing")
	return []byte(strings.Replace(s, old, new, 1))
}

func TestHostileBareAssertion(t *testing.T) {
	p := testPKI(t)
	good := forge(t, p.zAut, caregiverTrx(), false)
	goodEmb := forge(t, p.zAut, caregiverTrx(), true)
	gs := string(good)
	sigStart := strings.Index(gs, "<ds:Signature")
	sigEnd := strings.Index(gs, "</ds:Signature>") + len("</ds:Signature>")
	sig := gs[sigStart:sigEnd]
	unsigned := gs[:sigStart] + gs[sigEnd:]
	evil := strings.Replace(unsigned, "999911120", "999912446", 1) // another patient
	evilID := strings.Replace(evil, `ID="trx_forged"`, `ID="trx_evil"`, 1)
	signedInfo := sig[strings.Index(sig, "<ds:SignedInfo>"):strings.Index(sig, "</ds:SignedInfo>")]
	_ = signedInfo

	tests := []struct {
		name string
		in   []byte
		want error
		mod  func(*ValidatorConfig)
	}{
		{"valid issuerserial only", good, nil, nil},
		{"valid embedded certificate", goodEmb, nil, nil},
		{"content modified", []byte(strings.Replace(gs, "999911120", "999912446", 1)), ErrSignatureInvalid, nil},
		{"id modified", []byte(strings.Replace(gs, `ID="trx_forged"`, `ID="trx_other"`, 1)), ErrReference, nil},
		// XSW adapted to a bare assertion.
		{"xsw1 clone inside signature", []byte(strings.Replace(evilID, "</saml:Issuer>", "</saml:Issuer>"+strings.Replace(sig, "</ds:Signature>", unsigned+"</ds:Signature>", 1), 1)), ErrTokenCount, nil},
		{"xsw2 clone before signature", []byte(strings.Replace(evilID, "</saml:Issuer>", "</saml:Issuer>"+unsigned+sig, 1)), ErrTokenCount, nil},
		{"xsw5 copy appended", []byte(strings.Replace(strings.Replace(evilID, "</saml:Issuer>", "</saml:Issuer>"+sig, 1), "</saml:Assertion>", unsigned+"</saml:Assertion>", 1)), ErrTokenCount, nil},
		{"xsw6 copy inside signature keyinfo", []byte(strings.Replace(strings.Replace(evilID, "</saml:Issuer>", "</saml:Issuer>"+sig, 1), "</ds:X509Data></ds:KeyInfo>", "</ds:X509Data>"+unsigned+"</ds:KeyInfo>", 1)), ErrTokenCount, nil},
		{"xsw8 original in ds:Object", []byte(strings.Replace(strings.Replace(evil, "</saml:Issuer>", "</saml:Issuer>"+sig, 1), "</ds:KeyInfo>", "</ds:KeyInfo><ds:Object>"+unsigned+"</ds:Object>", 1)), ErrDuplicateID, nil},
		{"second root after the valid one", append(append([]byte{}, good...), []byte(evilID)...), ErrMalformed, nil},
		{"ds:Object", mutate(t, good, "</ds:KeyInfo>", "</ds:KeyInfo><ds:Object>x</ds:Object>"), ErrSignatureProfile, nil},
		{"signature moved to the end", []byte(strings.Replace(unsigned, "</saml:Assertion>", sig+"</saml:Assertion>", 1)), ErrSignaturePlacement, nil},
		{"signature duplicated", []byte(strings.Replace(gs, "</saml:Assertion>", sig+"</saml:Assertion>", 1)), ErrSignaturePlacement, nil},
		{"signature removed", []byte(unsigned), ErrNoSignature, nil},
		// Comments and CDATA: accepted, but the full value is what counts.
		{"comment in nameid", mutate(t, good, ">123456782:01.015<", ">123456782<!-- -->:01.015<"), nil, nil},
		{"comment in bsn", mutate(t, good, ">999911120<", ">9999<!--x-->11120<"), nil, nil},
		{"cdata in bsn", mutate(t, good, ">999911120<", "><![CDATA[999911120]]><"), nil, nil},
		{"comment truncating nameid to another person", mutate(t, good, ">123456782:01.015<", ">000000012:30.000<!---->123456782:01.015<"), ErrSignatureInvalid, nil},
		// Parser-level attacks.
		{"doctype with entity", append([]byte(`<!DOCTYPE x [<!ENTITY e "999911120">]>`), good...), ErrMalformed, nil},
		{"processing instruction", mutate(t, good, "<saml:Subject>", "<?evil x?><saml:Subject>"), ErrMalformed, nil},
		{"utf-16 declaration", append([]byte(`<?xml version="1.0" encoding="UTF-16"?>`), good...), ErrMalformed, nil},
		{"duplicate attribute", mutate(t, good, `Version="2.0"`, `Version="2.0" Version="1.0"`), ErrMalformed, nil},
		{"duplicate attribute via prefixes", mutate(t, good, `Version="2.0"`, `Version="2.0" xmlns:a="u" xmlns:b="u" a:x="1" b:x="2"`), ErrMalformed, nil},
		{"undeclared prefix", mutate(t, good, "<saml:Subject>", "<evil:Subject/><saml:Subject>"), ErrMalformed, nil},
		{"duplicate id", mutate(t, good, "<saml:Subject>", `<saml:Subject ID="trx_forged">`), ErrDuplicateID, nil},
		{"deep nesting", mutate(t, good, "<saml:Subject>", strings.Repeat("<a>", 40)+strings.Repeat("</a>", 40)+"<saml:Subject>"), ErrMalformed, nil},
		{"too large", mutate(t, good, "<saml:Subject>", "<!--"+strings.Repeat("x", 70<<10)+"--><saml:Subject>"), ErrMalformed, nil},
		{"not an assertion", []byte(`<saml:Response xmlns:saml="` + NSSAML + `"/>`), ErrTokenCount, nil},
		// Signature profile.
		{"xpath transform added", mutate(t, good, `<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"></ds:Transform>`, `<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"></ds:Transform><ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"><ds:XPath>1</ds:XPath></ds:Transform>`), ErrTransforms, nil},
		{"xslt transform instead of c14n", mutate(t, good, `<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"></ds:Transform>`, `<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"></ds:Transform>`), ErrTransforms, nil},
		{"enveloped transform missing", mutate(t, good, `<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"></ds:Transform>`, ``), ErrTransforms, nil},
		{"inclusive namespaces prefix list", mutate(t, good, `<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"></ds:Transform>`, `<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"><ec:InclusiveNamespaces xmlns:ec="http://www.w3.org/2001/10/xml-exc-c14n#" PrefixList="saml"></ec:InclusiveNamespaces></ds:Transform>`), ErrTransforms, nil},
		{"c14n with comments", mutate(t, good, `<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#">`, `<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#WithComments">`), ErrAlgorithm, nil},
		{"rsa-sha1", mutate(t, good, AlgRSASHA256, "http://www.w3.org/2000/09/xmldsig#rsa-sha1"), ErrAlgorithm, nil},
		{"hmac-sha256", mutate(t, good, AlgRSASHA256, "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"), ErrAlgorithm, nil},
		{"sha1 digest", mutate(t, good, `<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256">`, `<ds:DigestMethod Algorithm="http://www.w3.org/2000/09/xmldsig#sha1">`), ErrAlgorithm, nil},
		{"two references", mutate(t, good, "</ds:Reference>", "</ds:Reference><ds:Reference URI=\"#x\"></ds:Reference>"), ErrReference, nil},
		{"empty reference uri", mutate(t, good, `URI="#trx_forged"`, `URI=""`), ErrReference, nil},
		// Key substitution.
		{"no keyinfo", []byte(strings.Replace(gs, gs[strings.Index(gs, "<ds:KeyInfo>"):strings.Index(gs, "</ds:KeyInfo>")+len("</ds:KeyInfo>")], "", 1)), ErrKeyInfo, nil},
		{"rsakeyvalue", mutate(t, good, "<ds:KeyInfo><ds:X509Data>", "<ds:KeyInfo><ds:KeyValue><ds:RSAKeyValue><ds:Modulus>AQAB</ds:Modulus><ds:Exponent>AQAB</ds:Exponent></ds:RSAKeyValue></ds:KeyValue><ds:X509Data>"), ErrKeyInfo, nil},
		{"issuerserial of another cert", mutate(t, goodEmb, "<ds:X509SerialNumber>4242424242</ds:X509SerialNumber></ds:X509IssuerSerial><ds:X509Certificate>", "<ds:X509SerialNumber>4242424243</ds:X509SerialNumber></ds:X509IssuerSerial><ds:X509Certificate>"), ErrKeyInfo, nil},
		{"look-alike chain embedded", forge(t, p.evilAut, caregiverTrx(), true), ErrUntrusted, nil},
		{"look-alike key with real issuerserial", forge(t, &tcert{cert: p.zAut.cert, key: p.evilAut.key}, caregiverTrx(), false), ErrSignatureInvalid, nil},
		{"real cert embedded first, signed by another key", embedFirst(t, forge(t, p.evilAut, caregiverTrx(), true), p.zAut.cert), ErrSignatureInvalid, nil},
		{"look-alike issuerserial resolves to the real certificate", forge(t, p.evilAut, caregiverTrx(), false), ErrSignatureInvalid, nil},
		{"random embedded certificate (not uzi)", forge(t, p.evilRoot, caregiverTrx(), true), ErrNotUZI, nil},
		{"expired certificate", forge(t, p.expiredAut, caregiverTrx(), true), ErrUntrusted, nil},
		{"not yet valid certificate", forge(t, p.futureAut, caregiverTrx(), true), ErrUntrusted, nil},
		{"revoked certificate", forge(t, p.revokedAut, caregiverTrx(), true), ErrRevoked, nil},
		{"weak key", forge(t, p.weakAut, caregiverTrx(), true), ErrWeakKey, nil},
		{"non-repudiation key signs transaction", forge(t, p.zHnd, caregiverTrx(), true), ErrKeyUsage, nil},
		{"encryption key signs transaction", forge(t, p.zEnc, caregiverTrx(), true), ErrKeyUsage, nil},
		{"issuerserial not in the directory", mutate(t, good, "<ds:X509SerialNumber>4242424242<", "<ds:X509SerialNumber>77<"), ErrCertUnknown, nil},
		{"stale crl", good, ErrCRLStale, func(c *ValidatorConfig) { c.CRLs = []*x509.RevocationList{p.staleCRLZ, p.crlS} }},
		{"no crl for issuer", good, ErrCRLMissing, func(c *ValidatorConfig) { c.CRLs = []*x509.RevocationList{p.crlS} }},
		{"no directory for issuerserial", good, ErrCertUnknown, func(c *ValidatorConfig) { c.Directory = nil }},
		// SAML semantics.
		{"nameid of someone else", forge(t, p.zAut, func() Transaction { tr := caregiverTrx(); tr.NameID = "000000012:30.000"; return tr }(), false), ErrNameID, nil},
		{"issuer ura not the signer's", forge(t, p.zAut, func() Transaction { tr := caregiverTrx(); tr.URA = "90000999"; return tr }(), false), ErrIssuer, nil},
		{"legacy issuer accepted", []byte(resign(t, p.zAut, strings.Replace(unsigned, URAPrefix+"90000382", URALegacyPrefix+"90000382", 1))), nil, nil},
		{"legacy issuer refused when configured", []byte(resign(t, p.zAut, strings.Replace(unsigned, URAPrefix+"90000382", URALegacyPrefix+"90000382", 1))), ErrIssuer, func(c *ValidatorConfig) { c.RejectLegacyIssuer = true }},
		{"holder-of-key serial not the signer's", []byte(resign(t, p.zAut, strings.Replace(unsigned, "<X509SerialNumber>4242424242<", "<X509SerialNumber>4242424243<", 1))), ErrHolderOfKey, nil},
		{"multi-valued attribute", []byte(resign(t, p.zAut, strings.Replace(unsigned, "<saml:AttributeValue>999911120</saml:AttributeValue>", "<saml:AttributeValue>999911120</saml:AttributeValue><saml:AttributeValue>999912446</saml:AttributeValue>", 1))), ErrAttribute, nil},
		{"repeated attribute", []byte(resign(t, p.zAut, strings.Replace(unsigned, "</saml:AttributeStatement>", `<saml:Attribute Name="burgerServiceNummer"><saml:AttributeValue>999912446</saml:AttributeValue></saml:Attribute></saml:AttributeStatement>`, 1))), ErrAttribute, nil},
		{"version 1.1", []byte(resign(t, p.zAut, strings.Replace(unsigned, `Version="2.0"`, `Version="1.1"`, 1))), ErrVersion, nil},
		{"advice element", []byte(resign(t, p.zAut, strings.Replace(unsigned, "<saml:Subject>", "<saml:Advice></saml:Advice><saml:Subject>", 1))), ErrStructure, nil},
		{"expired", good, ErrExpired, func(c *ValidatorConfig) { c.Now = fixedClock(t0.Add(5*time.Minute + 121*time.Second)) }},
		{"within skew after expiry", good, nil, func(c *ValidatorConfig) { c.Now = fixedClock(t0.Add(5*time.Minute + 119*time.Second)) }},
		{"not yet valid", forge(t, p.zAut, func() Transaction {
			tr := caregiverTrx()
			tr.IssueInstant, tr.NotBefore, tr.NotOnOrAfter = t0, t0.Add(10*time.Minute), t0.Add(20*time.Minute)
			return tr
		}(), false), ErrNotYetValid, nil},
		{"issueinstant in the future", forge(t, p.zAut, func() Transaction {
			tr := caregiverTrx()
			tr.IssueInstant, tr.NotBefore, tr.NotOnOrAfter = t0.Add(10*time.Minute), t0.Add(-time.Minute), t0.Add(20*time.Minute)
			return tr
		}(), false), ErrIssueInstant, nil},
		{"lifetime above 90 minutes", forge(t, p.zAut, func() Transaction {
			tr := caregiverTrx()
			tr.IssueInstant, tr.NotBefore, tr.NotOnOrAfter = t0, t0.Add(-time.Minute), t0.Add(90*time.Minute)
			return tr
		}(), false), ErrLifetime, nil},
		{"audience not ours", good, ErrAudience, func(c *ValidatorConfig) { c.Audience = "urn:other" }},
		{"wrong type requested", good, ErrWrongType, func(c *ValidatorConfig) {}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestValidator(t, func(c *ValidatorConfig) {
				if tc.mod != nil {
					tc.mod(c)
				}
			})
			want := TypeTransaction
			if tc.name == "wrong type requested" {
				want = TypeEnrolment
			}
			got, err := v.Verify(context.Background(), tc.in, want)
			if tc.want == nil {
				require.NoError(t, err)
				assert.Equal(t, "123456782:01.015", got.Transaction.NameID)
				assert.Equal(t, "999911120", got.Transaction.BSN)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.want, "got %v", err)
			assert.NotEqual(t, "Internal", Code(err))
		})
	}
}

// resign signs a modified unsigned assertion string with c's key (a malicious
// but valid-key signer), so SAML-level checks run on it.
func resign(t testing.TB, c *tcert, unsigned string) string {
	t.Helper()
	doc, err := parseForTest(unsigned)
	require.NoError(t, err)
	name, _ := RenderIssuerName(c.cert.RawIssuer)
	s := &Signer{key: c.key, leaf: c.cert, issuerName: name, serial: c.cert.SerialNumber.String()}
	signed, err := s.sign(context.Background(), doc, TypeTransaction, "x", "x", t0)
	require.NoError(t, err)
	return string(signed.Bytes())
}

// embedFirst puts cert as the first X509Certificate (before the signer's own).
func embedFirst(t testing.TB, b []byte, cert *x509.Certificate) []byte {
	t.Helper()
	s := string(b)
	i := strings.Index(s, "<ds:X509Certificate>")
	require.Positive(t, i)
	return []byte(s[:i] + "<ds:X509Certificate>" + b64(cert.Raw) + "</ds:X509Certificate>" + s[i:])
}

func TestReplay(t *testing.T) {
	p := testPKI(t)
	good := forge(t, p.zAut, caregiverTrx(), false)
	v := newTestValidator(t)
	_, err := v.Verify(context.Background(), good, TypeTransaction)
	require.NoError(t, err)
	_, err = v.Verify(context.Background(), good, TypeTransaction)
	assert.ErrorIs(t, err, ErrReplay)
	assert.Equal(t, "Replay", Code(err))
}

func TestEnrolmentRevocationTiming(t *testing.T) {
	p := testPKI(t)
	tests := []struct {
		name     string
		signedAt time.Time
		want     error
	}{
		{"signed before revocation is accepted", t0.Add(-2 * time.Hour), nil},
		{"signed after revocation is rejected", t0.Add(-30 * time.Minute), ErrRevoked},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestSigner(t, p.revokedAut, WithClock(fixedClock(tc.signedAt)))
			e, err := s.SignEnrolment(sampleEnrolment())
			require.NoError(t, err)
			_, err = newTestValidator(t).Verify(context.Background(), e.Bytes(), TypeEnrolment)
			if tc.want == nil {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, tc.want)
			}
		})
	}
	t.Run("revoked transaction signer is rejected whenever it signed", func(t *testing.T) {
		s := newTestSigner(t, p.revokedAut, WithClock(fixedClock(t0.Add(-2*time.Hour))), WithTransactionLifetime(85*time.Minute))
		_, err := s.SignTransaction(sampleTransaction())
		require.NoError(t, err)
	})
}

func TestEnrolmentAndMandateChecks(t *testing.T) {
	p := testPKI(t)
	enr, err := newTestSigner(t, p.zAut).SignEnrolment(sampleEnrolment())
	require.NoError(t, err)
	mdt, err := newTestSigner(t, p.zHnd).SignMandate(sampleMandate())
	require.NoError(t, err)
	v := newTestValidator(t)
	got, err := v.Verify(context.Background(), enr.Bytes(), TypeEnrolment)
	require.NoError(t, err)
	assert.Equal(t, "999911120", got.Enrolment.BSN)
	assert.Equal(t, "123456782", got.Enrolment.Uitvoerder)
	// Reusable: enrolment and mandate tokens are not single-use.
	_, err = v.Verify(context.Background(), enr.Bytes(), TypeEnrolment)
	require.NoError(t, err)
	gm, err := v.Verify(context.Background(), mdt.Bytes(), TypeMandate)
	require.NoError(t, err)
	assert.Equal(t, []string{"000000012", AppIDPrefix + "90000326"}, gm.Mandate.Mandated)

	es := string(enr.Bytes())
	sig := es[strings.Index(es, "<ds:Signature") : strings.Index(es, "</ds:Signature>")+len("</ds:Signature>")]
	unsignedEnr := strings.Replace(es, sig, "", 1)
	resignEnr := func(s string) []byte {
		doc, err := parseForTest(s)
		require.NoError(t, err)
		name, _ := RenderIssuerName(p.zAut.cert.RawIssuer)
		sg := &Signer{key: p.zAut.key, leaf: p.zAut.cert, issuerName: name, serial: p.zAut.cert.SerialNumber.String()}
		out, err := sg.sign(context.Background(), doc, TypeEnrolment, "x", "x", t0)
		require.NoError(t, err)
		return out.Bytes()
	}
	tests := []struct {
		name string
		in   []byte
		typ  Type
		want error
	}{
		{"enrolment extra attribute", resignEnr(strings.Replace(unsignedEnr, "</saml:AttributeStatement>", `<saml:Attribute Name="Scantoken"><saml:AttributeValue>AA==</saml:AttributeValue></saml:Attribute></saml:AttributeStatement>`, 1)), TypeEnrolment, ErrAttribute},
		{"enrolment uitvoerder someone else", resignEnr(strings.Replace(unsignedEnr, "<saml:AttributeValue>123456782<", "<saml:AttributeValue>000000012<", 1)), TypeEnrolment, ErrUitvoerder},
		{"enrolment over 548 days", resignEnr(strings.Replace(unsignedEnr, `NotOnOrAfter="2028-05-24T12:00:00.000Z"`, `NotOnOrAfter="2028-05-26T12:00:00.000Z"`, 1)), TypeEnrolment, ErrLifetime},
		{"enrolment invalid bsn", resignEnr(strings.Replace(unsignedEnr, ">999911120<", ">123456789<", 1)), TypeEnrolment, ErrNameID},
		{"mandate token requested as enrolment", mdt.Bytes(), TypeEnrolment, ErrWrongType},
		{"enrolment signed with server cert", forgeEnrolmentWith(t, p.server), TypeEnrolment, ErrKeyUsage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newTestValidator(t).Verify(context.Background(), tc.in, tc.typ)
			assert.ErrorIs(t, err, tc.want, "got %v", err)
		})
	}
}

func forgeEnrolmentWith(t testing.TB, c *tcert) []byte {
	name, _ := RenderIssuerName(c.cert.RawIssuer)
	s := &Signer{key: c.key, leaf: c.cert, issuerName: name, serial: c.cert.SerialNumber.String(), embedCert: true}
	e := sampleEnrolment()
	e.ID, e.IssueInstant, e.AuthnInstant, e.NotBefore, e.NotOnOrAfter, e.Uitvoerder, e.Audiences = "ins_x", t0, t0, t0, t0.Add(24*time.Hour), "000012345", []string{AudienceZIM}
	out, err := s.sign(context.Background(), buildEnrolment(&e, name, s.serial), TypeEnrolment, e.ID, "x", e.NotOnOrAfter)
	require.NoError(t, err)
	return out.Bytes()
}

var _ = fmt.Sprintf
