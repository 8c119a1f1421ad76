package xmlsafe

import (
	"encoding/xml"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const good = `<?xml version="1.0" encoding="UTF-8"?>
<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="a1" Version="2.0"><!-- ok --><saml:Issuer>x</saml:Issuer><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo/></ds:Signature><KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#" xml:lang="nl"/><![CDATA[a<b]]></saml:Assertion>
`

func TestCheck(t *testing.T) {
	deep := strings.Repeat("<a>", 40) + strings.Repeat("</a>", 40)
	manyAttrs := "<a"
	for i := 0; i < 40; i++ {
		manyAttrs += " a" + strings.Repeat("x", i) + `="1"`
	}
	manyAttrs += "/>"
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"good", good, nil},
		{"no declaration", `<a/>`, nil},
		{"too large", "<a>" + strings.Repeat("x", 70<<10) + "</a>", ErrTooLarge},
		{"invalid utf8", "<a>\xff</a>", ErrNotUTF8},
		{"bom", "\xef\xbb\xbf<a/>", ErrEncoding},
		{"utf16 declaration", `<?xml version="1.0" encoding="UTF-16"?><a/>`, ErrEncoding},
		{"latin1 declaration", `<?xml version='1.0' encoding='ISO-8859-1'?><a/>`, ErrEncoding},
		{"xml 1.1", `<?xml version="1.1"?><a/>`, ErrSyntax},
		{"doctype", `<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>`, ErrDoctype},
		{"doctype system", `<!DOCTYPE a SYSTEM "file:///etc/passwd"><a/>`, ErrDoctype},
		{"processing instruction", `<a><?php echo 1?></a>`, ErrProcInst},
		{"pi before root", `<?xml-stylesheet href="x"?><a/>`, ErrProcInst},
		{"declaration not first", ` <?xml version="1.0"?><a/>`, ErrProcInst},
		{"two roots", `<a/><b/>`, ErrRoot},
		{"no root", ``, ErrRoot},
		{"text outside root", `<a/>junk`, ErrTextOutsideRoot},
		{"duplicate attribute", `<a x="1" x="2"/>`, ErrDuplicateAttr},
		{"duplicate attribute via prefixes", `<a xmlns:p="u" xmlns:q="u" p:x="1" q:x="2"/>`, ErrDuplicateAttr},
		{"duplicate namespace declaration", `<a xmlns:p="u" xmlns:p="v"/>`, ErrDuplicateAttr},
		{"same local different ns ok", `<a xmlns:p="u" xmlns:q="v" p:x="1" q:x="2" x="3"/>`, nil},
		{"undeclared element prefix", `<p:a/>`, ErrUndeclaredPrefix},
		{"undeclared attribute prefix", `<a p:x="1"/>`, ErrUndeclaredPrefix},
		{"prefix out of scope", `<r><a xmlns:p="u"/><p:b/></r>`, ErrUndeclaredPrefix},
		{"empty prefix binding", `<a xmlns:p=""/>`, ErrBadName},
		{"rebind xml", `<a xmlns:xml="urn:x"/>`, ErrBadName},
		{"double colon", `<a xmlns:p="u"><p:b:c/></a>`, ErrSyntax},
		{"too deep", deep, ErrTooDeep},
		{"too many attributes", manyAttrs, ErrTooManyAttrs},
		{"mismatched end", `<a></b>`, ErrSyntax},
		{"unclosed", `<a>`, ErrSyntax},
		{"unknown entity", `<a>&lol;</a>`, ErrSyntax},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Check([]byte(tc.in), TokenLimits)
			if tc.want == nil {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.want)
			assert.ErrorIs(t, err, ErrUnsafe)
		})
	}
}

func TestParse(t *testing.T) {
	doc, err := Parse([]byte(good), TokenLimits)
	require.NoError(t, err)
	assert.Equal(t, "Assertion", doc.Root().Tag)
	assert.Len(t, doc.Root().ChildElements(), 3)

	_, err = Parse([]byte(`<a x="1" x="2"/>`), TokenLimits)
	assert.ErrorIs(t, err, ErrDuplicateAttr)
}

func TestZeroLimitsAreStrict(t *testing.T) {
	err := Check([]byte("<a>"+strings.Repeat("x", 70<<10)+"</a>"), Limits{})
	assert.ErrorIs(t, err, ErrTooLarge)
	err = Check([]byte("<a>"+strings.Repeat("x", 70<<10)+"</a>"), MessageLimits)
	assert.NoError(t, err)
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{good, `<a xmlns:p="u" p:x="1"/>`, `<!DOCTYPE a><a/>`, `<a/><b/>`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := Check(b, TokenLimits)
		if err != nil {
			if !errors.Is(err, ErrUnsafe) {
				t.Fatalf("error does not wrap ErrUnsafe: %v", err)
			}
			return
		}
		// Whatever Check accepts, Parse must either accept with a single root or refuse cleanly.
		doc, err := Parse(b, TokenLimits)
		if err != nil {
			if !errors.Is(err, ErrUnsafe) {
				t.Fatalf("parse error does not wrap ErrUnsafe: %v", err)
			}
			return
		}
		if doc.Root() == nil {
			t.Fatal("accepted document without root")
		}
	})
}

func BenchmarkCheckToken(b *testing.B) {
	in := []byte(strings.Repeat(" ", 1) + good)
	in = in[1:]
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if err := Check(in, TokenLimits); err != nil {
			b.Fatal(err)
		}
	}
}

func TestWalk(t *testing.T) {
	doc := []byte(`<?xml version="1.0"?><a xmlns="urn:a"><b x="1">text</b><!-- c --><d/></a>`)
	var got []string
	err := Walk(doc, Limits{}, func(tok xml.Token, start, end int) error {
		got = append(got, string(doc[start:end]))
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, []string{`<?xml version="1.0"?>`, `<a xmlns="urn:a">`, `<b x="1">`, `text`, `</b>`, `<!-- c -->`, `<d/>`, ``, `</a>`}, got)

	stop := errors.New("stop")
	tests := []struct {
		name string
		doc  string
		want error
	}{
		{"visit error returned unchanged", `<a><b/></a>`, stop},
		{"check error takes precedence over a visit error", `<a><b/></a><c/>`, ErrRoot},
		{"check error later in the document", `<a><b/><!DOCTYPE x></a>`, ErrDoctype},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := Walk([]byte(tc.doc), Limits{}, func(xml.Token, int, int) error {
				calls++
				return stop
			})
			require.ErrorIs(t, err, tc.want)
			assert.Equal(t, 1, calls, "visit is not called after it failed")
		})
	}
}
