// Package xmlsafe is the strict pre-parser that runs before any XML library sees
// untrusted input (security.md section 7, invariant 1).
//
// Check makes one streaming pass over the bytes with encoding/xml's RawToken and
// its own namespace tracking. It refuses: input over Limits.MaxBytes, input that
// is not valid UTF-8 (or starts with a byte-order mark), an XML declaration that
// names an encoding other than UTF-8 or a version other than 1.0, any DOCTYPE or
// other directive (so no DTD, no entity declarations), any processing
// instruction other than the leading XML declaration, text outside the root,
// zero or several root elements, duplicate attributes (also the same namespace
// URI + local name written with two different prefixes, and duplicate namespace
// declarations), undeclared or malformed prefixes, mismatched end tags, element
// nesting deeper than Limits.MaxDepth and more than Limits.MaxAttrs attributes on
// one element. Comments and CDATA are allowed: callers that read signed content
// read it from the canonical, verified bytes, where they are gone or folded.
//
// Check also runs mattermost/xml-roundtrip-validator's CheckToken in the same
// pass on every start element whose element or attribute names are not plain
// ASCII QNames (prefix:local or local, letters, digits, '.', '-', '_'); end
// elements must repeat their start element's raw name, which Check enforces.
// Plain names, with their prefixes declared and no duplicates (both enforced
// here), round-trip stably; the per-token encoder/decoder pair of CheckToken
// costs about 4x an etree parse, so it is spent only where it can find something (names and prefixes are where encoding/xml
// round trips were unstable, CVE-2020-29509/29510/29511). Character data and
// comments are not round-tripped: they carry no names, and signed content is
// read from canonical bytes anyway; directives and processing instructions are
// refused outright.
//
// Parse runs Check, then etree with safe ReadSettings (no charset conversion,
// strict, depth cap).
//
// Everything here is stateless and safe for concurrent use. Nothing is cached.
package xmlsafe

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/beevik/etree"
	validator "github.com/mattermost/xml-roundtrip-validator"
)

// Limits caps the size and shape of a document. A zero field means "use the
// TokenLimits value" so that a zero Limits is strict, never unlimited.
type Limits struct{ MaxBytes, MaxDepth, MaxAttrs int }

// Named presets.
var (
	// TokenLimits suits one SAML token (AORTA tokens are 3-8 KiB).
	TokenLimits = Limits{MaxBytes: 64 << 10, MaxDepth: 32, MaxAttrs: 32}
	// MessageLimits suits a whole SOAP message with three tokens and an HL7v3 body.
	MessageLimits = Limits{MaxBytes: 4 << 20, MaxDepth: 64, MaxAttrs: 64}
)

func (l Limits) orDefault() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = TokenLimits.MaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = TokenLimits.MaxDepth
	}
	if l.MaxAttrs <= 0 {
		l.MaxAttrs = TokenLimits.MaxAttrs
	}
	return l
}

// Sentinel errors; every error returned by Check wraps ErrUnsafe and one of these.
var (
	// ErrUnsafe is wrapped by every refusal of this package.
	ErrUnsafe           = errors.New("xmlsafe: unsafe or malformed xml")
	ErrTooLarge         = errors.New("xmlsafe: document too large")
	ErrNotUTF8          = errors.New("xmlsafe: not valid utf-8")
	ErrEncoding         = errors.New("xmlsafe: encoding other than utf-8 declared")
	ErrDoctype          = errors.New("xmlsafe: doctype or directive not allowed")
	ErrProcInst         = errors.New("xmlsafe: processing instruction not allowed")
	ErrRoot             = errors.New("xmlsafe: document must have exactly one root element")
	ErrTextOutsideRoot  = errors.New("xmlsafe: text outside the root element")
	ErrDuplicateAttr    = errors.New("xmlsafe: duplicate attribute")
	ErrUndeclaredPrefix = errors.New("xmlsafe: undeclared namespace prefix")
	ErrBadName          = errors.New("xmlsafe: malformed name or namespace declaration")
	ErrTooDeep          = errors.New("xmlsafe: nesting too deep")
	ErrTooManyAttrs     = errors.New("xmlsafe: too many attributes")
	ErrSyntax           = errors.New("xmlsafe: not well-formed")
	ErrRoundTrip        = errors.New("xmlsafe: unstable under encoding/xml round trip")
)

func fail(kind error, format string, args ...any) error {
	msg := kind.Error()
	if format != "" {
		msg += " (" + fmt.Sprintf(format, args...) + ")"
	}
	return &checkError{msg: msg, kind: kind}
}

type checkError struct {
	msg  string
	kind error
}

func (e *checkError) Error() string { return e.msg }
func (e *checkError) Is(target error) bool {
	return target == ErrUnsafe || target == e.kind
}

const (
	nsXML   = "http://www.w3.org/XML/1998/namespace"
	nsXMLNS = "http://www.w3.org/2000/xmlns/"
)

type binding struct {
	prefix, uri string
	depth       int
}

// Check applies the pre-parse rules listed in the package comment. It returns
// nil or an error wrapping ErrUnsafe and a specific sentinel.
func Check(b []byte, l Limits) error {
	return Walk(b, l, nil)
}

// Walk is Check that also hands every token, with its byte offsets
// [start, end) in b, to visit (when not nil), so that a caller can build its
// own view of the document in the same pass instead of tokenising it again.
// visit sees a start or end element only after Check's rules for it passed;
// the token is only valid during the call (RawToken semantics: names are not
// namespace-resolved). Check's verdict on the whole document takes
// precedence: when visit returns an error, Walk stops calling visit but
// finishes checking, and returns the Check error if there is one, else the
// visit error unchanged.
func Walk(b []byte, l Limits, visit func(tok xml.Token, start, end int) error) error {
	l = l.orDefault()
	if len(b) > l.MaxBytes {
		return fail(ErrTooLarge, "size=%d max=%d", len(b), l.MaxBytes)
	}
	if bytes.HasPrefix(b, []byte{0xEF, 0xBB, 0xBF}) {
		return fail(ErrEncoding, "byte-order mark")
	}
	if !utf8.Valid(b) {
		return fail(ErrNotUTF8, "")
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	d.CharsetReader = func(label string, _ io.Reader) (io.Reader, error) {
		return nil, fail(ErrEncoding, "encoding=%q", label)
	}
	var (
		stack    []xml.Name // raw names of open elements
		ns       []binding  // in-scope declarations, innermost last
		roots    int
		nTokens  int
		seenAttr = make(map[[2]string]struct{}, 8)
		lastTok  xml.Token // handed to visit once its checks passed
		lastOff  int64
	)
	lookup := func(prefix string) (string, bool) {
		switch prefix {
		case "xml":
			return nsXML, true
		case "xmlns":
			return "", false
		}
		for i := len(ns) - 1; i >= 0; i-- {
			if ns[i].prefix == prefix {
				return ns[i].uri, ns[i].uri != "" || prefix == ""
			}
		}
		return "", prefix == ""
	}
	var visitErr error
	for {
		if visit != nil && nTokens > 0 && visitErr == nil {
			visitErr = visit(lastTok, int(lastOff), int(d.InputOffset()))
		}
		off := d.InputOffset()
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			var ce *checkError
			if errors.As(err, &ce) {
				return ce
			}
			return fail(ErrSyntax, "offset=%d: %v", d.InputOffset(), err)
		}
		lastTok, lastOff = tok, off
		nTokens++
		switch t := tok.(type) {
		case xml.ProcInst:
			if t.Target != "xml" || off != 0 || nTokens != 1 {
				return fail(ErrProcInst, "target=%q", t.Target)
			}
			if err := checkDecl(string(t.Inst)); err != nil {
				return err
			}
		case xml.Directive:
			return fail(ErrDoctype, "")
		case xml.CharData:
			if len(stack) == 0 && len(bytes.TrimLeft(t, " \t\r\n")) != 0 {
				return fail(ErrTextOutsideRoot, "")
			}
		case xml.Comment:
			// allowed; see package comment
		case xml.StartElement:
			if len(stack) == 0 {
				roots++
				if roots > 1 {
					return fail(ErrRoot, "second root element %q", t.Name.Local)
				}
			}
			depth := len(stack) + 1
			if depth > l.MaxDepth {
				return fail(ErrTooDeep, "max=%d", l.MaxDepth)
			}
			if len(t.Attr) > l.MaxAttrs {
				return fail(ErrTooManyAttrs, "count=%d max=%d", len(t.Attr), l.MaxAttrs)
			}
			if !goodName(t.Name) {
				return fail(ErrBadName, "element %q", rawName(t.Name))
			}
			// Namespace declarations first.
			for _, a := range t.Attr {
				if !goodName(a.Name) {
					return fail(ErrBadName, "attribute %q", rawName(a.Name))
				}
				switch {
				case a.Name.Space == "" && a.Name.Local == "xmlns":
					if a.Value == nsXML || a.Value == nsXMLNS {
						return fail(ErrBadName, "default namespace %q", a.Value)
					}
					ns = append(ns, binding{"", a.Value, depth})
				case a.Name.Space == "xmlns":
					p := a.Name.Local
					if p == "xmlns" || a.Value == nsXMLNS || (p == "xml") != (a.Value == nsXML) {
						return fail(ErrBadName, "declaration xmlns:%s", p)
					}
					if a.Value == "" {
						return fail(ErrBadName, "empty namespace for prefix %q", p)
					}
					ns = append(ns, binding{p, a.Value, depth})
				}
			}
			if _, ok := lookup(t.Name.Space); !ok {
				return fail(ErrUndeclaredPrefix, "prefix=%q", t.Name.Space)
			}
			clear(seenAttr)
			for _, a := range t.Attr {
				var key [2]string
				switch {
				case a.Name.Space == "" && a.Name.Local == "xmlns":
					key = [2]string{nsXMLNS, ""}
				case a.Name.Space == "xmlns":
					key = [2]string{nsXMLNS, a.Name.Local}
				case a.Name.Space == "":
					key = [2]string{"", a.Name.Local}
				default:
					uri, ok := lookup(a.Name.Space)
					if !ok || uri == "" {
						return fail(ErrUndeclaredPrefix, "attribute prefix=%q", a.Name.Space)
					}
					key = [2]string{uri, a.Name.Local}
				}
				if _, dup := seenAttr[key]; dup {
					return fail(ErrDuplicateAttr, "attribute %q", rawName(a.Name))
				}
				seenAttr[key] = struct{}{}
			}
			if !plainTag(t) {
				if err := validator.CheckToken(t); err != nil {
					return fail(ErrRoundTrip, "element %q: %v", rawName(t.Name), err)
				}
			}
			stack = append(stack, t.Name)
		case xml.EndElement:
			if len(stack) == 0 || stack[len(stack)-1] != t.Name {
				return fail(ErrSyntax, "unexpected end tag %q", rawName(t.Name))
			}
			depth := len(stack)
			stack = stack[:len(stack)-1]
			for len(ns) > 0 && ns[len(ns)-1].depth == depth {
				ns = ns[:len(ns)-1]
			}
		}
	}
	if len(stack) != 0 {
		return fail(ErrSyntax, "unclosed element %q", rawName(stack[len(stack)-1]))
	}
	if roots != 1 {
		return fail(ErrRoot, "no root element")
	}
	return visitErr
}

// plainTag reports whether every name in the start tag is a plain ASCII QName.
func plainTag(t xml.StartElement) bool {
	if !plainName(t.Name) {
		return false
	}
	for _, a := range t.Attr {
		if !plainName(a.Name) {
			return false
		}
	}
	return true
}

func plainName(n xml.Name) bool {
	return plainNCName(n.Local) && (n.Space == "" || plainNCName(n.Space))
}

func plainNCName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

func rawName(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}

// goodName refuses the names encoding/xml lets through but that are not
// namespace-well-formed: an empty local part or prefix, or a second colon.
func goodName(n xml.Name) bool {
	if n.Local == "" || strings.IndexByte(n.Local, ':') >= 0 {
		return false
	}
	return !strings.HasPrefix(n.Space, ":") && strings.IndexByte(n.Space, ':') < 0
}

// checkDecl validates the pseudo-attributes of the XML declaration.
func checkDecl(inst string) error {
	for _, name := range []string{"version", "encoding", "standalone"} {
		v, ok := pseudoAttr(inst, name)
		if !ok {
			continue
		}
		switch name {
		case "version":
			if v != "1.0" {
				return fail(ErrSyntax, "xml version=%q", v)
			}
		case "encoding":
			if !strings.EqualFold(v, "utf-8") {
				return fail(ErrEncoding, "encoding=%q", v)
			}
		}
	}
	return nil
}

func pseudoAttr(s, name string) (string, bool) {
	i := strings.Index(s, name)
	if i < 0 {
		return "", false
	}
	s = strings.TrimLeft(s[i+len(name):], " \t\r\n")
	if !strings.HasPrefix(s, "=") {
		return "", false
	}
	s = strings.TrimLeft(s[1:], " \t\r\n")
	if s == "" || (s[0] != '"' && s[0] != '\'') {
		return "", false
	}
	q := s[0]
	j := strings.IndexByte(s[1:], q)
	if j < 0 {
		return "", false
	}
	return s[1 : 1+j], true
}

// Parse checks b (round-trip validation included) and returns the etree document.
// The document belongs to the caller (one per request; see CONVENTIONS G7).
func Parse(b []byte, l Limits) (*etree.Document, error) {
	l = l.orDefault()
	if err := Check(b, l); err != nil {
		return nil, err
	}
	doc := etree.NewDocument()
	doc.ReadSettings = ReadSettings(l)
	if err := doc.ReadFromBytes(b); err != nil {
		return nil, fail(ErrSyntax, "%v", err)
	}
	return doc, nil
}

// ReadSettings returns the etree settings Parse uses: no charset conversion
// (anything but UTF-8 is refused), strict parsing, CDATA folded into text,
// duplicate attributes not preserved (Check already refused them) and the
// depth cap of l.
func ReadSettings(l Limits) etree.ReadSettings {
	l = l.orDefault()
	return etree.ReadSettings{
		CharsetReader: func(label string, _ io.Reader) (io.Reader, error) {
			return nil, fail(ErrEncoding, "encoding=%q", label)
		},
		MaxDepth: l.MaxDepth,
	}
}

// IsNCName is a conservative NCName check for names and prefixes we accept
// from untrusted input: ASCII letters, digits, '_', '-' and '.', not starting
// with a digit, '-' or '.', at most 128 bytes.
func IsNCName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '_':
		case (r >= '0' && r <= '9') || r == '-' || r == '.':
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}
