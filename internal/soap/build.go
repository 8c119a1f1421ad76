package soap

import (
	"bytes"
	"fmt"
)

// MaxTokenBytes caps one token handed to WithSecurity or Build.
const MaxTokenBytes = 256 << 10

// tokenLimits are the parse limits of one token in checkToken.
var tokenLimits = Limits{MaxBytes: MaxTokenBytes, MaxDepth: 32, MaxAttrs: 32}

// checkToken verifies that t is exactly one saml:Assertion element with no
// prolog, so that splicing it cannot break or extend the envelope's
// structure. Inside the envelope the token must read exactly as it does on
// its own, and ParseEnvelope must accept it in the Security header, so it
// also refuses what would change meaning or break that parse in place: an
// element without a namespace (it would inherit a default namespace from
// the envelope), SOAP envelope elements and wsse:Security elements. The
// bytes are not changed.
func checkToken(t []byte) error {
	if len(t) == 0 || len(t) > MaxTokenBytes {
		return fmt.Errorf("%w (size=%d)", ErrInvalidToken, len(t))
	}
	if t[0] != '<' || t[len(t)-1] != '>' {
		return fmt.Errorf("%w: must start with '<' and end with '>'", ErrInvalidToken)
	}
	var rootSeen bool
	err := newScanner(t, tokenLimits).check(func(ev event, el *element, _, _ int) error {
		if ev != evStart {
			return nil
		}
		switch {
		case el.space == "":
			return fmt.Errorf("%w: element %s has no namespace", ErrInvalidToken, el.local)
		case el.space == NS || el.space == NS12:
			return fmt.Errorf("%w: soap element %s inside a token", ErrInvalidToken, el.local)
		case el.space == NSWSSE && el.local == "Security":
			return fmt.Errorf("%w: wsse:Security inside a token", ErrInvalidToken)
		}
		if el.depth == 1 {
			if el.space != NSSAML || el.local != "Assertion" {
				return fmt.Errorf("%w (root=%s)", ErrInvalidToken, el.local)
			}
			rootSeen = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if !rootSeen || bytes.HasPrefix(t, []byte("<?")) {
		return ErrInvalidToken
	}
	return nil
}

// securityHeader renders the wsse:Security element with the tokens inside.
// soapPrefix must be bound to the SOAP 1.1 namespace where the element is
// placed; when declare is true the element declares it itself.
func securityHeader(dst []byte, soapPrefix string, declare bool, tokens [][]byte) []byte {
	dst = append(dst, `<wsse:Security xmlns:wsse="`+NSWSSE+`"`...)
	if declare {
		dst = append(dst, ` xmlns:`+soapPrefix+`="`+NS+`"`...)
	}
	dst = append(dst, ` `+soapPrefix+`:actor="`+ActorZIM+`" `+soapPrefix+`:mustUnderstand="1">`...)
	for _, t := range tokens {
		dst = append(dst, t...)
	}
	return append(dst, `</wsse:Security>`...)
}

// WithSecurity returns a copy of env with one wsse:Security header (actor
// zim, mustUnderstand="1") holding tokens byte for byte, in the given order.
// The rest of env is copied unchanged: the header is spliced in as the first
// child of soap:Header (a Header is created, with the envelope's own prefix,
// when there is none). It refuses an envelope that already carries any
// wsse:Security header (ErrSecurityPresent), whatever its actor, so a client
// cannot smuggle tokens past the gateway, and anything ParseEnvelope refuses.
func WithSecurity(env []byte, tokens ...[]byte) ([]byte, error) {
	return WithSecurityLimits(env, Limits{}, tokens...)
}

// WithSecurityLimits is WithSecurity with explicit parse limits.
func WithSecurityLimits(env []byte, l Limits, tokens ...[]byte) ([]byte, error) {
	if len(tokens) == 0 {
		return nil, fmt.Errorf("%w: no tokens", ErrInvalidToken)
	}
	for _, t := range tokens {
		if err := checkToken(t); err != nil {
			return nil, err
		}
	}
	e, err := ParseEnvelope(env, l)
	if err != nil {
		return nil, err
	}
	if e.anySecurity {
		return nil, ErrSecurityPresent
	}
	return e.splice(tokens), nil
}

// splice builds the output of WithSecurity from the parsed offsets.
func (e *Envelope) splice(tokens [][]byte) []byte {
	env := e.raw
	size := len(env) + 256
	for _, t := range tokens {
		size += len(t)
	}
	out := make([]byte, 0, size)
	switch {
	case !e.hasHeader:
		// <P:Header><wsse:Security .../></P:Header> right after the Envelope start tag.
		out = append(out, env[:e.envTagEnd]...)
		hdrName := "Header"
		if e.prefix != "" {
			hdrName = e.prefix + ":Header"
		}
		hp, declare := headerPrefix(e.prefix)
		out = append(out, '<')
		out = append(out, hdrName...)
		out = append(out, '>')
		out = securityHeader(out, hp, declare, tokens)
		out = append(out, "</"...)
		out = append(out, hdrName...)
		out = append(out, '>')
		out = append(out, env[e.envTagEnd:]...)
	case e.headerEmpty:
		// <P:Header .../> becomes <P:Header ...>SEC</P:Header>.
		tag := env[e.header.start:e.header.end]
		i := bytes.LastIndex(tag, []byte("/>"))
		out = append(out, env[:e.header.start]...)
		out = append(out, bytes.TrimRight(tag[:i], " \t\r\n")...)
		out = append(out, '>')
		hp, declare := headerPrefix(e.headerPrefix)
		out = securityHeader(out, hp, declare, tokens)
		out = append(out, "</"...)
		if e.headerPrefix != "" {
			out = append(out, e.headerPrefix...)
			out = append(out, ':')
		}
		out = append(out, "Header>"...)
		out = append(out, env[e.header.end:]...)
	default:
		out = append(out, env[:e.headerInner.start]...)
		hp, declare := headerPrefix(e.headerPrefix)
		out = securityHeader(out, hp, declare, tokens)
		out = append(out, env[e.headerInner.start:]...)
	}
	return out
}

// headerPrefix picks the prefix for soap:actor inside an existing Header:
// the Header's own prefix is bound to SOAP 1.1 there, unless it is empty or
// would be shadowed by our wsse declaration.
func headerPrefix(p string) (string, bool) {
	if p == "" || p == "wsse" {
		return "soap", true
	}
	return p, false
}

// Build returns a fresh SOAP 1.1 envelope (prefix soap) around body, with a
// zim wsse:Security header holding tokens byte for byte when any are given.
// body must be one XML element and each token one saml:Assertion element
// (for example tokens.Signed.Bytes()); Build inserts them as they are and
// does not validate them. Use WithSecurity to check untrusted tokens.
func Build(body []byte, tokens ...[]byte) []byte {
	size := len(body) + 512
	for _, t := range tokens {
		size += len(t)
	}
	out := make([]byte, 0, size)
	out = append(out, `<soap:Envelope xmlns:soap="`+NS+`">`...)
	if len(tokens) > 0 {
		out = append(out, `<soap:Header>`...)
		out = securityHeader(out, "soap", false, tokens)
		out = append(out, `</soap:Header>`...)
	}
	out = append(out, `<soap:Body>`...)
	out = append(out, body...)
	out = append(out, `</soap:Body></soap:Envelope>`...)
	return out
}
