package tokens

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"sync"
	"time"
)

// crlEntry is one signature-checked CRL, indexed by its issuer's subject+key.
type crlEntry struct {
	list    *x509.RevocationList
	revoked map[string]time.Time // serial (decimal) -> revocation time
}

type chainEntry struct {
	gen       uint64
	chain     []*x509.Certificate
	notBefore time.Time // validity window of the whole chain
	notAfter  time.Time
}

// trustStore holds roots, intermediates, CRLs and the chain cache. Safe for
// concurrent use.
type trustStore struct {
	roots         *x509.CertPool
	intermediates []*x509.Certificate
	grace         time.Duration
	requireCAcrl  bool

	mu     sync.RWMutex
	gen    uint64
	crls   map[string]*crlEntry
	cache  map[[32]byte]chainEntry
	maxLen int
}

func issuerKey(c *x509.Certificate) string {
	return string(c.RawSubject) + "\x00" + string(c.RawSubjectPublicKeyInfo)
}

// setCRLs checks every CRL's signature against a configured CA certificate and
// swaps the index in; a CRL that no configured CA signed is an error (fail closed).
func (t *trustStore) setCRLs(cas []*x509.Certificate, crls []*x509.RevocationList) error {
	idx := make(map[string]*crlEntry, len(crls))
	for i, l := range crls {
		if l == nil {
			return fmt.Errorf("%w: crl %d is nil", ErrConfig, i)
		}
		var issuer *x509.Certificate
		for _, ca := range cas {
			if string(ca.RawSubject) == string(l.RawIssuer) && l.CheckSignatureFrom(ca) == nil {
				issuer = ca
				break
			}
		}
		if issuer == nil {
			return fmt.Errorf("%w: crl not signed by a configured ca (crl_issuer=%q)", ErrConfig, l.Issuer.String())
		}
		k := issuerKey(issuer)
		if old, ok := idx[k]; ok && old.list.Number != nil && l.Number != nil && old.list.Number.Cmp(l.Number) >= 0 {
			continue
		}
		e := &crlEntry{list: l, revoked: make(map[string]time.Time, len(l.RevokedCertificateEntries))}
		for _, r := range l.RevokedCertificateEntries {
			e.revoked[r.SerialNumber.String()] = r.RevocationTime
		}
		idx[k] = e
	}
	t.mu.Lock()
	t.crls = idx
	t.gen++
	t.cache = make(map[[32]byte]chainEntry)
	t.mu.Unlock()
	return nil
}

// verifyChain returns a chain leaf..root valid at `at`. Results are cached per
// (certificate hash, CRL generation) together with the chain's validity window.
func (t *trustStore) verifyChain(leaf *x509.Certificate, hints []*x509.Certificate, at time.Time) ([]*x509.Certificate, error) {
	key := sha256.Sum256(leaf.Raw)
	t.mu.RLock()
	e, ok := t.cache[key]
	gen := t.gen
	t.mu.RUnlock()
	if ok && e.gen == gen && !at.Before(e.notBefore) && !at.After(e.notAfter) {
		return e.chain, nil
	}
	pool := x509.NewCertPool()
	for _, c := range t.intermediates {
		pool.AddCert(c)
	}
	for _, c := range hints {
		pool.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: t.roots, Intermediates: pool, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	chain := chains[0]
	for _, c := range chain {
		if pk, ok := c.PublicKey.(*rsa.PublicKey); ok && pk.N.BitLen() < MinRSABits {
			return nil, fmt.Errorf("%w: rsa key in chain too small (bits=%d)", ErrWeakKey, pk.N.BitLen())
		}
	}
	ne := chainEntry{gen: gen, chain: chain, notBefore: chain[0].NotBefore, notAfter: chain[0].NotAfter}
	for _, c := range chain[1:] {
		if c.NotBefore.After(ne.notBefore) {
			ne.notBefore = c.NotBefore
		}
		if c.NotAfter.Before(ne.notAfter) {
			ne.notAfter = c.NotAfter
		}
	}
	t.mu.Lock()
	if len(t.cache) >= t.maxLen {
		t.cache = make(map[[32]byte]chainEntry)
	}
	if t.gen == gen {
		t.cache[key] = ne
	}
	t.mu.Unlock()
	return chain, nil
}

// checkRevocation applies the CRLs to every non-root certificate of chain.
// A certificate counts as revoked when its revocation time is not after
// `signedAt` (enrolment tokens: revocation after signing does not count) —
// pass the zero time to count every revocation. The leaf's issuer must have a
// fresh CRL; CA levels need one only when requireCAcrl is set.
func (t *trustStore) checkRevocation(chain []*x509.Certificate, now, signedAt time.Time) error {
	t.mu.RLock()
	crls := t.crls
	t.mu.RUnlock()
	for i := 0; i < len(chain)-1; i++ {
		c, issuer := chain[i], chain[i+1]
		e, ok := crls[issuerKey(issuer)]
		if !ok {
			if i == 0 || t.requireCAcrl {
				return fmt.Errorf("%w: (issuer=%q)", ErrCRLMissing, issuer.Subject.CommonName)
			}
			continue
		}
		if !e.list.NextUpdate.IsZero() && now.After(e.list.NextUpdate.Add(t.grace)) {
			return fmt.Errorf("%w: (issuer=%q, next_update=%s)", ErrCRLStale, issuer.Subject.CommonName, e.list.NextUpdate.UTC().Format(time.RFC3339))
		}
		if e.list.NextUpdate.IsZero() {
			return fmt.Errorf("%w: crl without nextupdate (issuer=%q)", ErrCRLStale, issuer.Subject.CommonName)
		}
		if rt, revoked := e.revoked[c.SerialNumber.String()]; revoked {
			if signedAt.IsZero() || !rt.After(signedAt) {
				return fmt.Errorf("%w: (serial=%s, revoked_at=%s)", ErrRevoked, c.SerialNumber, rt.UTC().Format(time.RFC3339))
			}
		}
	}
	return nil
}
