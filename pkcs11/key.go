//go:build cgo && !nopkcs11

package pkcs11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"sync"
	"time"

	"github.com/miekg/pkcs11"
	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Key is a private key on a PKCS#11 token. It implements crypto.Signer and is safe for
// concurrent use. Close is idempotent; it refuses new signatures and waits for those in flight.
type Key struct {
	tok    *token
	uri    string // redacted
	id     []byte
	object string // CKA_LABEL filter ("" when the URI had none)
	opts   Options

	pub        crypto.PublicKey
	cert       *x509.Certificate
	chain      []*x509.Certificate
	alwaysAuth bool

	hMu  sync.Mutex
	h    pkcs11.ObjectHandle
	hGen uint64

	authMu sync.Mutex // serialises CKA_ALWAYS_AUTHENTICATE signatures (P7)

	closeMu sync.RWMutex // held for reading by operations (G6)
	closed  bool
}

// Interface guards.
var (
	_ crypto.Signer = (*Key)(nil)
	_ io.Closer     = (*Key)(nil)
)

// Open opens the private key named by the RFC 7512 URI (token attributes, plus id and/or
// object; type, if given, must be private). It loads the module (allow-listed), logs in once,
// finds the key, its public key and certificates, and reads the token's mechanism list.
func Open(ctx context.Context, uri string, opts Options) (*Key, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	if t, ok := u.Path("type"); ok && t != "private" {
		return nil, fmt.Errorf("%w: type must be private (uri=%s)", ErrInvalidURI, u.Redacted())
	}
	_, hasObj := u.Path("object")
	if u.ID() == nil && !hasObj {
		return nil, fmt.Errorf("%w: id or object is required (uri=%s)", ErrInvalidURI, u.Redacted())
	}
	lib, tok, err := openToken(ctx, u, opts)
	if err != nil {
		return nil, err
	}
	obj, _ := u.Path("object")
	k, err := newKey(ctx, tok, u, u.ID(), obj, opts)
	if err != nil {
		tok.release()
		lib.release()
		return nil, err
	}
	return k, nil
}

// openToken resolves the module (allow-list), loads it and acquires the token state.
func openToken(ctx context.Context, u *URI, opts Options) (*library, *token, error) {
	if u.HasPINValue() && !opts.AllowPINValue {
		return nil, nil, ErrPINValueNotAllowed
	}
	mp := u.ModulePath()
	if name, ok := u.Query("module-name"); ok {
		var err error
		if mp, err = moduleByName(name, opts.AllowedModules); err != nil {
			return nil, nil, err
		}
	}
	if mp == "" {
		mp = opts.ModulePath
	}
	if mp == "" {
		return nil, nil, fmt.Errorf("%w: no module-path (uri=%s)", ErrInvalidURI, u.Redacted())
	}
	resolved, err := checkAllowed(mp, opts.AllowedModules)
	if err != nil {
		return nil, nil, err
	}
	lib, err := acquireLibrary(resolved)
	if err != nil {
		return nil, nil, err
	}
	tok, err := openTokenOn(ctx, lib, u, opts)
	if err != nil {
		lib.release()
		return nil, nil, err
	}
	return lib, tok, nil
}

func openTokenOn(ctx context.Context, lib *library, u *URI, opts Options) (*token, error) {
	slot, ti, err := findSlot(lib.mod, u)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: register metrics: %w", err)
	}
	return acquireToken(ctx, lib, slot, ti, u, opts, m)
}

// newKey finds the private key by id/label, reads its attributes, public key and certificates.
func newKey(ctx context.Context, tok *token, u *URI, id []byte, object string, opts Options) (*Key, error) {
	k := &Key{tok: tok, uri: u.Redacted(), id: id, object: object, opts: opts}
	ctx, cancel := context.WithTimeout(ctx, opts.opTimeout())
	defer cancel()
	s, err := tok.get(ctx)
	if err != nil {
		return nil, err
	}
	err = k.load(s)
	tok.put(s, deviceErr(err))
	if err != nil {
		return nil, err
	}
	return k, nil
}

// deviceErr keeps only module errors (for session handling); our own errors do not taint a
// session that ran no operation.
func deviceErr(err error) error {
	if _, ok := rv(err); ok {
		return err
	}
	return nil
}

func (k *Key) load(s session) error {
	m := k.tok.lib.mod
	tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)}
	if k.id != nil {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, k.id))
	}
	if k.object != "" {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_LABEL, k.object))
	}
	hs, err := findObjects(m, s.h, tmpl, 2)
	if err != nil {
		return err
	}
	switch len(hs) {
	case 0:
		return fmt.Errorf("%w: (uri=%s)", ErrKeyNotFound, k.uri)
	case 1:
	default:
		return fmt.Errorf("%w: private keys (uri=%s)", ErrAmbiguous, k.uri)
	}
	attrs, err := m.GetAttributeValue(s.h, hs[0], []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, nil),
	})
	if err != nil {
		return fmt.Errorf("key attributes (uri=%s): %w", k.uri, opErr("C_GetAttributeValue", err))
	}
	k.id = bytes.Clone(attrs[0].Value)
	if !attrBool(attrs[2]) {
		return fmt.Errorf("%w: key has no CKA_SIGN (uri=%s)", ErrUnsupported, k.uri)
	}
	// CKA_ALWAYS_AUTHENTICATE is optional (v2.20+): absent or unreadable means false (P7).
	if aa, err := m.GetAttributeValue(s.h, hs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ALWAYS_AUTHENTICATE, nil)}); err == nil {
		k.alwaysAuth = attrBool(aa[0])
	}
	k.h, k.hGen = hs[0], s.gen

	certs, err := readCertificates(m, s.h)
	if err != nil {
		return err
	}
	for _, c := range certs {
		if bytes.Equal(c.id, k.id) {
			k.cert = c.cert
			break
		}
	}
	keyType := attrUint(attrs[1])
	pub, err := readPublic(m, s.h, k.id, keyType)
	if err != nil {
		return err
	}
	switch {
	case k.cert != nil && pub != nil:
		if !publicEqual(k.cert.PublicKey, pub) {
			return fmt.Errorf("%w: certificate does not match the key's public key (uri=%s)", ErrKeyNotFound, k.uri)
		}
		k.pub = pub
	case k.cert != nil:
		k.pub = k.cert.PublicKey
	case pub != nil:
		k.pub = pub
	default:
		return fmt.Errorf("%w: no public key or certificate with the key's CKA_ID (uri=%s)", ErrKeyNotFound, k.uri)
	}
	switch p := k.pub.(type) {
	case *rsa.PublicKey:
		if keyType != pkcs11.CKK_RSA {
			return fmt.Errorf("%w: key type mismatch (uri=%s)", ErrUnsupported, k.uri)
		}
		if p.N.BitLen() < 2048 {
			return fmt.Errorf("%w: rsa key below 2048 bits (uri=%s)", ErrUnsupported, k.uri)
		}
	case *ecdsa.PublicKey:
		if keyType != pkcs11.CKK_EC {
			return fmt.Errorf("%w: key type mismatch (uri=%s)", ErrUnsupported, k.uri)
		}
	default:
		return fmt.Errorf("%w: key type (uri=%s)", ErrUnsupported, k.uri)
	}
	if k.cert != nil {
		k.chain = buildChain(k.cert, certs)
	}
	return nil
}

type tokenCert struct {
	id   []byte
	cert *x509.Certificate
}

// readCertificates returns every X.509 certificate object on the token (unparsable ones are
// skipped).
func readCertificates(m module, sh pkcs11.SessionHandle) ([]tokenCert, error) {
	hs, err := findObjects(m, sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE),
		pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_TYPE, pkcs11.CKC_X_509),
	}, 64)
	if err != nil {
		return nil, err
	}
	out := make([]tokenCert, 0, len(hs))
	for _, h := range hs {
		a, err := m.GetAttributeValue(sh, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_ID, nil), pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
		if err != nil {
			if isFatal(err) {
				return nil, opErr("C_GetAttributeValue", err)
			}
			continue
		}
		c, err := x509.ParseCertificate(a[1].Value)
		if err != nil {
			continue
		}
		out = append(out, tokenCert{id: bytes.Clone(a[0].Value), cert: c})
	}
	return out, nil
}

// buildChain returns leaf followed by its issuers as far as they are on the token.
func buildChain(leaf *x509.Certificate, certs []tokenCert) []*x509.Certificate {
	chain := []*x509.Certificate{leaf}
	cur := leaf
	for len(chain) < 8 {
		if bytes.Equal(cur.RawIssuer, cur.RawSubject) {
			break // self-signed
		}
		var next *x509.Certificate
		for _, c := range certs {
			if c.cert.Equal(cur) || !bytes.Equal(c.cert.RawSubject, cur.RawIssuer) {
				continue
			}
			if cur.CheckSignatureFrom(c.cert) == nil {
				next = c.cert
				break
			}
		}
		if next == nil {
			break
		}
		chain = append(chain, next)
		cur = next
	}
	return chain
}

// findObjects runs one FindObjects cycle and always finalises it (P5).
func findObjects(m module, sh pkcs11.SessionHandle, tmpl []*pkcs11.Attribute, max int) (_ []pkcs11.ObjectHandle, err error) {
	if err := m.FindObjectsInit(sh, tmpl); err != nil {
		return nil, opErr("C_FindObjectsInit", err)
	}
	defer func() {
		if ferr := m.FindObjectsFinal(sh); ferr != nil && err == nil {
			err = opErr("C_FindObjectsFinal", ferr)
		}
	}()
	hs, _, err := m.FindObjects(sh, max)
	if err != nil {
		return nil, opErr("C_FindObjects", err)
	}
	return hs, nil
}

// readPublic reads the public key object with the same CKA_ID (nil when there is none).
func readPublic(m module, sh pkcs11.SessionHandle, id []byte, keyType uint) (crypto.PublicKey, error) {
	hs, err := findObjects(m, sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}, 2)
	if err != nil || len(hs) == 0 {
		return nil, err
	}
	switch keyType {
	case pkcs11.CKK_RSA:
		return readRSAPublic(m, sh, hs[0])
	case pkcs11.CKK_EC:
		a, err := m.GetAttributeValue(sh, hs[0], []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil), pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
		if err != nil {
			return nil, opErr("C_GetAttributeValue", err)
		}
		return parseECPublic(a[0].Value, a[1].Value)
	}
	return nil, nil
}

func parseECPublic(params, point []byte) (*ecdsa.PublicKey, error) {
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(params, &oid); err != nil {
		return nil, fmt.Errorf("%w: ec params", ErrUnsupported)
	}
	var curve elliptic.Curve
	switch {
	case oid.Equal(asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}):
		curve = elliptic.P256()
	case oid.Equal(asn1.ObjectIdentifier{1, 3, 132, 0, 34}):
		curve = elliptic.P384()
	case oid.Equal(asn1.ObjectIdentifier{1, 3, 132, 0, 35}):
		curve = elliptic.P521()
	default:
		return nil, fmt.Errorf("%w: ec curve (oid=%s)", ErrUnsupported, oid)
	}
	var raw []byte
	if _, err := asn1.Unmarshal(point, &raw); err != nil {
		raw = point // some modules return the bare point
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: ec point", ErrUnsupported)
	}
	return pub, nil
}

func publicEqual(a, b crypto.PublicKey) bool {
	type eq interface{ Equal(crypto.PublicKey) bool }
	if e, ok := a.(eq); ok {
		return e.Equal(b)
	}
	return false
}

func attrBool(a *pkcs11.Attribute) bool { return len(a.Value) > 0 && a.Value[0] != 0 }

func attrUint(a *pkcs11.Attribute) uint {
	var v uint
	for i := len(a.Value) - 1; i >= 0; i-- { // little endian (Linux)
		v = v<<8 | uint(a.Value[i])
	}
	return v
}

// handle returns the key's object handle for the session's generation, re-finding it by
// CKA_ID after a recovery (P3).
func (k *Key) handle(s session) (pkcs11.ObjectHandle, error) {
	k.hMu.Lock()
	defer k.hMu.Unlock()
	if k.hGen == s.gen {
		return k.h, nil
	}
	tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_ID, k.id)}
	if k.object != "" {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_LABEL, k.object))
	}
	hs, err := findObjects(k.tok.lib.mod, s.h, tmpl, 2)
	if err != nil {
		return 0, err
	}
	if len(hs) != 1 {
		return 0, fmt.Errorf("%w: after recovery (uri=%s)", ErrKeyNotFound, k.uri)
	}
	k.h, k.hGen = hs[0], s.gen
	return k.h, nil
}

// Public returns the public key.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Certificate returns the certificate with the key's CKA_ID, or nil when the token has none.
func (k *Key) Certificate() *x509.Certificate { return k.cert }

// Chain returns the key's certificate followed by its issuers found on the token (leaf
// first), or nil when the token holds no certificate for the key. The slice is a copy.
func (k *Key) Chain() []*x509.Certificate { return append([]*x509.Certificate(nil), k.chain...) }

// URI returns the key's URI, redacted (no PIN).
func (k *Key) URI() string { return k.uri }

// Healthy checks the token with C_GetSessionInfo on the persistent session (for /readyz). It
// returns nil when the token is logged in and usable.
func (k *Key) Healthy(ctx context.Context) error {
	k.closeMu.RLock()
	defer k.closeMu.RUnlock()
	if k.closed {
		return ErrClosed
	}
	return k.tok.health(ctx)
}

// Close refuses new signatures, waits for those in flight and releases the token (the last
// Key of a token closes its sessions) and the module. It is idempotent.
func (k *Key) Close() error {
	k.closeMu.Lock()
	if k.closed {
		k.closeMu.Unlock()
		return nil
	}
	k.closed = true
	k.closeMu.Unlock()
	lib := k.tok.lib
	k.tok.release()
	lib.release()
	return nil
}

// Sign signs digest (crypto.Signer). opts selects PKCS#1 v1.5 (a crypto.Hash) or PSS
// (*rsa.PSSOptions) for RSA keys; ECDSA signatures are returned DER-encoded. It is bounded by
// Options.OpTimeout; use SignContext to pass a request context.
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.SignContext(context.Background(), digest, opts)
}

// SignContext is Sign with a context: waiting for a session and the operation end when ctx
// ends or Options.OpTimeout has passed, whichever comes first.
func (k *Key) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	mech, data, err := k.mechanism(digest, opts)
	if err != nil {
		return nil, err
	}
	return k.run(ctx, mech, data, opts)
}

// SignMessage signs a whole message with hash opts.HashFunc(). It uses the token's
// hash-and-sign mechanism (e.g. CKM_SHA256_RSA_PKCS) when the token lacks CKM_RSA_PKCS, and
// otherwise hashes in Go and signs the digest like SignContext.
func (k *Key) SignMessage(ctx context.Context, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	h := opts.HashFunc()
	if _, pss := opts.(*rsa.PSSOptions); !pss {
		if _, ok := k.pub.(*rsa.PublicKey); ok && !hasMechanism(k.tok.mechs, pkcs11.CKM_RSA_PKCS) {
			if mt, ok := hashAndSign[h]; ok && hasMechanism(k.tok.mechs, mt) {
				return k.run(ctx, []*pkcs11.Mechanism{pkcs11.NewMechanism(mt, nil)}, msg, opts)
			}
		}
	}
	if !h.Available() {
		return nil, fmt.Errorf("%w: hash (hash=%v)", ErrUnsupported, h)
	}
	hh := h.New()
	hh.Write(msg)
	return k.SignContext(ctx, hh.Sum(nil), opts)
}

var hashAndSign = map[crypto.Hash]uint{
	crypto.SHA256: pkcs11.CKM_SHA256_RSA_PKCS,
	crypto.SHA384: pkcs11.CKM_SHA384_RSA_PKCS,
	crypto.SHA512: pkcs11.CKM_SHA512_RSA_PKCS,
}

// DigestInfo prefixes (RFC 8017 section 9.2 note 1), as in crypto/rsa.
var digestInfo = map[crypto.Hash][]byte{
	crypto.SHA224: {0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c},
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

var pssHash = map[crypto.Hash][2]uint{
	crypto.SHA256: {pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256},
	crypto.SHA384: {pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384},
	crypto.SHA512: {pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512},
}

// mechanism chooses the mechanism and the data for a digest signature.
func (k *Key) mechanism(digest []byte, opts crypto.SignerOpts) ([]*pkcs11.Mechanism, []byte, error) {
	if opts == nil {
		return nil, nil, fmt.Errorf("%w: nil signer opts", ErrUnsupported)
	}
	h := opts.HashFunc()
	if h == 0 || !h.Available() {
		return nil, nil, fmt.Errorf("%w: hash (hash=%v)", ErrUnsupported, h)
	}
	if len(digest) != h.Size() {
		return nil, nil, fmt.Errorf("%w: (hash=%v want=%d got=%d)", ErrDigestLength, h, h.Size(), len(digest))
	}
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		if po, ok := opts.(*rsa.PSSOptions); ok {
			hm, ok := pssHash[h]
			if !ok || !hasMechanism(k.tok.mechs, pkcs11.CKM_RSA_PKCS_PSS) {
				return nil, nil, fmt.Errorf("%w: rsa-pss (hash=%v)", ErrUnsupported, h)
			}
			emLen := (pub.N.BitLen() - 1 + 7) / 8
			salt := po.SaltLength
			switch salt {
			case rsa.PSSSaltLengthAuto:
				salt = emLen - 2 - h.Size()
			case rsa.PSSSaltLengthEqualsHash:
				salt = h.Size()
			}
			if salt < 0 || salt > emLen-2-h.Size() {
				return nil, nil, fmt.Errorf("%w: pss salt length (salt=%d)", ErrUnsupported, po.SaltLength)
			}
			params := pkcs11.NewPSSParams(hm[0], hm[1], uint(salt))
			return []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, params)}, digest, nil
		}
		if !hasMechanism(k.tok.mechs, pkcs11.CKM_RSA_PKCS) {
			if mt, ok := hashAndSign[h]; ok && hasMechanism(k.tok.mechs, mt) {
				return nil, nil, ErrNeedsMessage
			}
			return nil, nil, fmt.Errorf("%w: token offers no rsa pkcs#1 v1.5 mechanism", ErrUnsupported)
		}
		prefix, ok := digestInfo[h]
		if !ok {
			return nil, nil, fmt.Errorf("%w: hash (hash=%v)", ErrUnsupported, h)
		}
		data := make([]byte, 0, len(prefix)+len(digest))
		data = append(append(data, prefix...), digest...)
		return []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}, data, nil
	case *ecdsa.PublicKey:
		if _, ok := opts.(*rsa.PSSOptions); ok {
			return nil, nil, fmt.Errorf("%w: pss with an ec key", ErrUnsupported)
		}
		if !hasMechanism(k.tok.mechs, pkcs11.CKM_ECDSA) {
			return nil, nil, fmt.Errorf("%w: token offers no CKM_ECDSA", ErrUnsupported)
		}
		return []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, digest, nil
	}
	return nil, nil, fmt.Errorf("%w: key type", ErrUnsupported)
}

// mechName names a mechanism for audit events.
func mechName(m uint) string {
	switch m {
	case pkcs11.CKM_RSA_PKCS:
		return "CKM_RSA_PKCS"
	case pkcs11.CKM_RSA_PKCS_PSS:
		return "CKM_RSA_PKCS_PSS"
	case pkcs11.CKM_ECDSA:
		return "CKM_ECDSA"
	case pkcs11.CKM_SHA256_RSA_PKCS:
		return "CKM_SHA256_RSA_PKCS"
	case pkcs11.CKM_SHA384_RSA_PKCS:
		return "CKM_SHA384_RSA_PKCS"
	case pkcs11.CKM_SHA512_RSA_PKCS:
		return "CKM_SHA512_RSA_PKCS"
	}
	return fmt.Sprintf("0x%x", m)
}

type signResult struct {
	sig []byte
	err error
}

// run borrows a session and signs; the C calls run in their own goroutine so that the caller
// is released at its deadline even when the token hangs (G8). That goroutine keeps the
// session (and its pool slot) until the module returns, then discards it.
func (k *Key) run(ctx context.Context, mech []*pkcs11.Mechanism, data []byte, opts crypto.SignerOpts) (sig []byte, err error) {
	start := time.Now()
	defer func() { k.finish(ctx, start, mech[0].Mechanism, err) }()
	k.closeMu.RLock()
	defer k.closeMu.RUnlock()
	if k.closed {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sign (uri=%s): %w", k.uri, err)
	}
	ctx, cancel := context.WithTimeout(ctx, k.opts.opTimeout())
	defer cancel()
	s, err := k.tok.get(ctx)
	if err != nil {
		return nil, err
	}
	ch := make(chan signResult, 1)
	go func() {
		sig, err := k.signOn(s, mech, data)
		k.tok.put(s, err)
		ch <- signResult{sig, err}
	}()
	var r signResult
	select {
	case r = <-ch:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: operation did not finish (token=%s): %w", ErrTokenUnavailable, k.tok.label, ctx.Err())
	}
	if r.err != nil {
		return nil, fmt.Errorf("sign (uri=%s): %w", k.uri, r.err)
	}
	if mech[0].Mechanism == pkcs11.CKM_ECDSA {
		return ecdsaDER(r.sig)
	}
	return r.sig, nil
}

// signOn runs C_SignInit [C_Login(CKU_CONTEXT_SPECIFIC)] C_Sign on one session.
func (k *Key) signOn(s session, mech []*pkcs11.Mechanism, data []byte) ([]byte, error) {
	h, err := k.handle(s)
	if err != nil {
		return nil, err
	}
	m := k.tok.lib.mod
	if k.alwaysAuth {
		// Serialise init-login-sign so no other signature slips in between (P7).
		k.authMu.Lock()
		defer k.authMu.Unlock()
	}
	if err := m.SignInit(s.h, mech, h); err != nil {
		return nil, opErr("C_SignInit", err)
	}
	if k.alwaysAuth {
		k.tok.loginMu.Lock()
		k.tok.mu.Lock()
		pe := k.tok.pinErr
		k.tok.mu.Unlock()
		if pe == nil {
			pe = k.tok.login(s.h, pkcs11.CKU_CONTEXT_SPECIFIC)
		}
		k.tok.loginMu.Unlock()
		if pe != nil {
			return nil, pe
		}
	}
	sig, err := m.Sign(s.h, data)
	if err != nil {
		return nil, opErr("C_Sign", err)
	}
	return sig, nil
}

func (k *Key) finish(ctx context.Context, start time.Time, mech uint, err error) {
	d := time.Since(start)
	if err == nil {
		k.tok.m.latency.Observe(d.Seconds())
	} else {
		k.tok.m.errors(err).Inc()
	}
	actor := ""
	if k.opts.Actor != nil {
		if actor = k.opts.Actor(ctx); actor == "" {
			// Every signature should be attributable (CONVENTIONS 15): a missing actor is a bug
			// in the caller, reported but not fatal here.
			k.opts.logger().WarnContext(ctx, "pkcs11 signature without an actor in the context", "key", k.uri)
		}
	}
	if k.opts.Audit != nil {
		k.opts.Audit(ctx, AuditEvent{KeyURI: k.uri, Actor: actor, Mechanism: mechName(mech), Duration: d, Err: err})
	}
	if err != nil {
		k.opts.logger().WarnContext(ctx, "pkcs11 signature failed", "key", k.uri, "actor", actor,
			"mechanism", mechName(mech), "rv", codeLabel(err))
	}
}

// ecdsaDER converts PKCS#11's raw r||s into the ASN.1 DER form crypto.Signer promises (P10).
func ecdsaDER(raw []byte) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 {
		return nil, fmt.Errorf("%w: malformed ecdsa signature from token", ErrDevice)
	}
	r := new(big.Int).SetBytes(raw[:len(raw)/2])
	s := new(big.Int).SetBytes(raw[len(raw)/2:])
	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(r)
		b.AddASN1BigInt(s)
	})
	return b.Bytes()
}
