package tokens

import (
	"container/list"
	"crypto/sha256"
	"sync"
	"time"
)

// DefaultVerifiedCacheSize is the default bound of the verified-token cache.
const DefaultVerifiedCacheSize = 4096

// verifiedEntry is one fully verified enrolment or mandate token.
type verifiedEntry struct {
	key      [32]byte
	gen      uint64 // CRL generation of the trust store at verification
	v        *Verified
	signedAt time.Time // revocation cut-off (enrolment: IssueInstant; else zero)
	issued   time.Time // IssueInstant
	// chainFrom..chainTo is the validity window of the whole chain; a token
	// whose chain is checked at "now" (mandate) is re-checked against it.
	chainFrom, chainTo time.Time
}

// verifiedCache is a bounded LRU of verified enrolment and mandate tokens,
// keyed by the SHA-256 of the exact token bytes. Safe for concurrent use.
// Transaction tokens are never cached (single use, replay-checked).
type verifiedCache struct {
	mu  sync.Mutex
	max int
	ll  *list.List // of *verifiedEntry, most recent first
	idx map[[32]byte]*list.Element
}

func newVerifiedCache(max int) *verifiedCache {
	if max <= 0 {
		return nil
	}
	return &verifiedCache{max: max, ll: list.New(), idx: make(map[[32]byte]*list.Element)}
}

func (c *verifiedCache) get(key [32]byte) *verifiedEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.idx[key]
	if !ok {
		return nil
	}
	c.ll.MoveToFront(el)
	return el.Value.(*verifiedEntry)
}

func (c *verifiedCache) put(e *verifiedEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.idx[e.key]; ok {
		el.Value = e
		c.ll.MoveToFront(el)
		return
	}
	c.idx[e.key] = c.ll.PushFront(e)
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.idx, old.Value.(*verifiedEntry).key)
	}
}

func (c *verifiedCache) drop(key [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.idx[key]; ok {
		c.ll.Remove(el)
		delete(c.idx, key)
	}
}

// cacheable reports whether a token of this type may be cached.
func cacheable(t Type) bool { return t == TypeEnrolment || t == TypeMandate }

// cachedVerify returns the cached result for raw when there is one for the
// current CRL generation and every time-dependent check still passes at the
// validator's clock: IssueInstant not in the future, NotBefore/NotOnOrAfter
// (with skew), the chain's validity window where it is checked at "now"
// (mandate), and revocation and CRL freshness against the current CRLs. A
// failed re-check drops the entry and returns nil: the caller verifies in
// full and gets the precise error. The result is a copy the caller may keep.
func (v *Validator) cachedVerify(key [32]byte, want Type) *Verified {
	if v.vcache == nil || (want != 0 && !cacheable(want)) {
		return nil
	}
	e := v.vcache.get(key)
	if e == nil {
		return nil
	}
	if want != 0 && e.v.Type != want {
		return nil
	}
	now := v.cfg.Now()
	skew := v.cfg.Skew
	nb, na := e.v.window()
	v.trust.mu.RLock()
	gen := v.trust.gen
	v.trust.mu.RUnlock()
	ok := gen == e.gen &&
		!e.issued.After(now.Add(skew)) &&
		!now.Add(skew).Before(nb) &&
		now.Add(-skew).Before(na)
	if ok && e.v.Type != TypeEnrolment {
		ok = !now.Before(e.chainFrom) && !now.After(e.chainTo)
	}
	if ok {
		ok = v.trust.checkRevocation(e.v.Chain, now, e.signedAt) == nil
	}
	if !ok {
		v.vcache.drop(key)
		return nil
	}
	return e.v.clone()
}

// remember stores a fully verified enrolment or mandate token.
func (v *Validator) remember(key [32]byte, gen uint64, out *Verified) {
	if v.vcache == nil || out == nil || !cacheable(out.Type) {
		return
	}
	e := &verifiedEntry{key: key, gen: gen, v: out.clone()}
	switch {
	case out.Enrolment != nil:
		e.issued, e.signedAt = out.Enrolment.IssueInstant, out.Enrolment.IssueInstant
	case out.Mandate != nil:
		e.issued = out.Mandate.IssueInstant
	}
	if len(out.Chain) == 0 {
		return
	}
	e.chainFrom, e.chainTo = out.Chain[0].NotBefore, out.Chain[0].NotAfter
	for _, c := range out.Chain[1:] {
		if c.NotBefore.After(e.chainFrom) {
			e.chainFrom = c.NotBefore
		}
		if c.NotAfter.Before(e.chainTo) {
			e.chainTo = c.NotAfter
		}
	}
	v.vcache.put(e)
}

// tokenKey is the cache key of a token: the SHA-256 of its exact bytes.
func tokenKey(raw []byte) [32]byte { return sha256.Sum256(raw) }

// clone copies v and its claim struct so that a caller changing the copy
// cannot change the cache. Certificates and slices are shared (read-only).
func (v *Verified) clone() *Verified {
	c := *v
	if v.Enrolment != nil {
		e := *v.Enrolment
		c.Enrolment = &e
	}
	if v.Mandate != nil {
		m := *v.Mandate
		c.Mandate = &m
	}
	if v.Transaction != nil {
		t := *v.Transaction
		c.Transaction = &t
	}
	return &c
}

// generation returns the trust store's current CRL generation.
func (v *Validator) generation() uint64 {
	v.trust.mu.RLock()
	defer v.trust.mu.RUnlock()
	return v.trust.gen
}
