// Package soap parses and builds the SOAP 1.1 envelopes AORTA uses, and
// inserts the wsse:Security header with the VGU tokens byte for byte.
//
// Contracts:
//   - SOAP 1.1 only (aorta-uzi.md section 6); a SOAP 1.2 envelope is refused
//     with ErrSOAPVersion.
//   - ParseEnvelope is strict: size, depth and attribute caps, UTF-8 only, no
//     DOCTYPE or processing instruction (the XML declaration is allowed),
//     declared prefixes, no duplicate attributes, one root, exactly one Body
//     holding exactly one element, an optional Header before it and nothing
//     else. A wsse:Security element anywhere but directly under Header, a
//     second zim Security header, SOAP envelope elements inside Header or
//     Body (other than a Body-level Fault) are refused.
//   - The message is never re-serialised. An Envelope keeps the caller's
//     bytes and byte offsets into them; Body, Header and SecurityTokens
//     return sub-slices of those bytes (do not modify them).
//   - WithSecurity splices one wsse:Security header into the original bytes;
//     the token bytes land in the output exactly as given.
//     (*Envelope).WithSecurity does the same on an envelope parsed before,
//     using its offsets (no second parse).
//   - The strict pre-parse (internal/xmlsafe) and the envelope scan are one
//     tokenising pass (xmlsafe.Walk); a pre-parse refusal takes precedence.
//
// Everything here is safe for concurrent use: Envelope is immutable after
// ParseEnvelope. The one piece of state is a bounded (4096 entries, LRU)
// process-wide set of SHA-256 hashes of token byte strings that passed the
// token check of WithSecurity; the check is a pure function of the bytes,
// so a remembered pass equals a new one, and failures are never remembered.
package soap

import (
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
)

// Errors returned by this package. Callers classify with errors.Is.
var (
	ErrMalformed          = errors.New("soap: malformed xml")
	ErrTooLarge           = errors.New("soap: envelope too large")
	ErrTooDeep            = errors.New("soap: envelope nested too deeply")
	ErrForbidden          = errors.New("soap: forbidden xml construct")
	ErrNotEnvelope        = errors.New("soap: not a soap envelope")
	ErrSOAPVersion        = errors.New("soap: only soap 1.1 is supported")
	ErrStructure          = errors.New("soap: invalid envelope structure")
	ErrNoBody             = errors.New("soap: missing or empty body")
	ErrNoSecurity         = errors.New("soap: no wsse:Security header for the zim actor")
	ErrDuplicateSecurity  = errors.New("soap: more than one wsse:Security header for the zim actor")
	ErrSecurityMisplaced  = errors.New("soap: wsse:Security outside the soap header")
	ErrSecurityContent    = errors.New("soap: unexpected content in the zim wsse:Security header")
	ErrMustUnderstand     = errors.New("soap: zim wsse:Security header must have mustUnderstand=\"1\"")
	ErrSecurityPresent    = errors.New("soap: envelope already carries a wsse:Security header")
	ErrInvalidToken       = errors.New("soap: token is not a single saml:Assertion element")
	ErrNestedEnvelope     = errors.New("soap: soap envelope elements nested inside header or body")
	ErrHeaderNotQualified = errors.New("soap: header block without a namespace")
)

// span is a half-open byte range [Start, End) into the envelope.
type span struct{ start, end int }

// HeaderBlock describes one child element of soap:Header.
type HeaderBlock struct {
	// Space and Local are the resolved namespace and local name.
	Space, Local string
	// Actor is the soap:actor attribute ("" when absent).
	Actor string
	// MustUnderstand is the soap:mustUnderstand attribute as written ("" when absent).
	MustUnderstand string
	// Start and End are byte offsets of the element in the envelope.
	Start, End int
}

// Envelope is a parsed SOAP 1.1 envelope: the original bytes plus offsets.
type Envelope struct {
	raw          []byte
	lim          Limits // the limits it was parsed under (defaults applied)
	prefix       string // prefix of the Envelope element ("" for a default namespace)
	envTagEnd    int    // offset just past the Envelope start tag
	hasHeader    bool
	header       span // the Header element
	headerInner  span // Header content
	headerPrefix string
	headerEmpty  bool // <soap:Header/>
	headers      []HeaderBlock
	security     int    // index into headers of the zim Security header, -1 if none
	anySecurity  bool   // any wsse:Security header block, whatever its actor
	tokens       []span // saml:Assertion children of the zim Security header
	body         span   // Body content
	bodyElem     span   // the single Body child element
	bodySpace    string
	bodyLocal    string
	bodyScope    map[string]string // in-scope namespaces at the Body child
}

// ParseEnvelope parses b strictly (see the package comment). The Envelope
// keeps b; the caller must not modify it afterwards.
func ParseEnvelope(b []byte, l Limits) (*Envelope, error) {
	return ParseEnvelopeVisit(b, l, nil)
}

// ParseEnvelopeVisit is ParseEnvelope that also hands body every raw token
// (xml.Decoder.RawToken form: names as written) of the single element in
// soap:Body, from its start tag to its end tag, in the same tokenising pass,
// with the namespace declarations in scope at that element (prefix -> URI,
// including its own; the same map for every call, do not modify). The
// tokens are only valid during the call. Use it to read the body (for
// example with hl7.Reader) without tokenising the envelope again. body sees
// tokens before the parse has finished: when ParseEnvelopeVisit returns an
// error, discard what body built.
func ParseEnvelopeVisit(b []byte, l Limits, body func(tok xml.Token, scope map[string]string)) (*Envelope, error) {
	l = withDefaults(l)
	e := &Envelope{raw: b, security: -1, lim: l}
	p := &envParser{e: e}
	sc := newScanner(b, l)
	if body != nil {
		var scope map[string]string
		sc.raw = func(tok xml.Token, depth int, el *element) {
			if !p.inBody || depth < 3 {
				return
			}
			if depth == 3 {
				if _, ok := tok.(xml.StartElement); ok {
					scope = el.scope
				}
			}
			body(tok, scope)
		}
	}
	if err := sc.check(p.visit); err != nil {
		return nil, err
	}
	if !p.sawBody {
		return nil, ErrNoBody
	}
	if p.bodyChildren != 1 {
		return nil, fmt.Errorf("%w (elements=%d)", ErrNoBody, p.bodyChildren)
	}
	return e, nil
}

type envParser struct {
	e            *Envelope
	sawEnvelope  bool
	sawHeader    bool
	sawBody      bool
	bodyChildren int
	inHeader     bool
	inBody       bool
	inSecurity   bool // inside the zim Security header
}

func (p *envParser) visit(ev event, el *element, inner, end int) error {
	e := p.e
	switch ev {
	case evText:
		// Text is only meaningful inside header blocks and the body element.
		switch {
		case el.depth <= 2:
			return fmt.Errorf("%w: text directly in %s", ErrStructure, el.local)
		case p.inSecurity && el.depth == 3:
			return fmt.Errorf("%w: text in the security header", ErrSecurityContent)
		case p.inBody && el.depth == 2:
			return fmt.Errorf("%w: text directly in body", ErrStructure)
		}
		return nil
	case evStart:
		return p.start(el)
	case evEnd:
		switch {
		case el.depth == 1:
			// Envelope end: nothing to record.
		case el.depth == 2 && p.inHeader:
			e.headerInner = span{el.tagEnd, inner}
			e.header = span{el.start, end}
			p.inHeader = false
		case el.depth == 2 && p.inBody:
			e.body = span{el.tagEnd, inner}
			p.inBody = false
		case el.depth == 3 && p.inHeader:
			h := &e.headers[len(e.headers)-1]
			h.End = end
			p.inSecurity = false
		case el.depth == 3 && p.inBody:
			e.bodyElem.end = end
		case el.depth == 4 && p.inSecurity:
			e.tokens[len(e.tokens)-1].end = end
		}
	}
	return nil
}

func (p *envParser) start(el *element) error {
	e := p.e
	isSOAP := el.space == NS
	if el.space == NSWSSE && el.local == "Security" && !(el.depth == 3 && p.inHeader) {
		return ErrSecurityMisplaced
	}
	switch {
	case el.depth == 1:
		if el.space == NS12 {
			return ErrSOAPVersion
		}
		if !isSOAP || el.local != "Envelope" {
			return fmt.Errorf("%w (root=%s)", ErrNotEnvelope, el.local)
		}
		p.sawEnvelope = true
		e.prefix = el.prefix
		e.envTagEnd = el.tagEnd
		return nil
	case el.depth == 2:
		if !isSOAP {
			return fmt.Errorf("%w: unexpected element in envelope (name=%s)", ErrStructure, el.local)
		}
		switch el.local {
		case "Header":
			if p.sawHeader || p.sawBody {
				return fmt.Errorf("%w: header repeated or after body", ErrStructure)
			}
			p.sawHeader, p.inHeader = true, true
			e.hasHeader = true
			e.headerPrefix = el.prefix
			e.headerEmpty = el.selfClosing
			return nil
		case "Body":
			if p.sawBody {
				return fmt.Errorf("%w: more than one body", ErrStructure)
			}
			p.sawBody, p.inBody = true, true
			return nil
		}
		return fmt.Errorf("%w: unexpected element in envelope (name=%s)", ErrStructure, el.local)
	}
	// depth >= 3: inside Header or Body.
	if isSOAP && !(p.inBody && el.depth == 3 && el.local == "Fault") {
		return fmt.Errorf("%w (name=%s)", ErrNestedEnvelope, el.local)
	}
	if p.inHeader && el.depth == 3 {
		if el.space == "" {
			return fmt.Errorf("%w (name=%s)", ErrHeaderNotQualified, el.local)
		}
		actor, _ := el.attr(NS, "actor")
		mu, _ := el.attr(NS, "mustUnderstand")
		e.headers = append(e.headers, HeaderBlock{Space: el.space, Local: el.local, Actor: actor, MustUnderstand: mu, Start: el.start})
		if el.local == "Security" {
			// Any Security header block, also of an older WS-Security draft
			// namespace, counts for the smuggling guard of WithSecurity.
			e.anySecurity = true
		}
		if el.space == NSWSSE && el.local == "Security" {
			if strings.TrimSpace(actor) == ActorZIM {
				if e.security >= 0 {
					return ErrDuplicateSecurity
				}
				if actor != ActorZIM {
					return fmt.Errorf("%w: actor with surrounding whitespace", ErrSecurityContent)
				}
				if mu != "1" {
					return ErrMustUnderstand
				}
				e.security = len(e.headers) - 1
				p.inSecurity = true
			}
		}
		return nil
	}
	if p.inSecurity && el.depth == 4 {
		if el.space != NSSAML || el.local != "Assertion" {
			return fmt.Errorf("%w (name=%s)", ErrSecurityContent, el.local)
		}
		e.tokens = append(e.tokens, span{start: el.start})
		return nil
	}
	if p.inBody && el.depth == 3 {
		p.bodyChildren++
		if p.bodyChildren > 1 {
			return fmt.Errorf("%w: more than one element in body", ErrStructure)
		}
		e.bodyElem = span{start: el.start}
		e.bodySpace, e.bodyLocal = el.space, el.local
		e.bodyScope = el.scope
	}
	return nil
}

// Raw returns the envelope bytes as given to ParseEnvelope.
func (e *Envelope) Raw() []byte { return e.raw }

// Prefix returns the prefix the envelope uses for the SOAP namespace ("" for
// a default namespace declaration).
func (e *Envelope) Prefix() string { return e.prefix }

// HasHeader reports whether the envelope has a soap:Header element.
func (e *Envelope) HasHeader() bool { return e.hasHeader }

// Header returns the raw soap:Header element, or nil when there is none.
func (e *Envelope) Header() []byte {
	if !e.hasHeader {
		return nil
	}
	return e.raw[e.header.start:e.header.end:e.header.end]
}

// Headers returns the header blocks (children of soap:Header) in order.
func (e *Envelope) Headers() []HeaderBlock {
	out := make([]HeaderBlock, len(e.headers))
	copy(out, e.headers)
	return out
}

// HeaderBytes returns the raw bytes of header block h.
func (e *Envelope) HeaderBytes(h HeaderBlock) []byte { return e.raw[h.Start:h.End:h.End] }

// HasSecurity reports whether a wsse:Security header for the zim actor is present.
func (e *Envelope) HasSecurity() bool { return e.security >= 0 }

// HasAnySecurity reports whether any header block named Security is present,
// whatever its actor or WS-Security namespace.
func (e *Envelope) HasAnySecurity() bool { return e.anySecurity }

// SecurityTokens returns the raw bytes of each saml:Assertion in the zim
// wsse:Security header, in document order. It returns ErrNoSecurity when
// that header is missing and ErrSecurityContent when it holds no assertion.
// The slices alias the envelope; an assertion that relies on a namespace
// declared outside itself will not parse standalone (fail closed).
func (e *Envelope) SecurityTokens() ([][]byte, error) {
	if e.security < 0 {
		return nil, ErrNoSecurity
	}
	if len(e.tokens) == 0 {
		return nil, fmt.Errorf("%w: no saml:Assertion", ErrSecurityContent)
	}
	out := make([][]byte, len(e.tokens))
	for i, t := range e.tokens {
		out[i] = e.raw[t.start:t.end:t.end]
	}
	return out, nil
}

// Body returns the raw content of soap:Body (the bytes between its tags,
// whitespace included).
func (e *Envelope) Body() []byte { return e.raw[e.body.start:e.body.end:e.body.end] }

// BodyElement returns the raw bytes of the single element in soap:Body.
func (e *Envelope) BodyElement() []byte {
	return e.raw[e.bodyElem.start:e.bodyElem.end:e.bodyElem.end]
}

// BodyName returns the namespace and local name of the element in soap:Body.
func (e *Envelope) BodyName() (space, local string) { return e.bodySpace, e.bodyLocal }

// BodyNamespaces returns the namespace declarations in scope at the Body
// element (prefix -> URI, "" for the default), including those declared on
// the element itself. Use it to read a body whose prefixes are declared on
// the Envelope (SoapUI style). The map is a copy.
func (e *Envelope) BodyNamespaces() map[string]string {
	out := make(map[string]string, len(e.bodyScope))
	for k, v := range e.bodyScope {
		out[k] = v
	}
	return out
}

// IsFault reports whether the body holds a soap:Fault.
func (e *Envelope) IsFault() bool { return e.bodySpace == NS && e.bodyLocal == "Fault" }
