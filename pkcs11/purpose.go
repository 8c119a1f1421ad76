//go:build cgo && !nopkcs11

package pkcs11

import (
	"context"
	"crypto/x509"
	"fmt"

	"github.com/aortagw/aortagw/internal/uzi"
)

// purposeMatches reports whether a certificate's keyUsage marks it for purpose p. Selection is
// by key usage only, never by label (labels differ between card middlewares and versions).
func purposeMatches(c *x509.Certificate, p uzi.KeyPurpose) bool {
	if c.IsCA {
		return false
	}
	ku := c.KeyUsage
	ds := ku&x509.KeyUsageDigitalSignature != 0
	nr := ku&x509.KeyUsageContentCommitment != 0
	ke := ku&x509.KeyUsageKeyEncipherment != 0
	switch p {
	case uzi.PurposeAuthentication:
		return ds && !nr && !ke
	case uzi.PurposeNonRepudiation:
		return nr
	case uzi.PurposeServer:
		return ds && ke && !nr
	}
	return false
}

// OpenForPurpose opens the card (or HSM) key whose certificate's keyUsage matches purpose:
// digitalSignature for PurposeAuthentication, nonRepudiation for PurposeNonRepudiation,
// digitalSignature+keyEncipherment for PurposeServer. tokenURI names the token (no id or
// object). Exactly one certificate on the token must match, and a private key with the same
// CKA_ID must exist. PurposeEncryption is refused: it is not a signing key.
func OpenForPurpose(ctx context.Context, tokenURI string, purpose uzi.KeyPurpose, opts Options) (*Key, error) {
	u, err := ParseURI(tokenURI)
	if err != nil {
		return nil, err
	}
	for _, a := range []string{"id", "object", "type"} {
		if _, ok := u.Path(a); ok {
			return nil, fmt.Errorf("%w: OpenForPurpose takes a token uri without %s (uri=%s)", ErrInvalidURI, a, u.Redacted())
		}
	}
	switch purpose {
	case uzi.PurposeAuthentication, uzi.PurposeNonRepudiation, uzi.PurposeServer:
	default:
		return nil, fmt.Errorf("%w: purpose is not a signing purpose (purpose=%s)", ErrUnsupported, purpose)
	}
	lib, tok, err := openToken(ctx, u, opts)
	if err != nil {
		return nil, err
	}
	k, err := openPurposeOn(ctx, tok, u, purpose, opts)
	if err != nil {
		tok.release()
		lib.release()
		return nil, err
	}
	return k, nil
}

func openPurposeOn(ctx context.Context, tok *token, u *URI, purpose uzi.KeyPurpose, opts Options) (*Key, error) {
	gctx, cancel := context.WithTimeout(ctx, opts.opTimeout())
	s, err := tok.get(gctx)
	cancel()
	if err != nil {
		return nil, err
	}
	certs, err := readCertificates(tok.lib.mod, s.h)
	tok.put(s, deviceErr(err))
	if err != nil {
		return nil, err
	}
	var match []tokenCert
	for _, c := range certs {
		if purposeMatches(c.cert, purpose) {
			match = append(match, c)
		}
	}
	switch len(match) {
	case 0:
		return nil, fmt.Errorf("%w: no certificate for purpose (purpose=%s uri=%s)", ErrKeyNotFound, purpose, u.Redacted())
	case 1:
	default:
		return nil, fmt.Errorf("%w: %d certificates for purpose (purpose=%s uri=%s)", ErrAmbiguous, len(match), purpose, u.Redacted())
	}
	if len(match[0].id) == 0 {
		return nil, fmt.Errorf("%w: certificate for purpose has no CKA_ID (purpose=%s)", ErrKeyNotFound, purpose)
	}
	k, err := newKey(ctx, tok, u, match[0].id, "", opts)
	if err != nil {
		return nil, err
	}
	k.uri = keyURI(u, match[0].id)
	return k, nil
}

// keyURI is the token URI plus the chosen id, redacted.
func keyURI(u *URI, id []byte) string {
	c := &URI{path: map[string]string{}, query: map[string]string{}}
	for k, v := range u.path {
		c.path[k] = v
	}
	for k, v := range u.query {
		c.query[k] = v
	}
	c.path["id"] = string(id)
	return c.Redacted()
}
