package soap

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/aortagw/aortagw/internal/xmlsafe"
)

// Namespace and well-known names used by AORTA (aorta-uzi.md sections 2 and 6).
const (
	// NS is the SOAP 1.1 envelope namespace; SOAP 1.2 is refused.
	NS = "http://schemas.xmlsoap.org/soap/envelope/"
	// NS12 is the SOAP 1.2 envelope namespace, recognised only to refuse it clearly.
	NS12 = "http://www.w3.org/2003/05/soap-envelope"
	// NSWSSE is the WS-Security 1.0 secext namespace.
	NSWSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
	// NSSAML is the SAML 2.0 assertion namespace.
	NSSAML = "urn:oasis:names:tc:SAML:2.0:assertion"
	// ActorZIM is the soap:actor of the Security header the LSP (ZIM) processes.
	ActorZIM = "http://www.aortarelease.nl/actor/zim"

	nsXML   = "http://www.w3.org/XML/1998/namespace"
	nsXMLNS = "http://www.w3.org/2000/xmlns/"
)

// Limits caps the size and shape of an envelope; it is xmlsafe.Limits. Zero
// fields take the xmlsafe.MessageLimits values.
type Limits = xmlsafe.Limits

func withDefaults(l Limits) Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = xmlsafe.MessageLimits.MaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = xmlsafe.MessageLimits.MaxDepth
	}
	if l.MaxAttrs <= 0 {
		l.MaxAttrs = xmlsafe.MessageLimits.MaxAttrs
	}
	return l
}

// mapSafe maps a refusal of the shared strict pre-parser (xmlsafe) onto this
// package's errors (the original error stays wrapped). xmlsafe already
// applies the mattermost round-trip check to every start tag that is not a
// plain ASCII QName; running the full round-trip validator over the whole
// envelope as well cost 20 times the rest of the parse (3.4 MB of
// allocations for a 15 KB envelope) without refusing anything more.
func mapSafe(err error) error {
	if err == nil {
		return nil
	}
	kind := ErrMalformed
	switch {
	case errors.Is(err, xmlsafe.ErrTooLarge):
		kind = ErrTooLarge
	case errors.Is(err, xmlsafe.ErrTooDeep):
		kind = ErrTooDeep
	case errors.Is(err, xmlsafe.ErrDoctype), errors.Is(err, xmlsafe.ErrProcInst), errors.Is(err, xmlsafe.ErrTooManyAttrs):
		kind = ErrForbidden
	}
	return fmt.Errorf("%w: %w", kind, err)
}

// maxScope caps the namespace declarations in scope at one element, so that
// copying scopes stays cheap.
const maxScope = 128

// element is one start tag as seen by the scanner, with resolved names.
type element struct {
	space, local string // resolved namespace URI and local name
	prefix       string // prefix as written ("" for none)
	attrs        []attr
	start        int // offset of '<'
	tagEnd       int // offset just past the start tag ('>' or "/>")
	selfClosing  bool
	depth        int // root = 1
	scope        map[string]string
}

type attr struct {
	space, local, value string
}

func (e *element) attr(space, local string) (string, bool) {
	for _, a := range e.attrs {
		if a.space == space && a.local == local {
			return a.value, true
		}
	}
	return "", false
}

// event is what the scanner reports to its visitor.
type event int

const (
	evStart event = iota
	evEnd
	evText // non-whitespace character data
)

// scanner walks a document with strict XML and namespace rules and reports
// byte offsets. It never builds a tree. It rides on xmlsafe.Walk: the strict
// pre-parse and this scan are one tokenising pass.
type scanner struct {
	b     []byte
	l     Limits
	stack []*element
	root  bool // a root element was seen
	first bool // the next token is the first one
	// raw, when set, sees every token after the scanner accepted it, with
	// the element depth it belongs to (start: the new element's; end: the
	// closing element's; other tokens: the enclosing element's).
	raw func(tok xml.Token, depth int, el *element)
}

func newScanner(b []byte, l Limits) *scanner {
	return &scanner{b: b, l: l, first: true}
}

// precheck refuses what a strict SOAP receiver refuses before tokenising:
// size, invalid UTF-8, DOCTYPE (entities) and processing instructions.
func precheck(b []byte, l Limits) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty document", ErrMalformed)
	}
	if len(b) > l.MaxBytes {
		return fmt.Errorf("%w (size=%d max=%d)", ErrTooLarge, len(b), l.MaxBytes)
	}
	if !utf8.Valid(b) {
		return fmt.Errorf("%w: invalid utf-8", ErrMalformed)
	}
	return nil
}

// check runs the strict pre-parser (xmlsafe) and this scanner in one pass,
// calling visit for each start tag, end tag and non-whitespace text. For
// evEnd, end is the offset just past the end tag and inner is the offset
// where the end tag begins. A refusal by the pre-parser takes precedence
// over one of the scanner or visit (the same verdict as running them one
// after the other).
func (s *scanner) check(visit func(ev event, el *element, inner, end int) error) error {
	var scanErr error
	err := xmlsafe.Walk(s.b, s.l, func(tok xml.Token, off, end int) error {
		scanErr = s.token(tok, off, end, visit)
		return scanErr
	})
	if err != nil {
		if scanErr != nil && err == scanErr { //nolint:errorlint // identity: the scanner's own error
			return err
		}
		return mapSafe(err)
	}
	if err := precheck(s.b, s.l); err != nil {
		return err
	}
	if len(s.stack) != 0 || !s.root {
		return fmt.Errorf("%w: unexpected end of document", ErrMalformed)
	}
	return nil
}

// token handles one token at byte offsets [off, end).
func (s *scanner) token(tok xml.Token, off, end int, visit func(ev event, el *element, inner, end int) error) error {
	first := s.first
	s.first = false
	switch t := tok.(type) {
	case xml.ProcInst:
		if t.Target != "xml" || !first || off != 0 {
			return fmt.Errorf("%w: processing instruction (target=%s)", ErrForbidden, t.Target)
		}
	case xml.Directive:
		return fmt.Errorf("%w: DOCTYPE or other directive", ErrForbidden)
	case xml.Comment:
		// Comments are allowed and skipped; they never hide structure
		// because the tokenizer, not a string search, finds elements.
	case xml.CharData:
		if len(s.stack) == 0 {
			if len(bytes.TrimSpace(t)) != 0 {
				return fmt.Errorf("%w: text outside the root element", ErrMalformed)
			}
			return nil
		}
		if len(bytes.TrimSpace(t)) != 0 {
			if err := visit(evText, s.stack[len(s.stack)-1], off, off); err != nil {
				return err
			}
		}
		if s.raw != nil {
			s.raw(tok, len(s.stack), s.stack[len(s.stack)-1])
		}
	case xml.StartElement:
		if len(s.stack) == 0 {
			if s.root {
				return fmt.Errorf("%w: more than one root element", ErrMalformed)
			}
			s.root = true
		}
		el, err := s.start(t, off, end)
		if err != nil {
			return err
		}
		if err := visit(evStart, el, 0, 0); err != nil {
			return err
		}
		if s.raw != nil {
			s.raw(tok, el.depth, el)
		}
	case xml.EndElement:
		if len(s.stack) == 0 {
			return fmt.Errorf("%w: unexpected end tag", ErrMalformed)
		}
		top := s.stack[len(s.stack)-1]
		if t.Name.Space != top.prefix || t.Name.Local != top.local {
			return fmt.Errorf("%w: end tag does not match (got=%s want=%s)", ErrMalformed, t.Name.Local, top.local)
		}
		inner := off
		if top.selfClosing {
			inner = top.tagEnd
		}
		if s.raw != nil {
			s.raw(tok, top.depth, top)
		}
		if err := visit(evEnd, top, inner, end); err != nil {
			return err
		}
		s.stack = s.stack[:len(s.stack)-1]
	}
	return nil
}

func (s *scanner) start(t xml.StartElement, off, tagEnd int) (*element, error) {
	depth := len(s.stack) + 1
	if depth > s.l.MaxDepth {
		return nil, fmt.Errorf("%w (depth>%d)", ErrTooDeep, s.l.MaxDepth)
	}
	if len(t.Attr) > s.l.MaxAttrs {
		return nil, fmt.Errorf("%w: too many attributes (n=%d max=%d)", ErrForbidden, len(t.Attr), s.l.MaxAttrs)
	}
	var parent map[string]string
	if len(s.stack) > 0 {
		parent = s.stack[len(s.stack)-1].scope
	}
	scope := parent
	copied := false
	declared := map[string]bool{}
	// Namespace declarations first.
	for _, a := range t.Attr {
		var prefix string
		switch {
		case a.Name.Space == "xmlns":
			prefix = a.Name.Local
			if prefix == "xml" || prefix == "xmlns" {
				return nil, fmt.Errorf("%w: reserved prefix declared (prefix=%s)", ErrMalformed, prefix)
			}
			if a.Value == "" {
				return nil, fmt.Errorf("%w: empty namespace for prefix (prefix=%s)", ErrMalformed, prefix)
			}
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			prefix = ""
		default:
			continue
		}
		if a.Value == nsXML || a.Value == nsXMLNS {
			return nil, fmt.Errorf("%w: reserved namespace bound", ErrMalformed)
		}
		if declared[prefix] {
			return nil, fmt.Errorf("%w: namespace declared twice (prefix=%s)", ErrMalformed, prefix)
		}
		declared[prefix] = true
		if !copied {
			scope = make(map[string]string, len(parent)+2)
			for k, v := range parent {
				scope[k] = v
			}
			copied = true
		}
		scope[prefix] = a.Value
		if len(scope) > maxScope {
			return nil, fmt.Errorf("%w: too many namespace declarations in scope (max=%d)", ErrForbidden, maxScope)
		}
	}
	resolve := func(prefix string, isAttr bool) (string, error) {
		if prefix == "" {
			if isAttr {
				return "", nil
			}
			return scope[""], nil
		}
		if prefix == "xml" {
			return nsXML, nil
		}
		ns, ok := scope[prefix]
		if !ok || ns == "" {
			return "", fmt.Errorf("%w: undeclared prefix (prefix=%s)", ErrMalformed, prefix)
		}
		return ns, nil
	}
	space, err := resolve(t.Name.Space, false)
	if err != nil {
		return nil, err
	}
	el := &element{space: space, local: t.Name.Local, prefix: t.Name.Space, start: off, depth: depth, scope: scope}
	el.tagEnd = tagEnd
	el.selfClosing = bytes.HasSuffix(s.b[off:el.tagEnd], []byte("/>"))
	seen := make(map[[2]string]bool, len(t.Attr))
	for _, a := range t.Attr {
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			continue
		}
		ns, err := resolve(a.Name.Space, true)
		if err != nil {
			return nil, err
		}
		key := [2]string{ns, a.Name.Local}
		if seen[key] {
			return nil, fmt.Errorf("%w: duplicate attribute (name=%s)", ErrMalformed, a.Name.Local)
		}
		seen[key] = true
		el.attrs = append(el.attrs, attr{space: ns, local: a.Name.Local, value: a.Value})
	}
	s.stack = append(s.stack, el)
	return el, nil
}
