// Package pemfile reads certificates, private keys and CRLs from PEM (or DER)
// files: the one place the CLI, the gateway, the clients and the token
// directory load key material from disk. Production keys belong in an HSM (a
// pkcs11: URI); PEM private keys are for tests, acceptance and the demo.
//
// The functions are stateless and safe for concurrent use.
package pemfile

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

var (
	// ErrNoCertificate is returned when input holds no CERTIFICATE block.
	ErrNoCertificate = errors.New("pemfile: no certificate")
	// ErrNoKey is returned when a file holds no usable private key.
	ErrNoKey = errors.New("pemfile: no private key")
	// ErrKeyPermissions is returned for a key file readable by group or others.
	ErrKeyPermissions = errors.New("pemfile: key file readable by group or others")
	// ErrNoCRL is returned when a file holds no revocation list.
	ErrNoCRL = errors.New("pemfile: no crl")
)

// ParseCertificates returns every CERTIFICATE block of b in order (for a
// chain: leaf first). Other block types are skipped; at least one is required.
func ParseCertificates(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pemfile: parse certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, ErrNoCertificate
	}
	return out, nil
}

// ReadCertificates reads every CERTIFICATE block of the file at path.
func ReadCertificates(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pemfile: read certificates (path=%s): %w", path, err)
	}
	certs, err := ParseCertificates(b)
	if err != nil {
		return nil, fmt.Errorf("%w (path=%s)", err, path)
	}
	return certs, nil
}

// ReadPrivateKey reads an unencrypted PEM private key (PKCS#8, PKCS#1 or
// SEC1). The file must not be readable by group or others.
func ReadPrivateKey(path string) (crypto.Signer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("pemfile: key file (path=%s): %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w (path=%s, mode=%#o); chmod 600", ErrKeyPermissions, path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pemfile: key file (path=%s): %w", path, err)
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%w (path=%s)", ErrNoKey, path)
		}
		var k any
		switch blk.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(blk.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("%w: encrypted keys are not supported (path=%s)", ErrNoKey, path)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("pemfile: parse key (path=%s): %w", path, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: key type %T cannot sign (path=%s)", ErrNoKey, k, path)
		}
		return s, nil
	}
}

// ReadCRLs reads revocation lists from files holding one DER CRL or any
// number of PEM "X509 CRL" blocks.
func ReadCRLs(paths ...string) ([]*x509.RevocationList, error) {
	var out []*x509.RevocationList
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("pemfile: read crl (path=%s): %w", p, err)
		}
		var ders [][]byte
		for rest := b; ; {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			if blk.Type == "X509 CRL" {
				ders = append(ders, blk.Bytes)
			}
		}
		if len(ders) == 0 {
			ders = [][]byte{b} // not PEM: try DER
		}
		for _, d := range ders {
			crl, err := x509.ParseRevocationList(d)
			if err != nil {
				return nil, fmt.Errorf("%w: parse (path=%s): %v", ErrNoCRL, p, err)
			}
			out = append(out, crl)
		}
	}
	return out, nil
}
