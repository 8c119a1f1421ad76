//go:build !cgo || nopkcs11

package pkcs11

import (
	"context"
	"crypto"
	"crypto/x509"
	"io"

	"github.com/aortagw/aortagw/internal/uzi"
)

// Key is a private key on a PKCS#11 token. In this build (no cgo) it cannot be opened.
type Key struct{}

// Open always fails with ErrNoCgo in this build.
func Open(context.Context, string, Options) (*Key, error) { return nil, ErrNoCgo }

// Public returns nil in this build.
func (*Key) Public() crypto.PublicKey { return nil }

// Sign always fails with ErrNoCgo in this build.
func (*Key) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) { return nil, ErrNoCgo }

// SignContext always fails with ErrNoCgo in this build.
func (*Key) SignContext(context.Context, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, ErrNoCgo
}

// SignMessage always fails with ErrNoCgo in this build.
func (*Key) SignMessage(context.Context, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, ErrNoCgo
}

// Certificate returns nil in this build.
func (*Key) Certificate() *x509.Certificate { return nil }

// Chain returns nil in this build.
func (*Key) Chain() []*x509.Certificate { return nil }

// Healthy reports ErrNoCgo in this build.
func (*Key) Healthy(context.Context) error { return ErrNoCgo }

// Close does nothing in this build.
func (*Key) Close() error { return nil }

// Admin provisions tokens. In this build (no cgo) it cannot be opened.
type Admin struct{}

// OpenAdmin always fails with ErrNoCgo in this build.
func OpenAdmin(string) (*Admin, error) { return nil, ErrNoCgo }

// InitToken always fails with ErrNoCgo in this build.
func (*Admin) InitToken(string, []byte, []byte) error { return ErrNoCgo }

// GenerateRSAKey always fails with ErrNoCgo in this build.
func (*Admin) GenerateRSAKey(string, []byte, []byte, string, int, bool) (crypto.PublicKey, error) {
	return nil, ErrNoCgo
}

// ImportCertificate always fails with ErrNoCgo in this build.
func (*Admin) ImportCertificate(string, []byte, []byte, string, *x509.Certificate) error {
	return ErrNoCgo
}

// Close does nothing in this build.
func (*Admin) Close() error { return nil }

// OpenForPurpose always fails with ErrNoCgo in this build.
func OpenForPurpose(context.Context, string, uzi.KeyPurpose, Options) (*Key, error) {
	return nil, ErrNoCgo
}

// URI returns "" in this build.
func (*Key) URI() string { return "" }

// Inspect always fails with ErrNoCgo in this build.
func Inspect(string, string, string) (*ModuleListing, error) { return nil, ErrNoCgo }
