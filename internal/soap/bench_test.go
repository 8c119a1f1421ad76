package soap

import (
	"strings"
	"testing"
)

// benchToken is a 4 KiB assertion, the size of a signed AORTA token.
func benchToken(id string) []byte {
	pad := strings.Repeat(`<saml:Attribute Name="x"><saml:AttributeValue>0123456789abcdef</saml:AttributeValue></saml:Attribute>`, 36)
	return []byte(`<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="` + id + `" Version="2.0"><saml:AttributeStatement>` + pad + `</saml:AttributeStatement></saml:Assertion>`)
}

func benchEnvelope() []byte {
	body := `<QURX_IN990011NL xmlns="urn:hl7-org:v3">` + strings.Repeat(`<id root="2.16.528.1.1007.3.3.90000382.1" extension="abc"/>`, 50) + `</QURX_IN990011NL>`
	return []byte(`<soap:Envelope xmlns:soap="` + NS + `"><soap:Header/><soap:Body>` + body + `</soap:Body></soap:Envelope>`)
}

func BenchmarkWithSecurity(b *testing.B) {
	env := benchEnvelope()
	a, m, t := benchToken("ins_1"), benchToken("mdt_1"), benchToken("trx_1")
	b.SetBytes(int64(len(env) + len(a) + len(m) + len(t)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := WithSecurity(env, a, m, t); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseEnvelope(b *testing.B) {
	env, err := WithSecurity(benchEnvelope(), benchToken("ins_1"), benchToken("mdt_1"), benchToken("trx_1"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(env)))
	b.ReportAllocs()
	for b.Loop() {
		e, err := ParseEnvelope(env, Limits{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.SecurityTokens(); err != nil {
			b.Fatal(err)
		}
	}
}
