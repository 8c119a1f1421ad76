package tokens

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/internal/testenv"
)

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
}

const xmlsecIDAttr = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"

// TestXmlsec1VerifiesOurTokens: an independent C implementation verifies every
// token type we sign, with the signer's certificate as the only key.
func TestXmlsec1VerifiesOurTokens(t *testing.T) {
	xmlsec := testenv.RequireTool(t, "xmlsec1")[0]
	p := testPKI(t)
	dir := t.TempDir()
	for _, tc := range signedCases() {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.sign(t, p)
			signer := p.zAut.cert
			switch tc.name {
			case "mandate":
				signer = p.zHnd.cert
			case "transaction-server":
				signer = p.server.cert
			}
			tok := filepath.Join(dir, tc.name+".xml")
			crt := filepath.Join(dir, tc.name+".crt")
			require.NoError(t, os.WriteFile(tok, s.Bytes(), 0o600))
			writePEM(t, crt, "CERTIFICATE", signer.Raw)
			out, err := exec.Command(xmlsec, "--verify", "--enabled-key-data", "x509,rsa",
				"--pubkey-cert-pem", crt, "--id-attr:ID", xmlsecIDAttr, tok).CombinedOutput()
			assert.NoError(t, err, "xmlsec1: %s", out)
			assert.Contains(t, string(out), "OK")

			// And a tampered copy fails in xmlsec1 too.
			bad := strings.Replace(string(s.Bytes()), "90000382<", "90000383<", 1)
			require.NoError(t, os.WriteFile(tok, []byte(bad), 0o600))
			out, err = exec.Command(xmlsec, "--verify", "--enabled-key-data", "x509,rsa",
				"--pubkey-cert-pem", crt, "--id-attr:ID", xmlsecIDAttr, tok).CombinedOutput()
			assert.Error(t, err, "xmlsec1 accepted a tampered token: %s", out)
		})
	}
}

// TestWeAcceptXmlsec1Signed: a transaction token of our profile signed by
// xmlsec1 from a template verifies with our validator.
func TestWeAcceptXmlsec1Signed(t *testing.T) {
	xmlsec := testenv.RequireTool(t, "xmlsec1")[0]
	p := testPKI(t)
	dir := t.TempDir()
	tr := caregiverTrx()
	tr.ID, tr.IssueInstant, tr.NotBefore, tr.NotOnOrAfter, tr.Audiences = "trx_xmlsec", t0, t0.Add(-60e9), t0.Add(5*60e9), []string{AudienceZIM}
	name, err := RenderIssuerName(p.zAut.cert.RawIssuer)
	require.NoError(t, err)
	el := buildTransaction(&tr, name, p.zAut.cert.SerialNumber.String())
	var b strings.Builder
	b.WriteString("")
	raw, err := canonicalizer{}.Canonicalize(el)
	require.NoError(t, err)
	tmpl := strings.Replace(string(raw), "</saml:Issuer>", `</saml:Issuer><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="#trx_xmlsec"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo><ds:X509Data><ds:X509Certificate/></ds:X509Data></ds:KeyInfo></ds:Signature>`, 1)
	tmplPath, keyPath, crtPath, outPath := filepath.Join(dir, "tmpl.xml"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "crt.pem"), filepath.Join(dir, "out.xml")
	require.NoError(t, os.WriteFile(tmplPath, []byte(tmpl), 0o600))
	writePEM(t, keyPath, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(p.zAut.key))
	writePEM(t, crtPath, "CERTIFICATE", p.zAut.cert.Raw)
	out, err := exec.Command(xmlsec, "--sign", "--privkey-pem", keyPath+","+crtPath, "--id-attr:ID", xmlsecIDAttr,
		"--output", outPath, tmplPath).CombinedOutput()
	require.NoError(t, err, "xmlsec1 --sign: %s", out)
	signed, err := os.ReadFile(outPath)
	require.NoError(t, err)
	got, err := newTestValidator(t).Verify(context.Background(), signed, TypeTransaction)
	require.NoError(t, err, "token signed by xmlsec1:\n%s", signed)
	assert.Equal(t, "123456782:01.015", got.Transaction.NameID)
}

// BenchmarkXmlsec1 measures xmlsec1 verifying the same transaction token, N
// files per process (xmlsec1 --verify accepts several files), so that process
// start-up is amortised: ns/op is per verified token.
func BenchmarkXmlsec1(b *testing.B) {
	xmlsec := testenv.RequireTool(b, "xmlsec1")[0]
	p := testPKI(b)
	s, err := newTestSigner(b, p.server).SignTransaction(sampleTransaction())
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	crt := filepath.Join(dir, "crt.pem")
	if err := os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.server.cert.Raw}), 0o600); err != nil {
		b.Fatal(err)
	}
	const perProcess = 200
	var files []string
	for i := 0; i < perProcess; i++ {
		f := filepath.Join(dir, "t"+strings.Repeat("x", i%3)+string(rune('a'+i%26))+".xml")
		if err := os.WriteFile(f, s.Bytes(), 0o600); err != nil {
			b.Fatal(err)
		}
		files = append(files, f)
	}
	args := append([]string{"--verify", "--enabled-key-data", "x509,rsa", "--pubkey-cert-pem", crt, "--id-attr:ID", xmlsecIDAttr}, files...)
	b.ResetTimer()
	for i := 0; i < b.N; i += perProcess {
		out, err := exec.Command(xmlsec, args...).CombinedOutput()
		if err != nil {
			b.Fatalf("xmlsec1: %v %s", err, out[:min(len(out), 300)])
		}
		if n := strings.Count(string(out), "OK"); n != perProcess {
			b.Fatalf("xmlsec1 verified %d of %d: %s", n, perProcess, out[:min(len(out), 300)])
		}
	}
}
