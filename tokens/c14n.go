package tokens

import (
	"bytes"
	"sort"
	"strings"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"
)

const nsXML = "http://www.w3.org/XML/1998/namespace"

// excC14N writes the exclusive XML canonicalisation (without comments, empty
// InclusiveNamespaces prefix list) of el to buf, as if el were the apex of the
// node set. The subtree skip (if non-nil) is left out, which is exactly the
// enveloped-signature transform for a Signature that is a descendant of el.
//
// It is used for signing (the digest over our freshly built assertion and the
// canonical SignedInfo, through the goxmldsig Canonicalizer interface) and for
// verifying (the digest over the received assertion, and the bytes claims are
// then read from). Tests and a fuzz target cross-check it byte for byte against
// goxmldsig's exclusive canonicaliser.
func excC14N(buf *bytes.Buffer, el *etree.Element, skip *etree.Element) {
	scope := map[string]string{}
	var chain []*etree.Element
	for p := el.Parent(); p != nil; p = p.Parent() {
		chain = append(chain, p)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		declare(scope, chain[i])
	}
	w := c14nWriter{buf: buf, skip: skip}
	w.element(el, scope, map[string]string{})
}

func declare(scope map[string]string, el *etree.Element) {
	for _, a := range el.Attr {
		switch {
		case a.Space == "" && a.Key == "xmlns":
			scope[""] = a.Value
		case a.Space == "xmlns":
			scope[a.Key] = a.Value
		}
	}
}

type c14nWriter struct {
	buf  *bytes.Buffer
	skip *etree.Element
}

type nsDecl struct{ prefix, uri string }

type c14nAttr struct {
	uri, local, qname, value string
}

func (w *c14nWriter) element(el *etree.Element, parentScope, rendered map[string]string) {
	scope := parentScope
	hasDecl := false
	for _, a := range el.Attr {
		if (a.Space == "" && a.Key == "xmlns") || a.Space == "xmlns" {
			hasDecl = true
			break
		}
	}
	if hasDecl {
		scope = make(map[string]string, len(parentScope)+2)
		for k, v := range parentScope {
			scope[k] = v
		}
		declare(scope, el)
	}

	// Namespaces visibly utilised by this element and its attributes.
	var decls []nsDecl
	need := func(prefix string) {
		if prefix == "xml" || prefix == "xmlns" {
			return
		}
		for _, d := range decls {
			if d.prefix == prefix {
				return
			}
		}
		uri := scope[prefix]
		prev, ok := rendered[prefix]
		if prefix == "" {
			if prev == uri { // "" == "" when neither rendered nor declared
				return
			}
		} else if ok && prev == uri {
			return
		}
		decls = append(decls, nsDecl{prefix, uri})
	}
	need(el.Space)
	attrs := make([]c14nAttr, 0, len(el.Attr))
	for _, a := range el.Attr {
		if (a.Space == "" && a.Key == "xmlns") || a.Space == "xmlns" {
			continue
		}
		ca := c14nAttr{local: a.Key, value: a.Value, qname: a.Key}
		if a.Space != "" {
			need(a.Space)
			ca.qname = a.Space + ":" + a.Key
			if a.Space == "xml" {
				ca.uri = nsXML
			} else {
				ca.uri = scope[a.Space]
			}
		}
		attrs = append(attrs, ca)
	}
	if len(decls) > 1 {
		sort.Slice(decls, func(i, j int) bool { return decls[i].prefix < decls[j].prefix })
	}
	if len(attrs) > 1 {
		sort.Slice(attrs, func(i, j int) bool {
			if attrs[i].uri != attrs[j].uri {
				return attrs[i].uri < attrs[j].uri
			}
			return attrs[i].local < attrs[j].local
		})
	}
	childRendered := rendered
	if len(decls) > 0 {
		childRendered = make(map[string]string, len(rendered)+len(decls))
		for k, v := range rendered {
			childRendered[k] = v
		}
		for _, d := range decls {
			childRendered[d.prefix] = d.uri
		}
	}

	b := w.buf
	b.WriteByte('<')
	writeQName(b, el.Space, el.Tag)
	for _, d := range decls {
		if d.prefix == "" {
			b.WriteString(` xmlns="`)
		} else {
			b.WriteString(" xmlns:")
			b.WriteString(d.prefix)
			b.WriteString(`="`)
		}
		escapeAttr(b, d.uri)
		b.WriteByte('"')
	}
	for _, a := range attrs {
		b.WriteByte(' ')
		b.WriteString(a.qname)
		b.WriteString(`="`)
		escapeAttr(b, a.value)
		b.WriteByte('"')
	}
	b.WriteByte('>')
	for _, c := range el.Child {
		switch t := c.(type) {
		case *etree.Element:
			if t == w.skip {
				continue
			}
			w.element(t, scope, childRendered)
		case *etree.CharData:
			escapeText(b, t.Data)
		}
	}
	b.WriteString("</")
	writeQName(b, el.Space, el.Tag)
	b.WriteByte('>')
}

func writeQName(b *bytes.Buffer, space, local string) {
	if space != "" {
		b.WriteString(space)
		b.WriteByte(':')
	}
	b.WriteString(local)
}

func escapeText(b *bytes.Buffer, s string) {
	if !strings.ContainsAny(s, "&<>\r") {
		b.WriteString(s)
		return
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '\r':
			b.WriteString("&#xD;")
		default:
			b.WriteByte(c)
		}
	}
}

func escapeAttr(b *bytes.Buffer, s string) {
	if !strings.ContainsAny(s, "&<\"\t\n\r") {
		b.WriteString(s)
		return
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '"':
			b.WriteString("&quot;")
		case '\t':
			b.WriteString("&#x9;")
		case '\n':
			b.WriteString("&#xA;")
		case '\r':
			b.WriteString("&#xD;")
		default:
			b.WriteByte(c)
		}
	}
}

// canonicalizer adapts excC14N to goxmldsig's Canonicalizer interface, so the
// goxmldsig SigningContext uses it for both the reference digest and the
// SignedInfo. It reports the exclusive C14N algorithm URI it implements.
type canonicalizer struct{}

var _ dsig.Canonicalizer = canonicalizer{}

func (canonicalizer) Canonicalize(el *etree.Element) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(4096)
	excC14N(&b, el, nil)
	return b.Bytes(), nil
}

func (canonicalizer) Algorithm() dsig.AlgorithmID { return dsig.CanonicalXML10ExclusiveAlgorithmId }
