package sbvz

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aortagw/aortagw/internal/xmlsafe"
)

// Namespaces and SOAP actions.
const (
	// NSSoap is the SOAP 1.1 envelope namespace.
	NSSoap = "http://schemas.xmlsoap.org/soap/envelope/"
	// NSVerify is the OpvragenVerifieren namespace (versioned by date).
	NSVerify = "http://CIBG.SBV.Interface.XIS.Webservice/mrt21"
	// NSPersonData is the OpvragenPersoonsgegevens namespace.
	NSPersonData = "http://CIBG.SBV.Interface.XIS.Webservice/dec14"
	// NSDocument is OUR PROPOSAL for the WID check until CIBG's WSDL is in hand.
	NSDocument = "urn:aortagw:proposal:sbvz:controleidentiteitsdocument:2026-11"
	// NSAppointment is OUR PROPOSAL for the initial-fill afspraak operations.
	NSAppointment = "urn:aortagw:proposal:sbvz:initielevulling:2026-11"

	// ActionVerify and the other Action constants are the SOAPAction values
	// (sent quoted).
	ActionVerify            = NSVerify + "/OpvragenVerifieren"
	ActionPersonData        = NSPersonData + "/OpvragenPersoonsgegevens"
	ActionDocument          = NSDocument + "/ControleIdentiteitsdocument"
	ActionCreateAppointment = NSAppointment + "/AfspraakAanmaken"
	ActionDeleteAppointment = NSAppointment + "/AfspraakVerwijderen"
)

// xml limits for everything SBV-Z (or a client, in the simulator) sends us.
const (
	defaultMaxBytes = 1 << 20
	maxDepth        = 16
	maxElements     = 2000
	maxMessages     = 20
)

var errXML = errors.New("malformed xml")

// node is a minimal, immutable-after-parse element tree. Only what SBV-Z
// messages use is kept: namespace-resolved names, attributes without
// namespace declarations, children, and the text of leaf elements.
type node struct {
	ns, local string
	attrs     []xml.Attr
	kids      []*node
	text      string
}

// parseTree parses b strictly: size cap, UTF-8 only, no DOCTYPE or other
// directives, no processing instruction other than the XML declaration, depth
// and element caps, one root, no mixed content.
func parseTree(b []byte, maxBytes int) (*node, error) {
	if maxBytes <= 0 {
		maxBytes = defaultMaxBytes
	}
	if len(b) > maxBytes {
		return nil, fmt.Errorf("%w: %d bytes over the cap of %d", errXML, len(b), maxBytes)
	}
	// Defence in depth: the shared strict pre-parser first, then our own
	// tokenizer, which also builds the tree.
	if err := xmlsafe.Check(b, xmlsafe.Limits{MaxBytes: maxBytes, MaxDepth: maxDepth, MaxAttrs: 16}); err != nil {
		return nil, fmt.Errorf("%w: %w", errXML, err)
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	d.CharsetReader = func(label string, _ io.Reader) (io.Reader, error) {
		return nil, fmt.Errorf("%w: encoding %q not accepted (utf-8 only)", errXML, clip(label))
	}
	var (
		root  *node
		stack []*node
		count int
		first = true
	)
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errXML, err)
		}
		switch t := tok.(type) {
		case xml.ProcInst:
			if !first || t.Target != "xml" {
				return nil, fmt.Errorf("%w: processing instruction not allowed", errXML)
			}
			if enc := procInstEncoding(t.Inst); enc != "" && !strings.EqualFold(enc, "utf-8") {
				return nil, fmt.Errorf("%w: encoding %q not accepted (utf-8 only)", errXML, clip(enc))
			}
		case xml.Directive:
			return nil, fmt.Errorf("%w: doctype or directive not allowed", errXML)
		case xml.Comment:
		case xml.StartElement:
			if root != nil && len(stack) == 0 {
				return nil, fmt.Errorf("%w: more than one root element", errXML)
			}
			count++
			if count > maxElements || len(stack) >= maxDepth {
				return nil, fmt.Errorf("%w: too many or too deeply nested elements", errXML)
			}
			n := &node{local: t.Name.Local, ns: t.Name.Space}
			n.attrs = t.Attr
			if len(stack) == 0 {
				root = n
			} else {
				p := stack[len(stack)-1]
				if strings.TrimSpace(p.text) != "" {
					return nil, fmt.Errorf("%w: mixed content in %s", errXML, p.local)
				}
				p.text = ""
				p.kids = append(p.kids, n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			if len(stack) == 0 {
				return nil, fmt.Errorf("%w: unbalanced end element", errXML)
			}
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) == 0 {
				if len(bytes.TrimSpace(t)) != 0 {
					return nil, fmt.Errorf("%w: text outside the root element", errXML)
				}
				continue
			}
			p := stack[len(stack)-1]
			if len(p.kids) > 0 {
				if len(bytes.TrimSpace(t)) != 0 {
					return nil, fmt.Errorf("%w: mixed content in %s", errXML, p.local)
				}
				continue
			}
			p.text += string(t)
		}
		first = false
	}
	if root == nil || len(stack) != 0 {
		return nil, fmt.Errorf("%w: no complete root element", errXML)
	}
	if err := resolve(root, nil); err != nil {
		return nil, err
	}
	return root, nil
}

func procInstEncoding(inst []byte) string {
	s := string(inst)
	i := strings.Index(s, "encoding=")
	if i < 0 {
		return ""
	}
	s = s[i+len("encoding="):]
	if len(s) < 2 {
		return "?"
	}
	q := s[0]
	j := strings.IndexByte(s[1:], q)
	if (q != '"' && q != '\'') || j < 0 {
		return "?"
	}
	return s[1 : 1+j]
}

// resolve replaces raw prefixes by namespace URIs (RawToken does not), checks
// every prefix is declared and strips namespace declarations from attrs.
func resolve(n *node, scope map[string]string) error {
	local := scope
	copied := false
	var attrs []xml.Attr
	seen := map[xml.Name]bool{}
	for _, a := range n.attrs {
		if seen[a.Name] {
			return fmt.Errorf("%w: duplicate attribute %s", errXML, a.Name.Local)
		}
		seen[a.Name] = true
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			if !copied {
				local = make(map[string]string, len(scope)+1)
				for k, v := range scope {
					local[k] = v
				}
				copied = true
			}
			if a.Name.Space == "" {
				local[""] = a.Value
			} else {
				if a.Value == "" {
					return fmt.Errorf("%w: empty namespace for prefix %s", errXML, a.Name.Local)
				}
				local[a.Name.Local] = a.Value
			}
			continue
		}
		attrs = append(attrs, a)
	}
	for i, a := range attrs {
		if a.Name.Space == "" {
			continue
		}
		if a.Name.Space == "xml" {
			continue
		}
		uri, ok := local[a.Name.Space]
		if !ok {
			return fmt.Errorf("%w: undeclared prefix %s", errXML, a.Name.Space)
		}
		attrs[i].Name.Space = uri
	}
	n.attrs = attrs
	if n.ns != "" {
		uri, ok := local[n.ns]
		if !ok {
			return fmt.Errorf("%w: undeclared prefix %s", errXML, n.ns)
		}
		n.ns = uri
	} else {
		n.ns = local[""]
	}
	for _, k := range n.kids {
		if err := resolve(k, local); err != nil {
			return err
		}
	}
	return nil
}

func (n *node) is(ns, local string) bool { return n != nil && n.ns == ns && n.local == local }

// attr returns an unqualified attribute.
func (n *node) attr(name string) (string, bool) {
	for _, a := range n.attrs {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

// shape describes the allowed children of an element, in schema order.
type shape struct {
	ns       string
	names    []string
	repeated map[string]bool // may occur more than once
	ordered  bool            // enforce schema order
}

// check refuses unknown, foreign-namespace and duplicate children and, when
// ordered, out-of-order ones. It returns the children by name.
func (s shape) check(n *node) (map[string][]*node, error) {
	idx := make(map[string]int, len(s.names))
	for i, nm := range s.names {
		idx[nm] = i
	}
	out := make(map[string][]*node, len(n.kids))
	last := -1
	for _, k := range n.kids {
		i, ok := idx[k.local]
		if !ok || k.ns != s.ns {
			return nil, fmt.Errorf("%w: unexpected element %s in %s", errXML, clip(k.local), n.local)
		}
		if len(out[k.local]) > 0 && !s.repeated[k.local] {
			return nil, fmt.Errorf("%w: duplicate element %s in %s", errXML, k.local, n.local)
		}
		if s.ordered && i < last {
			return nil, fmt.Errorf("%w: element %s out of order in %s", errXML, k.local, n.local)
		}
		last = i
		out[k.local] = append(out[k.local], k)
	}
	return out, nil
}

func first(m map[string][]*node, name string) *node {
	if v := m[name]; len(v) > 0 {
		return v[0]
	}
	return nil
}

// soapBody parses an envelope and returns the single element in its Body. A
// fault in the body is returned as *FaultError (with status 0).
func soapBody(b []byte, maxBytes int) (*node, error) {
	root, err := parseTree(b, maxBytes)
	if err != nil {
		return nil, err
	}
	if !root.is(NSSoap, "Envelope") {
		return nil, fmt.Errorf("%w: not a soap 1.1 envelope", errXML)
	}
	var body *node
	for _, k := range root.kids {
		switch {
		case k.is(NSSoap, "Header"):
			if body != nil {
				return nil, fmt.Errorf("%w: header after body", errXML)
			}
		case k.is(NSSoap, "Body"):
			if body != nil {
				return nil, fmt.Errorf("%w: two soap bodies", errXML)
			}
			body = k
		default:
			return nil, fmt.Errorf("%w: unexpected element %s in envelope", errXML, clip(k.local))
		}
	}
	if body == nil || len(body.kids) != 1 {
		return nil, fmt.Errorf("%w: soap body must hold exactly one element", errXML)
	}
	el := body.kids[0]
	if el.is(NSSoap, "Fault") {
		f := &FaultError{}
		for _, k := range el.kids {
			switch k.local {
			case "faultcode":
				f.Code = strings.TrimSpace(k.text)
			case "faultstring":
				f.String = clipN(strings.TrimSpace(k.text), 200)
			}
		}
		if f.Code == "" {
			return nil, fmt.Errorf("%w: soap fault without faultcode", errXML)
		}
		return nil, f
	}
	return el, nil
}
