package hl7

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"sort"
	"strings"

	"github.com/aortagw/aortagw/internal/xmlsafe"
)

// node is a minimal read-only element tree: resolved names, unqualified
// attributes, children and direct text. It exists so reading never touches
// a mutable shared tree (etree) and never re-serialises.
type node struct {
	space, local string
	attrs        map[string]string // unqualified attributes only
	kids         []*node
	text         strings.Builder
}

const maxNodes = 200_000

// parseTree checks body with xmlsafe (inside a synthetic wrapper that
// declares scope) and returns its single element.
func parseTree(body []byte, scope map[string]string, l xmlsafe.Limits) (*node, error) {
	if l.MaxBytes <= 0 {
		l = xmlsafe.MessageLimits
	}
	if len(body) > l.MaxBytes {
		return nil, fmt.Errorf("%w (size=%d max=%d)", ErrTooLarge, len(body), l.MaxBytes)
	}
	var w bytes.Buffer
	w.Grow(len(body) + 256)
	w.WriteString("<w")
	prefixes := make([]string, 0, len(scope))
	for p := range scope {
		prefixes = append(prefixes, p)
	}
	sort.Strings(prefixes)
	for _, p := range prefixes {
		uri := scope[p]
		if p != "" && !xmlsafe.IsNCName(p) {
			return nil, fmt.Errorf("%w: bad prefix in scope (prefix=%q)", ErrMalformed, p)
		}
		if p == "" {
			w.WriteString(` xmlns="`)
		} else {
			w.WriteString(` xmlns:` + p + `="`)
		}
		_ = xml.EscapeText(&w, []byte(uri))
		w.WriteString(`"`)
	}
	w.WriteString(">")
	w.Write(body)
	w.WriteString("</w>")
	wl := l
	wl.MaxBytes = w.Len()
	wl.MaxDepth = l.MaxDepth + 1
	// One pass: the strict pre-parser tokenises, the tree is built from its
	// tokens (raw names, resolved here against the declarations in scope).
	tb := newTreeBuilder(nil)
	var buildErr error
	if err := xmlsafe.Walk(w.Bytes(), wl, func(tok xml.Token, _, _ int) error {
		buildErr = tb.token(tok)
		return buildErr
	}); err != nil {
		if buildErr != nil && err == buildErr { //nolint:errorlint // identity: the builder's own error
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return tb.result()
}

// treeBuilder builds the node tree from raw tokens (names as written,
// resolved against the namespace declarations it tracks). Its first level
// is a wrapper: the synthetic <w> of parseTree, or a virtual one holding the
// scope given to newTreeBuilder.
type treeBuilder struct {
	stack  []*node
	scopes []map[string]string // in-scope prefix -> namespace, per open element
	root   *node
	n      int
}

// newTreeBuilder starts a builder; a non-nil scope means the wrapper level
// is virtual (already open) with that scope.
func newTreeBuilder(scope map[string]string) *treeBuilder {
	tb := &treeBuilder{}
	if scope != nil {
		tb.stack = []*node{{}}
		tb.scopes = []map[string]string{scope}
	}
	return tb
}

func (tb *treeBuilder) token(tok xml.Token) error {
	switch t := tok.(type) {
	case xml.StartElement:
		tb.n++
		if tb.n > maxNodes {
			return fmt.Errorf("%w: too many elements", ErrTooLarge)
		}
		var sc map[string]string
		if len(tb.scopes) > 0 {
			sc = tb.scopes[len(tb.scopes)-1]
		}
		copied := false
		for _, a := range t.Attr {
			var prefix string
			switch {
			case a.Name.Space == "xmlns":
				prefix = a.Name.Local
			case a.Name.Space == "" && a.Name.Local == "xmlns":
				prefix = ""
			default:
				continue
			}
			if !copied {
				nsc := make(map[string]string, len(sc)+2)
				for k, v := range sc {
					nsc[k] = v
				}
				sc, copied = nsc, true
			}
			sc[prefix] = a.Value
		}
		tb.scopes = append(tb.scopes, sc)
		space := sc[t.Name.Space]
		if t.Name.Space == "xml" {
			space = "http://www.w3.org/XML/1998/namespace"
		}
		el := &node{space: space, local: t.Name.Local}
		for _, a := range t.Attr {
			if a.Name.Space == "" && a.Name.Local != "xmlns" {
				if el.attrs == nil {
					el.attrs = make(map[string]string, len(t.Attr))
				}
				el.attrs[a.Name.Local] = a.Value
			}
		}
		switch len(tb.stack) {
		case 0: // the wrapper
		case 1:
			if tb.root != nil {
				return fmt.Errorf("%w: more than one element", ErrMalformed)
			}
			tb.root = el
		default:
			p := tb.stack[len(tb.stack)-1]
			p.kids = append(p.kids, el)
		}
		tb.stack = append(tb.stack, el)
	case xml.EndElement:
		if len(tb.stack) == 0 {
			return fmt.Errorf("%w: unexpected end tag", ErrMalformed)
		}
		tb.stack = tb.stack[:len(tb.stack)-1]
		tb.scopes = tb.scopes[:len(tb.scopes)-1]
	case xml.CharData:
		if len(tb.stack) == 1 && len(bytes.TrimSpace(t)) > 0 {
			return fmt.Errorf("%w: text outside the message element", ErrMalformed)
		}
		if len(tb.stack) > 1 {
			el := tb.stack[len(tb.stack)-1]
			if el.text.Len() < 64<<10 {
				el.text.Write(t)
			}
		}
	}
	return nil
}

func (tb *treeBuilder) result() (*node, error) {
	root := tb.root
	if root == nil {
		return nil, fmt.Errorf("%w: no message element", ErrMalformed)
	}
	return root, nil
}

// all returns the HL7-namespace children named local.
func (n *node) all(local string) []*node {
	if n == nil {
		return nil
	}
	var out []*node
	for _, k := range n.kids {
		if k.space == NS && k.local == local {
			out = append(out, k)
		}
	}
	return out
}

// one returns the single HL7-namespace child named local, nil when absent,
// and an error when there are several.
func (n *node) one(local string) (*node, error) {
	k := n.all(local)
	switch len(k) {
	case 0:
		return nil, nil
	case 1:
		return k[0], nil
	}
	return nil, fmt.Errorf("%w (element=%s count=%d)", ErrAmbiguous, local, len(k))
}

// path follows single children; any missing step yields nil.
func (n *node) path(locals ...string) (*node, error) {
	cur := n
	for _, l := range locals {
		if cur == nil {
			return nil, nil
		}
		next, err := cur.one(l)
		if err != nil {
			return nil, err
		}
		cur = next
	}
	return cur, nil
}

func (n *node) attr(name string) string {
	if n == nil {
		return ""
	}
	return n.attrs[name]
}

func (n *node) textValue() string {
	if n == nil {
		return ""
	}
	return strings.TrimSpace(n.text.String())
}
