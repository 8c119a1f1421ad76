package soap

import (
	"container/list"
	"crypto/sha256"
	"sync"
)

// WithSecurity returns the parsed envelope with one wsse:Security header
// (actor zim, mustUnderstand="1") holding tokens byte for byte, in the given
// order. It is the package-level WithSecurity without the second parse: the
// splice uses the offsets ParseEnvelope already found. The same rules apply:
// every token must be exactly one saml:Assertion element (ErrInvalidToken)
// and an envelope that carries any Security header is refused
// (ErrSecurityPresent).
//
// Token checks are remembered in a small bounded process-wide cache keyed by
// the SHA-256 of the exact token bytes, so the enrolment and mandate tokens
// that go out with every message are scanned once; the check is a pure
// function of the bytes, so a remembered pass is as good as a new one.
func (e *Envelope) WithSecurity(tokens ...[]byte) (*Secured, error) {
	if err := checkTokens(tokens); err != nil {
		return nil, err
	}
	if e.anySecurity {
		return nil, ErrSecurityPresent
	}
	return &Secured{raw: e.splice(tokens), lim: e.lim, bodySpace: e.bodySpace, bodyLocal: e.bodyLocal}, nil
}

// Secured is an envelope with its zim wsse:Security header, made only by
// (*Envelope).WithSecurity: a strictly parsed envelope with checked tokens
// spliced in. A sender can trust it without parsing it again (Conforms).
// It is immutable and safe for concurrent use.
type Secured struct {
	raw                  []byte
	lim                  Limits // the limits the source envelope was parsed under
	bodySpace, bodyLocal string
}

// Bytes returns the envelope bytes (do not modify them).
func (s *Secured) Bytes() []byte { return s.raw }

// BodyName returns the namespace and local name of the element in soap:Body.
func (s *Secured) BodyName() (space, local string) { return s.bodySpace, s.bodyLocal }

// Conforms reports whether ParseEnvelope(s.Bytes(), l) is certain to accept
// s and find its zim Security header, so that a sender with limits l may
// skip that parse. It holds when l is at least as wide as the limits the
// source envelope was parsed under and as the token check's limits (a token
// sits three levels deep: Envelope, Header, Security), and s fits l's size
// cap. The structural rules hold by construction: the envelope passed them,
// and checkToken refuses in a token everything ParseEnvelope refuses inside
// the Security header (FuzzSecuredConforms checks this equivalence).
func (s *Secured) Conforms(l Limits) bool {
	l = withDefaults(l)
	return len(s.raw) <= l.MaxBytes &&
		s.lim.MaxDepth <= l.MaxDepth && tokenLimits.MaxDepth+3 <= l.MaxDepth &&
		s.lim.MaxAttrs <= l.MaxAttrs && tokenLimits.MaxAttrs <= l.MaxAttrs && securityAttrs <= l.MaxAttrs
}

// securityAttrs is the number of attributes securityHeader writes at most.
const securityAttrs = 4

func checkTokens(tokens [][]byte) error {
	if len(tokens) == 0 {
		return ErrInvalidToken
	}
	for _, t := range tokens {
		if err := checkTokenCached(t); err != nil {
			return err
		}
	}
	return nil
}

// tokenCacheSize bounds the cache of token byte strings that passed checkToken.
const tokenCacheSize = 4096

type checkedTokens struct {
	mu  sync.Mutex
	ll  *list.List // of [32]byte, most recent first
	idx map[[32]byte]*list.Element
}

var okTokens = &checkedTokens{ll: list.New(), idx: make(map[[32]byte]*list.Element)}

// checkTokenCached is checkToken with a bounded LRU of passed token hashes.
// Failures are never cached.
func checkTokenCached(t []byte) error {
	if len(t) == 0 || len(t) > MaxTokenBytes {
		return checkToken(t)
	}
	sum := sha256.Sum256(t)
	c := okTokens
	c.mu.Lock()
	if el, ok := c.idx[sum]; ok {
		c.ll.MoveToFront(el)
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	if err := checkToken(t); err != nil {
		return err
	}
	c.mu.Lock()
	if _, ok := c.idx[sum]; !ok {
		c.idx[sum] = c.ll.PushFront(sum)
		for c.ll.Len() > tokenCacheSize {
			old := c.ll.Back()
			c.ll.Remove(old)
			delete(c.idx, old.Value.([32]byte))
		}
	}
	c.mu.Unlock()
	return nil
}
