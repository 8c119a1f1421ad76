package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"log/slog"
	"strings"

	"github.com/aortagw/aortagw/internal/pemfile"
	"github.com/aortagw/aortagw/pkcs11"
)

// loadSigner opens a signing key named on the command line: a PKCS#11 URI
// through package pkcs11 (module allow-listed, PIN from pin-source) or a PEM
// private key file (mode 0600; for tests and acceptance only). The chain comes
// from certFile when given, else from the token. The returned func closes the key.
func loadSigner(ctx context.Context, ref, certFile string, modules []string, log *slog.Logger) (crypto.Signer, []*x509.Certificate, func(), error) {
	var chain []*x509.Certificate
	if certFile != "" {
		var err error
		if chain, err = pemfile.ReadCertificates(certFile); err != nil {
			return nil, nil, nil, err
		}
	}
	if strings.HasPrefix(ref, "pkcs11:") {
		k, err := pkcs11.Open(ctx, ref, pkcs11.Options{AllowedModules: modules, Logger: log})
		if err != nil {
			return nil, nil, nil, err
		}
		if chain == nil {
			chain = k.Chain()
		}
		if len(chain) == 0 {
			_ = k.Close()
			return nil, nil, nil, errors.New("no certificate for the key: pass --cert")
		}
		return k, chain, func() { _ = k.Close() }, nil
	}
	signer, err := pemfile.ReadPrivateKey(ref)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(chain) == 0 {
		return nil, nil, nil, errors.New("--cert is required with a PEM key")
	}
	return signer, chain, func() {}, nil
}
