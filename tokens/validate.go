package tokens

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/aortagw/aortagw/internal/uzi"
	"github.com/aortagw/aortagw/internal/xmlsafe"
)

// ValidatorConfig configures a Validator. Roots is required; everything else
// has a strict default.
type ValidatorConfig struct {
	// Roots are the trust anchors (the UZI-register / PKIoverheid roots). Required.
	Roots []*x509.Certificate
	// Intermediates are configured CA certificates (trusted as path elements only).
	Intermediates []*x509.Certificate
	// CRLs must each be signed by a configured root or intermediate. The leaf's
	// issuing CA must have a fresh CRL (fail closed).
	CRLs []*x509.RevocationList
	// RequireCRLForCAs also requires a CRL for every intermediate CA level.
	RequireCRLForCAs bool
	// CRLGrace is how long past NextUpdate a CRL is still used (default 0).
	CRLGrace time.Duration
	// Directory resolves IssuerSerial-only KeyInfo. Nil: such tokens are refused (ErrCertUnknown).
	Directory CertDirectory
	// Replay records transaction token IDs. Nil: a private MemoryReplayCache.
	Replay ReplayCache
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Skew is the allowed clock difference (default 120s, at most 10 minutes).
	Skew time.Duration
	// Audience must be among the token's audiences (default AudienceZIM).
	Audience string
	// MaxTransactionLifetime (default 90 min), MaxEnrolmentLifetime (default 548 days)
	// and MaxMandateLifetime (default 5 years) cap NotOnOrAfter-NotBefore per type.
	MaxTransactionLifetime, MaxEnrolmentLifetime, MaxMandateLifetime time.Duration
	// ProductionOnly refuses certificates of UZI test CAs.
	ProductionOnly bool
	// RejectLegacyIssuer refuses the urn:oid:2.16.528.1.1007.3.3.<URA> transaction Issuer form.
	RejectLegacyIssuer bool
	// NativeOnly skips the second, independent verification by goxmldsig. The
	// native verifier alone is complete; the cross-check is defence in depth and
	// costs about half of the verification time (docs/benchmarks.md).
	NativeOnly bool
	// ChainCacheSize bounds the chain cache (default 10,000 certificates).
	ChainCacheSize int
	// VerifiedCacheSize bounds the cache of verified enrolment and mandate
	// tokens (keyed by the SHA-256 of the exact token bytes, valid for one
	// CRL generation; time and revocation checks re-run on every hit).
	// 0 means DefaultVerifiedCacheSize; a negative value turns it off.
	VerifiedCacheSize int
}

// Validator verifies tokens. Safe for concurrent use.
type Validator struct {
	cfg    ValidatorConfig
	trust  *trustStore
	cas    []*x509.Certificate
	vcache *verifiedCache // nil when turned off
}

// Verified is the result of a successful verification. Exactly one of
// Enrolment, Mandate and Transaction is set; all values come from the
// verified canonical bytes.
type Verified struct {
	Type       Type
	ID, Issuer string
	Signer     *uzi.Identity
	SignerCert *x509.Certificate
	Chain      []*x509.Certificate
	// Canonical is the verified exclusive-canonical form of the assertion without its Signature.
	Canonical   []byte
	Enrolment   *Enrolment
	Mandate     *Mandate
	Transaction *Transaction
}

// NotBefore returns the verified NotBefore.
func (v *Verified) NotBefore() time.Time { nb, _ := v.window(); return nb }

// NotOnOrAfter returns the verified NotOnOrAfter.
func (v *Verified) NotOnOrAfter() time.Time { _, na := v.window(); return na }

func (v *Verified) window() (time.Time, time.Time) {
	switch {
	case v.Enrolment != nil:
		return v.Enrolment.NotBefore, v.Enrolment.NotOnOrAfter
	case v.Mandate != nil:
		return v.Mandate.NotBefore, v.Mandate.NotOnOrAfter
	case v.Transaction != nil:
		return v.Transaction.NotBefore, v.Transaction.NotOnOrAfter
	}
	return time.Time{}, time.Time{}
}

// NewValidator checks the configuration (CRL signatures included) and returns a Validator.
func NewValidator(cfg ValidatorConfig) (*Validator, error) {
	if len(cfg.Roots) == 0 {
		return nil, fmt.Errorf("%w: at least one trust root required", ErrConfig)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Skew == 0 {
		cfg.Skew = 120 * time.Second
	}
	if cfg.Skew < 0 || cfg.Skew > 10*time.Minute {
		return nil, fmt.Errorf("%w: skew must be in [0, 10m] (skew=%s)", ErrConfig, cfg.Skew)
	}
	if cfg.Audience == "" {
		cfg.Audience = AudienceZIM
	}
	if cfg.MaxTransactionLifetime == 0 {
		cfg.MaxTransactionLifetime = MaxTransactionLifetime
	}
	if cfg.MaxEnrolmentLifetime == 0 {
		cfg.MaxEnrolmentLifetime = MaxEnrolmentLifetime
	}
	if cfg.MaxMandateLifetime == 0 {
		cfg.MaxMandateLifetime = DefaultMaxMandateLifetime
	}
	if cfg.MaxTransactionLifetime > MaxTransactionLifetime || cfg.MaxEnrolmentLifetime > MaxEnrolmentLifetime {
		return nil, fmt.Errorf("%w: lifetime caps above the aorta maxima", ErrConfig)
	}
	if cfg.Replay == nil {
		cfg.Replay = NewMemoryReplayCache(0, cfg.Now)
	}
	if cfg.ChainCacheSize <= 0 {
		cfg.ChainCacheSize = 10_000
	}
	pool := x509.NewCertPool()
	for _, r := range cfg.Roots {
		pool.AddCert(r)
	}
	if cfg.VerifiedCacheSize == 0 {
		cfg.VerifiedCacheSize = DefaultVerifiedCacheSize
	}
	v := &Validator{cfg: cfg, vcache: newVerifiedCache(cfg.VerifiedCacheSize)}
	v.cas = append(append([]*x509.Certificate{}, cfg.Roots...), cfg.Intermediates...)
	v.trust = &trustStore{roots: pool, intermediates: cfg.Intermediates, grace: cfg.CRLGrace,
		requireCAcrl: cfg.RequireCRLForCAs, maxLen: cfg.ChainCacheSize}
	if err := v.trust.setCRLs(v.cas, cfg.CRLs); err != nil {
		return nil, err
	}
	return v, nil
}

// UpdateCRLs replaces the CRL set (each signature-checked against the
// configured CAs) and starts a new cache generation.
func (v *Validator) UpdateCRLs(crls []*x509.RevocationList) error {
	return v.trust.setCRLs(v.cas, crls)
}

// Verify verifies one bare token (a saml:Assertion as the document root) of
// type want and records transaction token IDs in the replay cache.
//
// Enrolment and mandate tokens that verified before are served from the
// verified-token cache (see ValidatorConfig.VerifiedCacheSize) after the
// time-dependent checks are re-run.
func (v *Validator) Verify(ctx context.Context, raw []byte, want Type) (*Verified, error) {
	var key [32]byte
	var gen uint64
	if v.vcache != nil && (want == 0 || cacheable(want)) {
		key = tokenKey(raw)
		if hit := v.cachedVerify(key, want); hit != nil {
			return hit, nil
		}
		gen = v.generation()
	}
	out, err := v.verifyRaw(ctx, raw, want)
	if err == nil && v.vcache != nil && (want == 0 || cacheable(want)) {
		v.remember(key, gen, out)
	}
	return out, err
}

func (v *Validator) verifyRaw(ctx context.Context, raw []byte, want Type) (*Verified, error) {
	doc, err := xmlsafe.Parse(raw, xmlsafe.TokenLimits)
	if err != nil {
		return nil, &rejectError{kind: ErrMalformed, err: err, msg: err.Error()}
	}
	root := doc.Root()
	if !isEl(root, NSSAML, "Assertion") {
		return nil, reject(ErrTokenCount, "root is not a saml assertion")
	}
	if err := documentRules(root, 1); err != nil {
		return nil, err
	}
	return v.verifyAssertion(ctx, root, want, true)
}

func reject(kind error, format string, args ...any) error {
	return &rejectError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

func isEl(el *etree.Element, ns, local string) bool {
	return el != nil && el.Tag == local && el.NamespaceURI() == ns
}

// documentRules: exactly `assertions` saml:Assertion elements in the whole
// document and no ID value used twice.
func documentRules(root *etree.Element, assertions int) error {
	n := 0
	ids := map[string]bool{}
	var walk func(el *etree.Element) error
	walk = func(el *etree.Element) error {
		if el.Tag == "Assertion" && el.NamespaceURI() == NSSAML {
			n++
		}
		for _, a := range el.Attr {
			if a.Space == "xmlns" || a.Key == "xmlns" {
				continue
			}
			if k := strings.ToLower(a.Key); k == "id" {
				if ids[a.Value] {
					return reject(ErrDuplicateID, "id=%q", a.Value)
				}
				ids[a.Value] = true
			}
		}
		for _, c := range el.ChildElements() {
			if err := walk(c); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(root); err != nil {
		return err
	}
	if n != assertions {
		return reject(ErrTokenCount, "assertions=%d want=%d", n, assertions)
	}
	return nil
}

// sigParts is the pinned signature, read from the unverified tree.
type sigParts struct {
	sig, signedInfo *etree.Element
	sigAlg          x509.SignatureAlgorithm
	sigValue        []byte
	certs           []*x509.Certificate
	issuerName      string
	serial          *big.Int
	keyInfo         *etree.Element
}

var (
	signatureAlgs = map[string]x509.SignatureAlgorithm{
		AlgRSASHA256: x509.SHA256WithRSA, algA84RSASHA256: x509.SHA256WithRSA,
		AlgRSASHA384: x509.SHA384WithRSA, AlgRSASHA512: x509.SHA512WithRSA,
	}
	digestAlgs = map[string]crypto.Hash{
		AlgSHA256: crypto.SHA256, algA84SHA256: crypto.SHA256,
		AlgSHA384: crypto.SHA384, AlgSHA512: crypto.SHA512,
	}
)

// onlyWhitespaceText reports whether el has no non-whitespace character data.
func onlyWhitespaceText(el *etree.Element) bool {
	for _, c := range el.Child {
		if cd, ok := c.(*etree.CharData); ok && strings.TrimSpace(cd.Data) != "" {
			return false
		}
	}
	return true
}

// children returns the element children, requiring each to be in namespace ns
// and no stray text.
func dsChildren(el *etree.Element) ([]*etree.Element, error) {
	if !onlyWhitespaceText(el) {
		return nil, reject(ErrSignatureProfile, "text in %s", el.Tag)
	}
	cs := el.ChildElements()
	for _, c := range cs {
		if c.NamespaceURI() != NSDSig {
			return nil, reject(ErrSignatureProfile, "foreign element %s in %s", c.Tag, el.Tag)
		}
	}
	return cs, nil
}

func onlyAttrs(el *etree.Element, allowed ...string) error {
	for _, a := range el.Attr {
		if a.Space == "xmlns" || (a.Space == "" && a.Key == "xmlns") {
			continue
		}
		ok := false
		for _, n := range allowed {
			if a.Space == "" && a.Key == n {
				ok = true
			}
		}
		if !ok {
			return reject(ErrSignatureProfile, "attribute %s on %s", a.Key, el.Tag)
		}
	}
	return nil
}

func algorithmOf(el *etree.Element) (string, error) {
	if err := onlyAttrs(el, "Algorithm"); err != nil {
		return "", err
	}
	if len(el.Child) != 0 {
		for _, c := range el.Child {
			if cd, ok := c.(*etree.CharData); ok && strings.TrimSpace(cd.Data) == "" {
				continue
			}
			return "", reject(ErrAlgorithm, "parameters on %s not allowed", el.Tag)
		}
	}
	return el.SelectAttrValue("Algorithm", ""), nil
}

// pinSignature applies the signature profile of security.md section 7 point 3
// to the unverified tree and extracts what the crypto step needs.
func pinSignature(a *etree.Element, id string) (*sigParts, error) {
	// Exactly one ds:Signature in the whole assertion, and it is child #2 after Issuer.
	var all []*etree.Element
	var walk func(el *etree.Element)
	walk = func(el *etree.Element) {
		for _, c := range el.ChildElements() {
			if c.Tag == "Signature" && c.NamespaceURI() == NSDSig {
				all = append(all, c)
			}
			walk(c)
		}
	}
	walk(a)
	if len(all) == 0 {
		return nil, reject(ErrNoSignature, "")
	}
	kids := a.ChildElements()
	if len(all) != 1 || len(kids) < 2 || kids[1] != all[0] || !isEl(kids[0], NSSAML, "Issuer") {
		return nil, reject(ErrSignaturePlacement, "signatures=%d", len(all))
	}
	p := &sigParts{sig: all[0]}
	if err := onlyAttrs(p.sig); err != nil {
		return nil, err
	}
	cs, err := dsChildren(p.sig)
	if err != nil {
		return nil, err
	}
	if len(cs) != 3 || cs[0].Tag != "SignedInfo" || cs[1].Tag != "SignatureValue" || cs[2].Tag != "KeyInfo" {
		tags := make([]string, len(cs))
		for i, c := range cs {
			tags[i] = c.Tag
		}
		if len(cs) == 2 && cs[0].Tag == "SignedInfo" && cs[1].Tag == "SignatureValue" {
			return nil, reject(ErrKeyInfo, "keyinfo missing")
		}
		return nil, reject(ErrSignatureProfile, "signature children=%s", strings.Join(tags, ","))
	}
	p.signedInfo = cs[0]
	if err := checkSignedInfo(p.signedInfo, id, p); err != nil {
		return nil, err
	}
	if err := onlyAttrs(cs[1]); err != nil {
		return nil, err
	}
	p.sigValue, err = base64.StdEncoding.DecodeString(strings.Join(strings.Fields(textOf(cs[1])), ""))
	if err != nil || len(p.sigValue) == 0 {
		return nil, reject(ErrSignatureProfile, "signaturevalue not base64")
	}
	p.keyInfo = cs[2]
	if err := readKeyInfo(cs[2], p); err != nil {
		return nil, err
	}
	return p, nil
}

// textOf concatenates all character data directly under el (comments ignored).
func textOf(el *etree.Element) string {
	var b strings.Builder
	for _, c := range el.Child {
		if cd, ok := c.(*etree.CharData); ok {
			b.WriteString(cd.Data)
		}
	}
	return b.String()
}

func checkSignedInfo(si *etree.Element, id string, p *sigParts) error {
	if err := onlyAttrs(si); err != nil {
		return err
	}
	cs, err := dsChildren(si)
	if err != nil {
		return err
	}
	refs := 0
	for _, c := range cs {
		if c.Tag == "Reference" {
			refs++
		}
	}
	if refs != 1 {
		return reject(ErrReference, "references=%d", refs)
	}
	if len(cs) != 3 || cs[0].Tag != "CanonicalizationMethod" || cs[1].Tag != "SignatureMethod" || cs[2].Tag != "Reference" {
		return reject(ErrSignatureProfile, "signedinfo layout")
	}
	alg, err := algorithmOf(cs[0])
	if err != nil {
		return err
	}
	if alg != AlgExcC14N {
		return reject(ErrAlgorithm, "canonicalization=%q", alg)
	}
	alg, err = algorithmOf(cs[1])
	if err != nil {
		return err
	}
	sa, ok := signatureAlgs[alg]
	if !ok {
		return reject(ErrAlgorithm, "signature=%q", alg)
	}
	if p != nil {
		p.sigAlg = sa
	}
	_, _, err = checkReference(cs[2], id)
	return err
}

// checkReference pins one Reference and returns its digest algorithm and value.
func checkReference(ref *etree.Element, id string) (crypto.Hash, []byte, error) {
	if err := onlyAttrs(ref, "URI"); err != nil {
		return 0, nil, reject(ErrReference, "attributes other than uri")
	}
	if uri := ref.SelectAttrValue("URI", ""); uri != "#"+id || id == "" {
		return 0, nil, reject(ErrReference, "uri=%q id=%q", uri, id)
	}
	cs, err := dsChildren(ref)
	if err != nil {
		return 0, nil, err
	}
	if len(cs) != 3 || cs[0].Tag != "Transforms" || cs[1].Tag != "DigestMethod" || cs[2].Tag != "DigestValue" {
		return 0, nil, reject(ErrTransforms, "reference layout")
	}
	if err := onlyAttrs(cs[0]); err != nil {
		return 0, nil, err
	}
	ts, err := dsChildren(cs[0])
	if err != nil {
		return 0, nil, err
	}
	if len(ts) != 2 || ts[0].Tag != "Transform" || ts[1].Tag != "Transform" {
		return 0, nil, reject(ErrTransforms, "transforms=%d", len(ts))
	}
	a0, err0 := algorithmOf(ts[0])
	a1, err1 := algorithmOf(ts[1])
	if err0 != nil || err1 != nil || a0 != AlgEnveloped || a1 != AlgExcC14N {
		return 0, nil, reject(ErrTransforms, "transforms=%q,%q", a0, a1)
	}
	dalg, err := algorithmOf(cs[1])
	if err != nil {
		return 0, nil, err
	}
	h, ok := digestAlgs[dalg]
	if !ok {
		return 0, nil, reject(ErrAlgorithm, "digest=%q", dalg)
	}
	if err := onlyAttrs(cs[2]); err != nil {
		return 0, nil, err
	}
	dv, err := base64.StdEncoding.DecodeString(strings.TrimSpace(textOf(cs[2])))
	if err != nil || len(dv) != h.Size() || len(cs[2].ChildElements()) != 0 {
		return 0, nil, reject(ErrSignatureProfile, "digestvalue")
	}
	return h, dv, nil
}

// readKeyInfo allows exactly one X509Data holding X509IssuerSerial (0..1) and
// X509Certificate (0..n, the first one the signer), at least one of them.
func readKeyInfo(ki *etree.Element, p *sigParts) error {
	if err := onlyAttrs(ki); err != nil {
		return reject(ErrKeyInfo, "keyinfo attributes")
	}
	cs, err := dsChildren(ki)
	if err != nil {
		return reject(ErrKeyInfo, "%v", err)
	}
	if len(cs) != 1 || cs[0].Tag != "X509Data" {
		return reject(ErrKeyInfo, "keyinfo must hold exactly one x509data")
	}
	xs, err := dsChildren(cs[0])
	if err != nil {
		return reject(ErrKeyInfo, "%v", err)
	}
	serials := 0
	for _, x := range xs {
		switch x.Tag {
		case "X509IssuerSerial":
			serials++
			if serials > 1 {
				return reject(ErrKeyInfo, "several x509issuerserial")
			}
			name, serial, err := readIssuerSerial(x)
			if err != nil {
				return err
			}
			p.issuerName, p.serial = name, serial
		case "X509Certificate":
			der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(textOf(x)), ""))
			if err != nil {
				return reject(ErrKeyInfo, "x509certificate not base64")
			}
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return reject(ErrKeyInfo, "x509certificate: %v", err)
			}
			p.certs = append(p.certs, c)
		default:
			return reject(ErrKeyInfo, "x509data child %s not allowed", x.Tag)
		}
	}
	if serials == 0 && len(p.certs) == 0 {
		return reject(ErrKeyInfo, "no certificate reference")
	}
	return nil
}

func readIssuerSerial(x *etree.Element) (string, *big.Int, error) {
	cs := x.ChildElements()
	if len(cs) != 2 || !isEl(cs[0], NSDSig, "X509IssuerName") || !isEl(cs[1], NSDSig, "X509SerialNumber") ||
		len(cs[0].ChildElements()) != 0 || len(cs[1].ChildElements()) != 0 {
		return "", nil, reject(ErrKeyInfo, "x509issuerserial layout")
	}
	name := strings.TrimSpace(textOf(cs[0]))
	sn, ok := new(big.Int).SetString(strings.TrimSpace(textOf(cs[1])), 10)
	if !ok || sn.Sign() <= 0 || name == "" {
		return "", nil, reject(ErrKeyInfo, "x509issuerserial values")
	}
	return name, sn, nil
}

// resolveSigner picks the signing certificate: the first embedded certificate
// (which must match IssuerSerial when both are present) or the directory.
func (v *Validator) resolveSigner(ctx context.Context, p *sigParts) (*x509.Certificate, []*x509.Certificate, error) {
	if len(p.certs) > 0 {
		leaf := p.certs[0]
		if p.serial != nil && (leaf.SerialNumber.Cmp(p.serial) != 0 || !issuerNameMatches(p.issuerName, leaf.RawIssuer)) {
			return nil, nil, reject(ErrKeyInfo, "x509issuerserial does not match the embedded certificate")
		}
		return leaf, p.certs[1:], nil
	}
	if v.cfg.Directory == nil {
		return nil, nil, reject(ErrCertUnknown, "no certificate directory configured (serial=%s)", p.serial)
	}
	c, err := v.cfg.Directory.Lookup(ctx, p.issuerName, p.serial)
	if err != nil {
		return nil, nil, &rejectError{kind: ErrCertUnknown, msg: fmt.Sprintf("serial=%s", p.serial), err: err}
	}
	if c == nil || c.SerialNumber.Cmp(p.serial) != 0 || !issuerNameMatches(p.issuerName, c.RawIssuer) {
		return nil, nil, reject(ErrCertUnknown, "directory returned another certificate")
	}
	return c, nil, nil
}

// verifyAssertion is the common pipeline for a located assertion element.
func (v *Validator) verifyAssertion(ctx context.Context, a *etree.Element, want Type, replay bool) (*Verified, error) {
	now := v.cfg.Now()
	id := a.SelectAttrValue("ID", "")
	if id == "" {
		return nil, reject(ErrStructure, "assertion without id")
	}
	p, err := pinSignature(a, id)
	if err != nil {
		return nil, err
	}
	// Type and signing time from the unverified tree, re-checked on the verified one.
	typ, err := detectType(a)
	if err != nil {
		return nil, err
	}
	if want != 0 && typ != want {
		return nil, reject(ErrWrongType, "token=%s want=%s", typ, want)
	}
	trustAt := now
	var signedAt time.Time
	if typ == TypeEnrolment {
		ii, err := parseTime(a.SelectAttrValue("IssueInstant", ""))
		if err != nil {
			return nil, reject(ErrIssueInstant, "%v", err)
		}
		if ii.After(now.Add(v.cfg.Skew)) {
			return nil, reject(ErrIssueInstant, "issueinstant in the future")
		}
		trustAt, signedAt = ii, ii
	}
	leaf, hints, err := v.resolveSigner(ctx, p)
	if err != nil {
		return nil, err
	}
	pk, ok := leaf.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, reject(ErrWeakKey, "not an rsa key")
	}
	if pk.N.BitLen() < MinRSABits {
		return nil, reject(ErrWeakKey, "bits=%d", pk.N.BitLen())
	}
	ident, err := uzi.ParseWithOptions(leaf, uzi.ParseOptions{ProductionOnly: v.cfg.ProductionOnly})
	if err != nil {
		return nil, &rejectError{kind: ErrNotUZI, err: err, msg: err.Error()}
	}
	if err := allowedSigner(typ, ident); err != nil {
		return nil, err
	}
	chain, err := v.trust.verifyChain(leaf, hints, trustAt)
	if err != nil {
		return nil, err
	}
	if err := v.trust.checkRevocation(chain, now, signedAt); err != nil {
		return nil, err
	}

	// Cryptography, native: SignedInfo, then digest over the canonical assertion.
	var sib bytes.Buffer
	excC14N(&sib, p.signedInfo, nil)
	if err := leaf.CheckSignature(p.sigAlg, sib.Bytes(), p.sigValue); err != nil {
		return nil, reject(ErrSignatureInvalid, "signedinfo: %v", err)
	}
	// Read the Reference from the verified SignedInfo bytes only.
	sidoc := etree.NewDocument()
	sidoc.ReadSettings = xmlsafe.ReadSettings(xmlsafe.TokenLimits)
	if err := sidoc.ReadFromBytes(sib.Bytes()); err != nil {
		return nil, reject(ErrSignatureProfile, "verified signedinfo unreadable")
	}
	vsi := sidoc.Root()
	if err := checkSignedInfo(vsi, id, nil); err != nil {
		return nil, err
	}
	h, digest, err := checkReference(vsi.ChildElements()[2], id)
	if err != nil {
		return nil, err
	}
	var canon bytes.Buffer
	canon.Grow(4096)
	excC14N(&canon, a, p.sig)
	hh := h.New()
	hh.Write(canon.Bytes())
	if subtle.ConstantTimeCompare(hh.Sum(nil), digest) != 1 {
		return nil, reject(ErrSignatureInvalid, "digest mismatch")
	}
	if !v.cfg.NativeOnly {
		if err := crossCheck(a, p, leaf, trustAt, canon.Bytes()); err != nil {
			return nil, err
		}
	}

	// Claims only from the verified canonical bytes.
	vdoc := etree.NewDocument()
	vdoc.ReadSettings = xmlsafe.ReadSettings(xmlsafe.TokenLimits)
	if err := vdoc.ReadFromBytes(canon.Bytes()); err != nil {
		return nil, reject(ErrStructure, "verified assertion unreadable")
	}
	out := &Verified{Type: typ, ID: id, Signer: ident, SignerCert: leaf, Chain: chain, Canonical: canon.Bytes()}
	if err := v.readAndCheck(vdoc.Root(), out, want, now); err != nil {
		return nil, err
	}
	if replay && out.Type == TypeTransaction {
		if err := v.cfg.Replay.Use(ctx, out.Issuer, out.ID, out.NotOnOrAfter().Add(v.cfg.Skew)); err != nil {
			if errorsIsReplay(err) {
				return nil, err
			}
			return nil, &rejectError{kind: ErrReplayStore, err: err, msg: err.Error()}
		}
	}
	return out, nil
}

// crossCheck verifies the same assertion independently with goxmldsig, with a
// certificate store holding only the verified leaf, and requires its returned
// element to be byte-identical (canonically) to what the native verifier read.
func crossCheck(a *etree.Element, p *sigParts, leaf *x509.Certificate, at time.Time, canon []byte) error {
	el := detach(a)
	if len(p.certs) == 0 {
		// IssuerSerial only: goxmldsig falls back to the single store certificate
		// (the leaf we resolved and verified) only when KeyInfo is absent.
		for _, c := range el.ChildElements() {
			if c.Tag == "Signature" && c.NamespaceURI() == NSDSig {
				for _, k := range c.ChildElements() {
					if k.Tag == "KeyInfo" {
						c.RemoveChild(k)
					}
				}
			}
		}
	}
	vc := dsig.NewDefaultValidationContext(&dsig.MemoryX509CertificateStore{Roots: []*x509.Certificate{leaf}})
	vc.Clock = dsig.NewFakeClockAt(at)
	got, err := vc.Validate(el)
	if err != nil {
		return reject(ErrSignatureInvalid, "goxmldsig: %v", err)
	}
	var b bytes.Buffer
	excC14N(&b, got, nil)
	if !bytes.Equal(b.Bytes(), canon) {
		return reject(ErrSignatureInvalid, "verifiers disagree on the signed content")
	}
	return nil
}

// detach copies el and declares on the copy the namespaces it inherits.
func detach(el *etree.Element) *etree.Element {
	scope := map[string]string{}
	var chain []*etree.Element
	for p := el.Parent(); p != nil; p = p.Parent() {
		chain = append(chain, p)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		declare(scope, chain[i])
	}
	c := el.Copy()
	own := map[string]bool{}
	for _, a := range c.Attr {
		if a.Space == "xmlns" {
			own[a.Key] = true
		} else if a.Space == "" && a.Key == "xmlns" {
			own[""] = true
		}
	}
	for prefix, uri := range scope {
		if own[prefix] {
			continue
		}
		if prefix == "" {
			c.CreateAttr("xmlns", uri)
		} else {
			c.CreateAttr("xmlns:"+prefix, uri)
		}
	}
	return c
}

// detectType decides the token type from the assertion's structure.
func detectType(a *etree.Element) (Type, error) {
	var method string
	attrs := map[string]bool{}
	for _, c := range a.ChildElements() {
		switch {
		case isEl(c, NSSAML, "Subject"):
			for _, sc := range c.ChildElements() {
				if isEl(sc, NSSAML, "SubjectConfirmation") {
					method = sc.SelectAttrValue("Method", "")
				}
			}
		case isEl(c, NSSAML, "AttributeStatement"):
			for _, at := range c.ChildElements() {
				attrs[at.SelectAttrValue("Name", "")] = true
			}
		}
	}
	switch {
	case method == MethodHolderOfKey:
		return TypeTransaction, nil
	case method == MethodSenderVouches && attrs[attrMandaatgever]:
		return TypeMandate, nil
	case method == MethodSenderVouches && attrs[attrUitvoerder]:
		return TypeEnrolment, nil
	}
	return 0, reject(ErrStructure, "cannot tell the token type (method=%q)", method)
}

func parseTime(s string) (time.Time, error) {
	if !strings.HasSuffix(s, "Z") || len(s) < 20 || len(s) > 40 {
		return time.Time{}, fmt.Errorf("not a utc xs:dateTime (value=%q)", s)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("not a utc xs:dateTime (value=%q)", s)
	}
	return t, nil
}
