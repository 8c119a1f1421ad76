package tokens

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/beevik/etree"
	"github.com/google/uuid"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/aortagw/aortagw/internal/uzi"
)

// MinRSABits is the smallest RSA modulus accepted for signing and verifying.
const MinRSABits = 2048

// Option configures a Signer.
type Option func(*Signer) error

// WithClock injects the clock (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(s *Signer) error { s.now = now; return nil }
}

// WithIDGenerator injects the generator of the part after the type prefix
// (ins_/mdt_/trx_). The default is a random UUID. The result must be an NCName
// part: letters, digits, '-', '_' and '.'.
func WithIDGenerator(newID func() string) Option {
	return func(s *Signer) error { s.newID = newID; return nil }
}

// WithTransactionLifetime sets NotOnOrAfter-IssueInstant for transaction
// tokens (default 5 minutes). Lifetimes that make the token valid longer than
// 90 minutes (NotBefore is IssueInstant-60s) are refused with ErrConfig.
func WithTransactionLifetime(d time.Duration) Option {
	return func(s *Signer) error {
		if d <= 0 || d+TransactionBackdate > MaxTransactionLifetime {
			return fmt.Errorf("%w: transaction lifetime must be in (0, %s] (lifetime=%s)", ErrConfig, MaxTransactionLifetime-TransactionBackdate, d)
		}
		s.trxLifetime = d
		return nil
	}
}

// WithEmbeddedCertificate also writes the signing certificate as
// ds:X509Certificate next to ds:X509IssuerSerial in the Signature's KeyInfo.
func WithEmbeddedCertificate(embed bool) Option {
	return func(s *Signer) error { s.embedCert = embed; return nil }
}

// WithMaxMandateLifetime caps NotOnOrAfter-NotBefore of mandates (default 5 years);
// the signing certificate's NotAfter caps it as well.
func WithMaxMandateLifetime(d time.Duration) Option {
	return func(s *Signer) error {
		if d <= 0 {
			return fmt.Errorf("%w: mandate lifetime must be positive", ErrConfig)
		}
		s.maxMandate = d
		return nil
	}
}

// Signer signs tokens with one key. It is immutable after NewSigner and safe
// for concurrent use; the crypto.Signer must be safe for concurrent use too
// (package pkcs11's keys are).
type Signer struct {
	key         crypto.Signer
	chain       []*x509.Certificate
	leaf        *x509.Certificate
	id          *uzi.Identity
	issuerName  string
	serial      string
	now         func() time.Time
	newID       func() string
	trxLifetime time.Duration
	maxMandate  time.Duration
	embedCert   bool
}

// NewSigner checks the key and its UZI certificate (chain leaf first) and
// returns a Signer. The key must be RSA >= 2048 bits and match the leaf; the
// leaf must parse as a UZI certificate. Which token types it may sign follows
// from the certificate's key purpose (see Signer.Types).
func NewSigner(key crypto.Signer, chain []*x509.Certificate, opts ...Option) (*Signer, error) {
	if key == nil || len(chain) == 0 || chain[0] == nil {
		return nil, fmt.Errorf("%w: key and certificate chain required", ErrConfig)
	}
	leaf := chain[0]
	pub, ok := key.Public().(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: only rsa keys are used for aorta tokens", ErrSignerKey)
	}
	if pub.N.BitLen() < MinRSABits {
		return nil, fmt.Errorf("%w: rsa key too small (bits=%d)", ErrSignerKey, pub.N.BitLen())
	}
	if lp, ok := leaf.PublicKey.(*rsa.PublicKey); !ok || !lp.Equal(pub) {
		return nil, fmt.Errorf("%w: key does not match the certificate", ErrSignerKey)
	}
	id, err := uzi.Parse(leaf)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSignerKey, err)
	}
	name, err := RenderIssuerName(leaf.RawIssuer)
	if err != nil {
		return nil, fmt.Errorf("%w: issuer name: %v", ErrSignerKey, err)
	}
	s := &Signer{
		key: key, chain: chain, leaf: leaf, id: id, issuerName: name, serial: leaf.SerialNumber.String(),
		now: time.Now, newID: uuid.NewString, trxLifetime: DefaultTransactionLifetime,
		maxMandate: DefaultMaxMandateLifetime,
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Identity returns the UZI identity of the signing certificate.
func (s *Signer) Identity() *uzi.Identity { return s.id }

// Certificate returns the signing certificate.
func (s *Signer) Certificate() *x509.Certificate { return s.leaf }

// Types returns the token types this key may sign: an authentication key of a
// Z or N card signs enrolment and transaction tokens, a non-repudiation key of
// a Z or N card signs mandate tokens, a server certificate signs transaction
// tokens (conditional query) only.
func (s *Signer) Types() []Type {
	var out []Type
	for _, t := range []Type{TypeEnrolment, TypeMandate, TypeTransaction} {
		if allowedSigner(t, s.id) == nil {
			out = append(out, t)
		}
	}
	return out
}

// allowedSigner is the key-purpose rule shared by signing and validation.
func allowedSigner(t Type, id *uzi.Identity) error {
	zn := id.CardType == uzi.CardZ || id.CardType == uzi.CardN
	switch t {
	case TypeEnrolment:
		if zn && id.Purpose == uzi.PurposeAuthentication {
			return nil
		}
	case TypeMandate:
		if zn && id.Purpose == uzi.PurposeNonRepudiation {
			return nil
		}
	case TypeTransaction:
		if (zn && id.Purpose == uzi.PurposeAuthentication) || (id.CardType == uzi.CardS && id.Purpose == uzi.PurposeServer) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s %s key cannot sign a %s token", ErrKeyUsage, id.CardType, id.Purpose.Short(), t)
}

var (
	reIDPart = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
	reDigits = func(n int) *regexp.Regexp { return regexp.MustCompile(fmt.Sprintf(`^[0-9]{%d}$`, n)) }
	reURA    = reDigits(8)
	reUZI    = reDigits(9)
	reRole   = regexp.MustCompile(`^[0-9]{2}\.[0-9]{3}$`)
	// reValue bounds free-text claim values: printable, no markup-significant surprises.
	reValue = regexp.MustCompile(`^[\x21-\x7e][\x20-\x7e]{0,254}$`)
)

func (s *Signer) checkSigner(t Type, now time.Time) error {
	if err := allowedSigner(t, s.id); err != nil {
		return fmt.Errorf("%w: %w", ErrSignerKey, err)
	}
	if now.Before(s.leaf.NotBefore) || !now.Before(s.leaf.NotAfter) {
		return fmt.Errorf("%w: certificate not valid now (not_before=%s, not_after=%s)", ErrSignerKey,
			s.leaf.NotBefore.UTC().Format(time.RFC3339), s.leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

func (s *Signer) makeID(t Type, given string) (string, error) {
	if given != "" {
		if !strings.HasPrefix(given, t.idPrefix()) || !reIDPart.MatchString(given) {
			return "", fmt.Errorf("%w: id must look like %s<uuid> (id=%q)", ErrInvalidClaims, t.idPrefix(), given)
		}
		return given, nil
	}
	part := s.newID()
	if !reIDPart.MatchString(part) {
		return "", fmt.Errorf("%w: id generator returned an unusable id", ErrInvalidClaims)
	}
	return t.idPrefix() + part, nil
}

func audiences(in []string) ([]string, error) {
	if len(in) == 0 {
		return []string{AudienceZIM}, nil
	}
	out := make([]string, 0, len(in))
	seen := map[string]bool{}
	zim := false
	for _, a := range in {
		if !reValue.MatchString(a) || seen[a] {
			return nil, fmt.Errorf("%w: bad or repeated audience (audience=%q)", ErrInvalidClaims, a)
		}
		seen[a] = true
		zim = zim || a == AudienceZIM
		out = append(out, a)
	}
	if !zim {
		return nil, fmt.Errorf("%w: audiences must include the zim %s", ErrInvalidClaims, AudienceZIM)
	}
	return out, nil
}

func truncMillis(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

// SignEnrolment signs an inschrijftoken. Zero times are filled from the clock
// (IssueInstant = AuthnInstant = now, NotBefore = IssueInstant, NotOnOrAfter =
// NotBefore + 548 days). Refused: a key that is not the authentication key of a
// Z/N card, NotBefore before the certificate's NotBefore, a validity longer than
// 548 days, a BSN that fails the eleven-test, an Uitvoerder other than the
// signer's UZI number.
func (s *Signer) SignEnrolment(e Enrolment) (*Signed, error) {
	now := truncMillis(s.now())
	if err := s.checkSigner(TypeEnrolment, now); err != nil {
		return nil, err
	}
	var err error
	if e.ID, err = s.makeID(TypeEnrolment, e.ID); err != nil {
		return nil, err
	}
	if e.IssueInstant.IsZero() {
		e.IssueInstant = now
	}
	if e.AuthnInstant.IsZero() {
		e.AuthnInstant = e.IssueInstant
	}
	if e.NotBefore.IsZero() {
		e.NotBefore = e.IssueInstant
	}
	if e.NotOnOrAfter.IsZero() {
		e.NotOnOrAfter = e.NotBefore.Add(MaxEnrolmentLifetime)
	}
	e.IssueInstant, e.AuthnInstant, e.NotBefore, e.NotOnOrAfter = truncMillis(e.IssueInstant), truncMillis(e.AuthnInstant), truncMillis(e.NotBefore), truncMillis(e.NotOnOrAfter)
	switch {
	case !reURA.MatchString(e.URA):
		return nil, fmt.Errorf("%w: ura must be 8 digits (ura=%q)", ErrInvalidClaims, e.URA)
	case !uzi.ValidBSN(e.BSN):
		return nil, fmt.Errorf("%w: bsn fails the eleven-test", ErrInvalidClaims)
	case e.Uitvoerder != "" && e.Uitvoerder != s.id.UZI:
		return nil, fmt.Errorf("%w: uitvoerder must be the signer's uzi number (uitvoerder=%q)", ErrInvalidClaims, e.Uitvoerder)
	case e.NotBefore.Before(s.leaf.NotBefore):
		return nil, fmt.Errorf("%w: notbefore before the certificate's notbefore", ErrValidityRule)
	case !e.NotOnOrAfter.After(e.NotBefore):
		return nil, fmt.Errorf("%w: notonorafter must be after notbefore", ErrValidityRule)
	case e.NotOnOrAfter.Sub(e.NotBefore) > MaxEnrolmentLifetime:
		return nil, fmt.Errorf("%w: enrolment valid at most 548 days (lifetime=%s)", ErrValidityRule, e.NotOnOrAfter.Sub(e.NotBefore))
	case e.IssueInstant.After(now.Add(time.Minute)) || e.AuthnInstant.After(e.IssueInstant):
		return nil, fmt.Errorf("%w: issueinstant in the future or authninstant after it", ErrValidityRule)
	}
	e.Uitvoerder = s.id.UZI
	if e.Audiences, err = audiences(e.Audiences); err != nil {
		return nil, err
	}
	el := buildEnrolment(&e, s.issuerName, s.serial)
	return s.sign(context.Background(), el, TypeEnrolment, e.ID, URAPrefix+e.URA, e.NotOnOrAfter)
}

// SignMandate signs a mandaattoken with the non-repudiation key of a Z/N card.
// NotOnOrAfter after the certificate's NotAfter is refused, unless
// UntilCardExpiry is set: then a zero NotOnOrAfter becomes the certificate's
// NotAfter and a later one is clamped to it. GiverUZI/GiverRole default to the
// certificate's and must match it.
func (s *Signer) SignMandate(m Mandate) (*Signed, error) {
	now := truncMillis(s.now())
	if err := s.checkSigner(TypeMandate, now); err != nil {
		return nil, err
	}
	var err error
	if m.ID, err = s.makeID(TypeMandate, m.ID); err != nil {
		return nil, err
	}
	if m.IssueInstant.IsZero() {
		m.IssueInstant = now
	}
	if m.NotBefore.IsZero() {
		m.NotBefore = m.IssueInstant
	}
	certEnd := truncMillis(s.leaf.NotAfter)
	if m.UntilCardExpiry && (m.NotOnOrAfter.IsZero() || m.NotOnOrAfter.After(certEnd)) {
		m.NotOnOrAfter = certEnd
	}
	m.IssueInstant, m.NotBefore, m.NotOnOrAfter = truncMillis(m.IssueInstant), truncMillis(m.NotBefore), truncMillis(m.NotOnOrAfter)
	if m.GiverUZI == "" {
		m.GiverUZI = s.id.UZI
	}
	if m.GiverRole == "" {
		m.GiverRole = s.id.Role
	}
	switch {
	case m.NotOnOrAfter.IsZero():
		return nil, fmt.Errorf("%w: mandate needs notonorafter (or until card expiry)", ErrValidityRule)
	case m.NotOnOrAfter.After(certEnd):
		return nil, fmt.Errorf("%w: mandate would outlive the signing certificate (not_after=%s)", ErrValidityRule, certEnd.Format(TimeFormat))
	case m.NotBefore.Before(truncMillis(s.leaf.NotBefore)):
		return nil, fmt.Errorf("%w: notbefore before the certificate's notbefore", ErrValidityRule)
	case !m.NotOnOrAfter.After(m.NotBefore):
		return nil, fmt.Errorf("%w: notonorafter must be after notbefore", ErrValidityRule)
	case m.NotOnOrAfter.Sub(m.NotBefore) > s.maxMandate:
		return nil, fmt.Errorf("%w: mandate lifetime above maximum (max=%s)", ErrValidityRule, s.maxMandate)
	case m.IssueInstant.After(now.Add(time.Minute)):
		return nil, fmt.Errorf("%w: issueinstant in the future", ErrValidityRule)
	case !reURA.MatchString(m.URA):
		return nil, fmt.Errorf("%w: ura must be 8 digits (ura=%q)", ErrInvalidClaims, m.URA)
	case m.GiverUZI != s.id.UZI || m.GiverRole != s.id.Role:
		return nil, fmt.Errorf("%w: mandaatgever must be the signer (giver=%s:%s)", ErrInvalidClaims, m.GiverUZI, m.GiverRole)
	case !reValue.MatchString(m.Context):
		return nil, fmt.Errorf("%w: autorisatieregel/context required", ErrInvalidClaims)
	case m.ApplicationID != "" && !strings.HasPrefix(m.ApplicationID, AppIDPrefix):
		return nil, fmt.Errorf("%w: applicationid must be %s<id>", ErrInvalidClaims, AppIDPrefix)
	}
	seen := map[string]bool{}
	for _, g := range m.Mandated {
		if !validMandated(g) || seen[g] {
			return nil, fmt.Errorf("%w: bad or repeated gemandateerde (value=%q)", ErrInvalidClaims, g)
		}
		seen[g] = true
	}
	if m.Audiences, err = audiences(m.Audiences); err != nil {
		return nil, err
	}
	return s.sign(context.Background(), buildMandate(&m), TypeMandate, m.ID, UZIPrefix+m.GiverUZI, m.NotOnOrAfter)
}

func validMandated(g string) bool {
	if strings.HasPrefix(g, AppIDPrefix) {
		return reValue.MatchString(g)
	}
	uziNr, role, hasRole := strings.Cut(g, ":")
	return reUZI.MatchString(uziNr) && (!hasRole || reRole.MatchString(role))
}

// SignTransaction signs a transactietoken. Zero times: IssueInstant = now,
// NotBefore = now-60s, NotOnOrAfter = now + lifetime (default 5 minutes);
// NotOnOrAfter-NotBefore above 90 minutes is refused. With a caregiver's
// authentication key NameID is "<UZI>:<role>" of the certificate; with the
// server certificate NameID is empty (conditional query).
func (s *Signer) SignTransaction(t Transaction) (*Signed, error) {
	return s.SignTransactionContext(context.Background(), t)
}

// SignTransactionContext is SignTransaction with the signature made under
// ctx when the key is a ContextSigner (package pkcs11's keys are): the
// caller's deadline and cancellation bound the wait for the HSM, and the
// key's audit event sees ctx (the gateway names the acting person in it).
func (s *Signer) SignTransactionContext(ctx context.Context, t Transaction) (*Signed, error) {
	now := truncMillis(s.now())
	if err := s.checkSigner(TypeTransaction, now); err != nil {
		return nil, err
	}
	var err error
	if t.ID, err = s.makeID(TypeTransaction, t.ID); err != nil {
		return nil, err
	}
	if t.IssueInstant.IsZero() {
		t.IssueInstant = now
	}
	if t.NotBefore.IsZero() {
		t.NotBefore = t.IssueInstant.Add(-TransactionBackdate)
	}
	if t.NotOnOrAfter.IsZero() {
		t.NotOnOrAfter = t.IssueInstant.Add(s.trxLifetime)
	}
	t.IssueInstant, t.NotBefore, t.NotOnOrAfter = truncMillis(t.IssueInstant), truncMillis(t.NotBefore), truncMillis(t.NotOnOrAfter)
	want := ""
	if s.id.CardType != uzi.CardS {
		want = s.id.NameID()
	}
	if t.NameID == "" {
		t.NameID = want
	}
	switch {
	case t.NameID != want:
		return nil, fmt.Errorf("%w: nameid must be the signer's uzi:role, or empty for a server certificate (nameid=%q)", ErrInvalidClaims, t.NameID)
	case !t.NotOnOrAfter.After(t.NotBefore) || t.NotBefore.After(t.IssueInstant):
		return nil, fmt.Errorf("%w: need notbefore <= issueinstant < notonorafter", ErrValidityRule)
	case t.NotOnOrAfter.Sub(t.NotBefore) > MaxTransactionLifetime:
		return nil, fmt.Errorf("%w: transaction token valid at most 90 minutes (lifetime=%s)", ErrValidityRule, t.NotOnOrAfter.Sub(t.NotBefore))
	case t.IssueInstant.After(now.Add(time.Minute)):
		return nil, fmt.Errorf("%w: issueinstant in the future", ErrValidityRule)
	case t.NotOnOrAfter.After(s.leaf.NotAfter):
		return nil, fmt.Errorf("%w: token would outlive the signing certificate", ErrValidityRule)
	case !reURA.MatchString(t.URA):
		return nil, fmt.Errorf("%w: ura must be 8 digits (ura=%q)", ErrInvalidClaims, t.URA)
	case s.id.CardType == uzi.CardS && t.URA != s.id.URA:
		return nil, fmt.Errorf("%w: server-signed token must carry the server certificate's ura (ura=%s)", ErrInvalidClaims, t.URA)
	case t.BSN != "" && !uzi.ValidBSN(t.BSN):
		return nil, fmt.Errorf("%w: bsn fails the eleven-test", ErrInvalidClaims)
	case !reValue.MatchString(t.InteractionID) || !reValue.MatchString(t.MessageIDRoot) || !reValue.MatchString(t.MessageIDExt):
		return nil, fmt.Errorf("%w: interactionid, messageidroot and messageidext are required", ErrInvalidClaims)
	case s.id.CardType == uzi.CardS && !reValue.MatchString(t.Context):
		return nil, fmt.Errorf("%w: a server-signed token needs autorisatieregel/context (it goes with a mandate)", ErrInvalidClaims)
	}
	for _, v := range []string{t.Context, t.ApplicationID, t.ContextCodeSystem, t.ContextCode} {
		if v != "" && !reValue.MatchString(v) {
			return nil, fmt.Errorf("%w: attribute value not allowed (value=%q)", ErrInvalidClaims, v)
		}
	}
	if t.Audiences, err = audiences(t.Audiences); err != nil {
		return nil, err
	}
	return s.sign(ctx, buildTransaction(&t, s.issuerName, s.serial), TypeTransaction, t.ID, URAPrefix+t.URA, t.NotOnOrAfter)
}

// sign is the one signing recipe (CONVENTIONS 12): goxmldsig SigningContext
// over the crypto.Signer, exclusive C14N (our canonicaliser, cross-checked in
// tests), RSA-SHA256 set explicitly, SHA-256 digest, Reference "#ID",
// transforms enveloped + exc-c14n; Signature inserted right after Issuer;
// serialised once, in canonical form.
func (s *Signer) sign(ctx context.Context, el *etree.Element, t Type, id, issuer string, noa time.Time) (*Signed, error) {
	var certs [][]byte
	if s.embedCert {
		certs = [][]byte{s.leaf.Raw}
	}
	key := s.key
	if cs, ok := key.(ContextSigner); ok {
		key = boundSigner{cs, ctx}
	}
	sc, err := dsig.NewSigningContext(key, certs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSigningFailed, err)
	}
	rec := &recordingCanonicalizer{}
	sc.Canonicalizer = rec
	if err := sc.SetSignatureMethod(dsig.RSASHA256SignatureMethod); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSigningFailed, err)
	}
	sig, err := sc.ConstructSignature(el, true)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSigningFailed, err)
	}
	addIssuerSerial(sig, s.issuerName, s.serial)
	el.InsertChildAt(1, sig) // child 0 is saml:Issuer (built that way)
	// The token is the canonical form of the signed assertion: the canonical
	// bytes the digest was computed over with the Signature's canonical form
	// spliced in after </saml:Issuer> (the Signature declares its own ds
	// namespace, and nothing around it changes). Tests check the result equals
	// a full canonicalisation and goxmldsig's own recipe byte for byte.
	const issuerEnd = "</saml:Issuer>"
	i := bytes.Index(rec.first, []byte(issuerEnd))
	if rec.first == nil || i < 0 {
		return nil, fmt.Errorf("%w: canonical assertion not recorded", ErrSigningFailed)
	}
	i += len(issuerEnd)
	var buf bytes.Buffer
	buf.Grow(len(rec.first) + 3<<10)
	buf.Write(rec.first[:i])
	excC14N(&buf, sig, nil)
	buf.Write(rec.first[i:])
	return &Signed{typ: t, id: id, issuer: issuer, notOnOrAfter: noa, raw: buf.Bytes()}, nil
}

// ContextSigner is a crypto.Signer that can sign under a context
// (deadline, cancellation, the audit event's actor); *pkcs11.Key is one.
type ContextSigner interface {
	crypto.Signer
	SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error)
}

// boundSigner is a ContextSigner fixed to one context, for goxmldsig, which
// calls crypto.Signer.Sign. One per signature.
type boundSigner struct {
	ContextSigner
	ctx context.Context
}

// Sign signs under the bound context.
func (b boundSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return b.SignContext(b.ctx, digest, opts)
}

// recordingCanonicalizer is the exclusive canonicaliser that keeps the first
// output (goxmldsig canonicalises the element to sign first, then SignedInfo).
// One per signature; not shared.
type recordingCanonicalizer struct {
	canonicalizer
	first []byte
}

func (r *recordingCanonicalizer) Canonicalize(el *etree.Element) ([]byte, error) {
	b, err := r.canonicalizer.Canonicalize(el)
	if r.first == nil {
		r.first = b
	}
	return b, err
}

// addIssuerSerial puts ds:X509IssuerSerial first in the Signature's ds:X509Data.
func addIssuerSerial(sig *etree.Element, issuerName, serial string) {
	var x509Data *etree.Element
	for _, c := range sig.ChildElements() {
		if c.Tag == "KeyInfo" {
			for _, d := range c.ChildElements() {
				if d.Tag == "X509Data" {
					x509Data = d
				}
			}
		}
	}
	if x509Data == nil {
		return
	}
	is := etree.NewElement("ds:X509IssuerSerial")
	is.CreateElement("ds:X509IssuerName").SetText(issuerName)
	is.CreateElement("ds:X509SerialNumber").SetText(serial)
	x509Data.InsertChildAt(0, is)
}
