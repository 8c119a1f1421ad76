package soap

import (
	"bytes"
	"flag"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files")

// Tokens shaped like real signed assertions: a namespace declared on the
// assertion, odd whitespace, attribute order, a CR, an entity and a comment,
// so any re-serialisation would show.
var (
	tokIns = []byte("<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"ins_1\"  Version=\"2.0\">\r\n  <saml:Issuer>urn:IIroot:2.16.528.1.1007.3.3:IIext:90000382</saml:Issuer><!-- c --><saml:Subject><saml:NameID>999911466</saml:NameID></saml:Subject></saml:Assertion>")
	tokMdt = []byte(`<saml2:Assertion Version="2.0" ID="mdt_1" xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion"><saml2:Issuer>a &amp; b</saml2:Issuer></saml2:Assertion>`)
	tokTrx = []byte(`<Assertion xmlns="urn:oasis:names:tc:SAML:2.0:assertion" ID="trx_1" Version="2.0"><Issuer/></Assertion>`)
)

const hl7Body = `<QURX_IN990011NL xmlns="urn:hl7-org:v3"><id root="1.2.3" extension="4"/></QURX_IN990011NL>`

func TestWithSecurityGolden(t *testing.T) {
	tests := []struct {
		name, env string
	}{
		{"no header", `<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>` + hl7Body + `</soap:Body></soap:Envelope>`},
		{"empty header", `<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Header /><SOAP-ENV:Body>` + hl7Body + `</SOAP-ENV:Body></SOAP-ENV:Envelope>`},
		{"header with other block", `<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Header><x:Trace xmlns:x="urn:x">abc</x:Trace></S:Header><S:Body>` + hl7Body + `</S:Body></S:Envelope>`},
		{"default namespace", `<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body>` + hl7Body + `</Body></Envelope>`},
		{"default namespace header", `<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Header></Header><Body>` + hl7Body + `</Body></Envelope>`},
		{"soapui style", `<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:hl7-org:v3">` + "\n  " + `<soapenv:Header/>` + "\n  " + `<soapenv:Body><urn:QURX_IN990011NL><urn:id root="1" extension="2"/></urn:QURX_IN990011NL></soapenv:Body></soapenv:Envelope>`},
		{"wsse as envelope prefix", `<wsse:Envelope xmlns:wsse="http://schemas.xmlsoap.org/soap/envelope/"><wsse:Body>` + hl7Body + `</wsse:Body></wsse:Envelope>`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := WithSecurity([]byte(tc.env), tokIns, tokMdt, tokTrx)
			require.NoError(t, err)

			e, err := ParseEnvelope(out, Limits{})
			require.NoError(t, err)
			require.True(t, e.HasSecurity())
			toks, err := e.SecurityTokens()
			require.NoError(t, err)
			require.Len(t, toks, 3)
			assert.Equal(t, tokIns, toks[0], "token bytes must be byte-identical")
			assert.Equal(t, tokMdt, toks[1])
			assert.Equal(t, tokTrx, toks[2])
			sec := e.Headers()[0]
			assert.Equal(t, ActorZIM, sec.Actor)
			assert.Equal(t, "1", sec.MustUnderstand)

			// The body is untouched.
			in, err := ParseEnvelope([]byte(tc.env), Limits{})
			require.NoError(t, err)
			assert.Equal(t, in.Body(), e.Body())
			// A second insertion is refused.
			_, err = WithSecurity(out, tokTrx)
			require.ErrorIs(t, err, ErrSecurityPresent)

			golden := filepath.Join("testdata", "withsecurity_"+strings.ReplaceAll(tc.name, " ", "_")+".xml")
			if *update {
				require.NoError(t, os.WriteFile(golden, out, 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err)
			assert.Equal(t, string(want), string(out))
		})
	}
}

func TestBuild(t *testing.T) {
	out := Build([]byte(hl7Body), tokIns, tokTrx)
	e, err := ParseEnvelope(out, Limits{})
	require.NoError(t, err)
	toks, err := e.SecurityTokens()
	require.NoError(t, err)
	assert.Equal(t, [][]byte{tokIns, tokTrx}, toks)
	assert.Equal(t, hl7Body, string(e.Body()))
	space, local := e.BodyName()
	assert.Equal(t, "urn:hl7-org:v3", space)
	assert.Equal(t, "QURX_IN990011NL", local)

	plain := Build([]byte(hl7Body))
	e, err = ParseEnvelope(plain, Limits{})
	require.NoError(t, err)
	assert.False(t, e.HasHeader())
	_, err = e.SecurityTokens()
	require.ErrorIs(t, err, ErrNoSecurity)
}

func env(header, body string) string {
	return `<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:wsse="` + NSWSSE + `">` + header + `<soap:Body>` + body + `</soap:Body></soap:Envelope>`
}

func sec(actor, mu, content string) string {
	return `<wsse:Security soap:actor="` + actor + `" soap:mustUnderstand="` + mu + `">` + content + `</wsse:Security>`
}

func TestParseEnvelopeHostile(t *testing.T) {
	good := sec(ActorZIM, "1", string(tokTrx))
	tests := []struct {
		name string
		doc  string
		want error
	}{
		{"two bodies", `<soap:Envelope xmlns:soap="` + NS + `"><soap:Body>` + hl7Body + `</soap:Body><soap:Body>` + hl7Body + `</soap:Body></soap:Envelope>`, ErrStructure},
		{"two headers", `<soap:Envelope xmlns:soap="` + NS + `"><soap:Header/><soap:Header/><soap:Body>` + hl7Body + `</soap:Body></soap:Envelope>`, ErrStructure},
		{"header after body", `<soap:Envelope xmlns:soap="` + NS + `"><soap:Body>` + hl7Body + `</soap:Body><soap:Header/></soap:Envelope>`, ErrStructure},
		{"two zim security headers", env(`<soap:Header>`+good+good+`</soap:Header>`, hl7Body), ErrDuplicateSecurity},
		{"zim actor with whitespace", env(`<soap:Header>`+good+sec(" "+ActorZIM, "1", string(tokTrx))+`</soap:Header>`, hl7Body), ErrDuplicateSecurity},
		{"mustUnderstand missing", env(`<soap:Header>`+sec(ActorZIM, "0", string(tokTrx))+`</soap:Header>`, hl7Body), ErrMustUnderstand},
		{"mustUnderstand true", env(`<soap:Header>`+sec(ActorZIM, "true", string(tokTrx))+`</soap:Header>`, hl7Body), ErrMustUnderstand},
		{"security in body", env("", `<x xmlns="urn:hl7-org:v3">`+good+`</x>`), ErrSecurityMisplaced},
		{"security nested in header block", env(`<soap:Header><x:a xmlns:x="urn:x">`+good+`</x:a></soap:Header>`, hl7Body), ErrSecurityMisplaced},
		{"other element in security", env(`<soap:Header>`+sec(ActorZIM, "1", string(tokTrx)+`<x:a xmlns:x="urn:x"/>`)+`</soap:Header>`, hl7Body), ErrSecurityContent},
		{"text in security", env(`<soap:Header>`+sec(ActorZIM, "1", string(tokTrx)+`junk`)+`</soap:Header>`, hl7Body), ErrSecurityContent},
		{"nested envelope in body", env("", `<soap:Envelope><soap:Body/></soap:Envelope>`), ErrNestedEnvelope},
		{"nested envelope deeper", env("", `<x xmlns="urn:x"><soap:Body/></x>`), ErrNestedEnvelope},
		{"soap 1.2", `<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body>` + hl7Body + `</e:Body></e:Envelope>`, ErrSOAPVersion},
		{"not an envelope", hl7Body, ErrNotEnvelope},
		{"doctype", `<!DOCTYPE x [<!ENTITY a "b">]>` + env("", hl7Body), ErrForbidden},
		{"processing instruction", `<?xml-stylesheet href="x"?>` + env("", hl7Body), ErrForbidden},
		{"pi inside", env("", `<x xmlns="urn:x"><?php x?></x>`), ErrForbidden},
		{"undeclared prefix", env("", `<h:x/>`), ErrMalformed},
		{"duplicate attribute by namespace", env("", `<x xmlns="urn:x" xmlns:a="urn:a" xmlns:b="urn:a" a:z="1" b:z="2"/>`), ErrMalformed},
		{"empty body", env("", ""), ErrNoBody},
		{"two elements in body", env("", hl7Body+hl7Body), ErrStructure},
		{"text in body", env("", "hello"+hl7Body), ErrStructure},
		{"trailing element", env("", hl7Body) + `<x/>`, ErrMalformed},
		{"unqualified header block", env(`<soap:Header><x/></soap:Header>`, hl7Body), ErrHeaderNotQualified},
		{"unclosed", `<soap:Envelope xmlns:soap="` + NS + `"><soap:Body>`, ErrMalformed},
		{"bad utf8", env("", "<x xmlns=\"urn:x\">\xff</x>"), ErrMalformed},
		{"extra element after body", `<soap:Envelope xmlns:soap="` + NS + `"><soap:Body>` + hl7Body + `</soap:Body><x xmlns="urn:x"/></soap:Envelope>`, ErrStructure},
		{"entity", env("", `<x xmlns="urn:x">&foo;</x>`), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseEnvelope([]byte(tc.doc), Limits{})
			require.ErrorIs(t, err, tc.want)
			// WithSecurity refuses the same inputs.
			_, err = WithSecurity([]byte(tc.doc), tokTrx)
			assert.Error(t, err)
		})
	}
}

func TestParseEnvelopeCommentsDoNotHideStructure(t *testing.T) {
	doc := env(`<soap:Header><!-- `+sec(ActorZIM, "1", string(tokTrx))+` --></soap:Header>`, `<!-- <soap:Body> -->`+hl7Body+`<!-- x -->`)
	e, err := ParseEnvelope([]byte(doc), Limits{})
	require.NoError(t, err)
	assert.False(t, e.HasSecurity(), "a commented-out header is not a header")
	assert.Equal(t, hl7Body, string(e.BodyElement()))
}

func TestWithSecurityRefusesSmuggling(t *testing.T) {
	tests := []struct{ name, doc string }{
		{"zim header", env(`<soap:Header>`+sec(ActorZIM, "1", string(tokTrx))+`</soap:Header>`, hl7Body)},
		{"other actor", env(`<soap:Header>`+sec("urn:other", "1", string(tokTrx))+`</soap:Header>`, hl7Body)},
		{"no actor", env(`<soap:Header><wsse:Security>`+string(tokTrx)+`</wsse:Security></soap:Header>`, hl7Body)},
		{"old secext namespace", env(`<soap:Header><o:Security xmlns:o="http://schemas.xmlsoap.org/ws/2002/07/secext" soap:actor="`+ActorZIM+`">`+string(tokTrx)+`</o:Security></soap:Header>`, hl7Body)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := WithSecurity([]byte(tc.doc), tokIns)
			require.ErrorIs(t, err, ErrSecurityPresent)
		})
	}
}

func TestWithSecurityRefusesBadTokens(t *testing.T) {
	good := []byte(env("", hl7Body))
	tests := []struct {
		name string
		tok  string
	}{
		{"empty", ""},
		{"not an assertion", `<x xmlns="urn:x"/>`},
		{"two elements", string(tokTrx) + string(tokTrx)},
		{"closes the header", `</wsse:Security></soap:Header><soap:Body>`},
		{"prolog", `<?xml version="1.0"?>` + string(tokTrx)},
		{"trailing text", string(tokTrx) + " "},
		{"undeclared saml prefix", `<saml:Assertion ID="x"/>`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := WithSecurity(good, []byte(tc.tok))
			require.ErrorIs(t, err, ErrInvalidToken)
		})
	}
}

func TestLimits(t *testing.T) {
	doc := []byte(env("", hl7Body))
	_, err := ParseEnvelope(doc, Limits{MaxBytes: 10})
	require.ErrorIs(t, err, ErrTooLarge)
	deep := env("", strings.Repeat(`<a xmlns="urn:x">`, 10)+strings.Repeat(`</a>`, 10))
	_, err = ParseEnvelope([]byte(deep), Limits{MaxDepth: 8})
	require.ErrorIs(t, err, ErrTooDeep)
	_, err = ParseEnvelope([]byte(deep), Limits{MaxDepth: 20})
	require.NoError(t, err)
	many := env("", `<a xmlns="urn:x" b="1" c="2" d="3"/>`)
	_, err = ParseEnvelope([]byte(many), Limits{MaxAttrs: 2})
	require.ErrorIs(t, err, ErrForbidden)
}

func TestBodyNamespaces(t *testing.T) {
	doc := `<soapenv:Envelope xmlns:soapenv="` + NS + `" xmlns:urn="urn:hl7-org:v3"><soapenv:Body><urn:X/></soapenv:Body></soapenv:Envelope>`
	e, err := ParseEnvelope([]byte(doc), Limits{})
	require.NoError(t, err)
	assert.Equal(t, "urn:hl7-org:v3", e.BodyNamespaces()["urn"])
	space, local := e.BodyName()
	assert.Equal(t, "urn:hl7-org:v3", space)
	assert.Equal(t, "X", local)
}

func TestFaultRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   Fault
		want Fault
	}{
		{"zim", Fault{Code: "zim:TokenReplayed", String: "token used before", Detail: "id=trx_1 <&>"}, Fault{Code: "zim:TokenReplayed", String: "token used before", Detail: "id=trx_1 <&>"}},
		{"soap", Fault{Code: "soap:Client", String: "bad"}, Fault{Code: "soap:Client", String: "bad"}},
		{"aortagw", Fault{Code: "aortagw:NoEnrolment", String: "x"}, Fault{Code: "aortagw:NoEnrolment", String: "x"}},
		{"not a qname", Fault{Code: "<evil>", String: "x"}, Fault{Code: "soap:Server", String: "x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			WriteFault(rec, 500, tc.in)
			assert.Equal(t, 500, rec.Code)
			assert.Equal(t, ContentType, rec.Header().Get("Content-Type"))
			f, ok := ParseFault(rec.Body.Bytes())
			require.True(t, ok)
			assert.Equal(t, tc.want, *f)
		})
	}
}

func TestParseFaultForeignPrefixes(t *testing.T) {
	doc := `<S:Envelope xmlns:S="` + NS + `"><S:Body><S:Fault xmlns:v="` + NSFaultZIM + `"><faultcode>v:URAMismatch</faultcode><faultstring>ura</faultstring><detail><x xmlns="urn:x">a  b</x></detail></S:Fault></S:Body></S:Envelope>`
	f, ok := ParseFault([]byte(doc))
	require.True(t, ok)
	assert.Equal(t, Fault{Code: "zim:URAMismatch", String: "ura", Detail: "a b"}, *f)

	for _, bad := range []string{
		env("", hl7Body),
		`<S:Envelope xmlns:S="` + NS + `"><S:Body><S:Fault><faultstring>x</faultstring></S:Fault></S:Body></S:Envelope>`,
		`<S:Envelope xmlns:S="` + NS + `"><S:Body><S:Fault><faultcode>a</faultcode><faultcode>b</faultcode></S:Fault></S:Body></S:Envelope>`,
		"garbage",
	} {
		_, ok := ParseFault([]byte(bad))
		assert.False(t, ok, bad)
	}
}

func FuzzParseEnvelope(f *testing.F) {
	f.Add([]byte(env("", hl7Body)))
	f.Add(Build([]byte(hl7Body), tokIns, tokTrx))
	f.Add(MarshalFault(Fault{Code: "zim:X", String: "y", Detail: "z"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEnvelope(b, Limits{MaxBytes: 1 << 16})
		if err != nil {
			return
		}
		// Offsets must be consistent and inside the input.
		body := e.Body()
		if !bytes.Contains(b, body) {
			t.Fatal("body not inside input")
		}
		if toks, err := e.SecurityTokens(); err == nil {
			for _, tok := range toks {
				if !bytes.HasPrefix(tok, []byte("<")) || !bytes.HasSuffix(tok, []byte(">")) {
					t.Fatalf("token span wrong: %q", tok)
				}
			}
		}
		if !e.HasAnySecurity() {
			out, err := WithSecurity(b, tokTrx)
			if err != nil {
				t.Fatalf("WithSecurity failed on a parseable envelope: %v", err)
			}
			e2, err := ParseEnvelope(out, Limits{MaxBytes: 1 << 17})
			if err != nil {
				t.Fatalf("output does not parse: %v\n%s", err, out)
			}
			toks, err := e2.SecurityTokens()
			if err != nil || len(toks) != 1 || !bytes.Equal(toks[0], tokTrx) {
				t.Fatalf("token not preserved: %v", err)
			}
			if !bytes.Equal(e2.Body(), body) {
				t.Fatal("body changed")
			}
		}
		_, _ = e.Fault()
	})
}

// FuzzSecuredConforms checks the promise of (*Secured).Conforms: whatever
// envelope and token pass ParseEnvelope and WithSecurity, the spliced
// envelope passes ParseEnvelope under any limits it conforms to, with the
// token and the body unchanged. A sender relies on this to skip its parse.
func FuzzSecuredConforms(f *testing.F) {
	f.Add([]byte(env("", hl7Body)), tokTrx, uint8(0))
	f.Add([]byte(`<Envelope xmlns="`+NS+`"><Body>`+hl7Body+`</Body></Envelope>`), tokIns, uint8(1))
	f.Add([]byte(`<S:Envelope xmlns:S="`+NS+`"><S:Header/><S:Body>`+hl7Body+`</S:Body></S:Envelope>`), tokMdt, uint8(2))
	f.Fuzz(func(t *testing.T, envb, tok []byte, depth uint8) {
		parseLim := Limits{MaxBytes: 1 << 16, MaxDepth: 8 + int(depth%60), MaxAttrs: 64}
		e, err := ParseEnvelope(envb, parseLim)
		if err != nil {
			return
		}
		s, err := e.WithSecurity(tok)
		if err != nil {
			return
		}
		for _, l := range []Limits{{}, parseLim, {MaxBytes: 1 << 17, MaxDepth: 40, MaxAttrs: 40}, {MaxBytes: 1 << 17, MaxDepth: 35, MaxAttrs: 32}} {
			if !s.Conforms(l) {
				continue
			}
			e2, err := ParseEnvelope(s.Bytes(), l)
			if err != nil {
				t.Fatalf("Conforms(%+v) but ParseEnvelope refuses: %v\n%s", l, err, s.Bytes())
			}
			toks, err := e2.SecurityTokens()
			if err != nil || len(toks) != 1 || !bytes.Equal(toks[0], tok) {
				t.Fatalf("token not preserved: %v", err)
			}
			if !bytes.Equal(e2.Body(), e.Body()) {
				t.Fatal("body changed")
			}
			sp, lo := e2.BodyName()
			sp0, lo0 := s.BodyName()
			if sp != sp0 || lo != lo0 {
				t.Fatal("body name differs")
			}
		}
	})
}

func FuzzParseFault(f *testing.F) {
	f.Add(MarshalFault(Fault{Code: "zim:X", String: "y", Detail: "z"}))
	f.Add([]byte(`<S:Envelope xmlns:S="` + NS + `"><S:Body><S:Fault><faultcode>S:Client</faultcode></S:Fault></S:Body></S:Envelope>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, ok := ParseFault(b)
		if ok && fl.Code == "" {
			t.Fatal("fault without code accepted")
		}
	})
}

func TestEnvelopeWithSecurityMatchesWithSecurity(t *testing.T) {
	tests := []struct{ name, env string }{
		{"no header", env("", hl7Body)},
		{"empty header", `<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Header /><SOAP-ENV:Body>` + hl7Body + `</SOAP-ENV:Body></SOAP-ENV:Envelope>`},
		{"header with other block", `<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Header><x:Trace xmlns:x="urn:x">abc</x:Trace></S:Header><S:Body>` + hl7Body + `</S:Body></S:Envelope>`},
		{"default namespace", `<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body>` + hl7Body + `</Body></Envelope>`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, err := WithSecurity([]byte(tc.env), tokIns, tokMdt, tokTrx)
			require.NoError(t, err)
			e, err := ParseEnvelope([]byte(tc.env), Limits{})
			require.NoError(t, err)
			for i := 0; i < 2; i++ { // the second time the token checks come from the cache
				got, err := e.WithSecurity(tokIns, tokMdt, tokTrx)
				require.NoError(t, err)
				assert.Equal(t, want, got.Bytes())
				assert.True(t, got.Conforms(Limits{}), "a splice of a default-limits parse conforms to the default limits")
			}
			assert.Equal(t, []byte(tc.env), e.Raw(), "the parsed envelope is not modified")
		})
	}
}

func TestEnvelopeWithSecurityRefuses(t *testing.T) {
	good, err := ParseEnvelope([]byte(env("", hl7Body)), Limits{})
	require.NoError(t, err)
	// A token passes the check once (and is remembered); a one-byte change
	// must still be checked and refused.
	_, err = good.WithSecurity(tokTrx)
	require.NoError(t, err)
	broken := append([]byte(nil), tokTrx...)
	broken[len(broken)-1] = ' '
	smuggled, err := ParseEnvelope([]byte(env(`<soap:Header>`+sec("urn:other", "1", string(tokTrx))+`</soap:Header>`, hl7Body)), Limits{})
	require.NoError(t, err)
	tests := []struct {
		name string
		e    *Envelope
		toks [][]byte
		want error
	}{
		{"no tokens", good, nil, ErrInvalidToken},
		{"empty token", good, [][]byte{{}}, ErrInvalidToken},
		{"modified token", good, [][]byte{broken}, ErrInvalidToken},
		{"closes the header", good, [][]byte{[]byte(`</wsse:Security></soap:Header><soap:Body>`)}, ErrInvalidToken},
		{"sender's own security header", smuggled, [][]byte{tokIns}, ErrSecurityPresent},
		// A token must read the same inside the envelope as on its own, and
		// must pass the envelope's own rules there.
		{"element without a namespace", good, [][]byte{[]byte(`<saml:Assertion xmlns:saml="` + NSSAML + `"><Issuer/></saml:Assertion>`)}, ErrInvalidToken},
		{"soap element inside", good, [][]byte{[]byte(`<saml:Assertion xmlns:saml="` + NSSAML + `"><s:Body xmlns:s="` + NS + `"/></saml:Assertion>`)}, ErrInvalidToken},
		{"security inside", good, [][]byte{[]byte(`<saml:Assertion xmlns:saml="` + NSSAML + `"><w:Security xmlns:w="` + NSWSSE + `"/></saml:Assertion>`)}, ErrInvalidToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.e.WithSecurity(tc.toks...)
			require.ErrorIs(t, err, tc.want)
		})
	}
}
