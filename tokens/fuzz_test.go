package tokens

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	dsig "github.com/russellhaering/goxmldsig"

	"github.com/aortagw/aortagw/internal/xmlsafe"
)

func goldenSeeds(f *testing.F) [][]byte {
	paths, _ := filepath.Glob("testdata/*.golden.xml")
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzVerify: the validator never panics, and whatever it accepts is a fully
// populated token of the requested type whose canonical bytes re-verify.
func FuzzVerify(f *testing.F) {
	for _, b := range goldenSeeds(f) {
		f.Add(b, uint8(TypeTransaction))
		f.Add(b, uint8(TypeEnrolment))
		f.Add(bytes.Replace(b, []byte("999911120"), []byte("9999<!---->11120"), 1), uint8(TypeTransaction))
	}
	v := newTestValidator(f, func(c *ValidatorConfig) { c.Replay = noReplay{} })
	f.Fuzz(func(t *testing.T, raw []byte, typ uint8) {
		want := Type(typ%3 + 1)
		got, err := v.Verify(context.Background(), raw, want)
		if err != nil {
			if Code(err) == "Internal" {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if got.Type != want || got.Signer == nil || got.ID == "" {
			t.Fatalf("accepted an incomplete result: %+v", got)
		}
		if (want == TypeTransaction) != (got.Transaction != nil) || (want == TypeEnrolment) != (got.Enrolment != nil) || (want == TypeMandate) != (got.Mandate != nil) {
			t.Fatal("claims of the wrong type")
		}
	})
}

// FuzzExcC14N cross-checks our exclusive canonicaliser against goxmldsig's on
// every document the pre-parser accepts.
func FuzzExcC14N(f *testing.F) {
	for _, b := range goldenSeeds(f) {
		f.Add(b)
	}
	f.Add([]byte(`<a xmlns="u" xmlns:p="v"><p:b c="1" p:d="&#9;x&lt;" a="2"><c xmlns="">t&amp;&#13;</c></p:b><!-- c --><![CDATA[<x>]]></a>`))
	f.Add([]byte(`<p:a xmlns:p="u" xmlns:q="w"><q:b xmlns:p="v" p:x="1"></q:b><p:c xml:lang="nl"/></p:a>`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		doc, err := xmlsafe.Parse(raw, xmlsafe.TokenLimits)
		if err != nil {
			return
		}
		var ours bytes.Buffer
		excC14N(&ours, doc.Root(), nil)
		theirs, err := dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("").Canonicalize(doc.Root().Copy())
		if err != nil {
			return
		}
		if !bytes.Equal(ours.Bytes(), theirs) {
			t.Fatalf("canonical forms differ\nours:   %q\ntheirs: %q", ours.Bytes(), theirs)
		}
	})
}
