package tokens

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"

	"github.com/aortagw/aortagw/internal/pemfile"
)

// CertDirectory resolves the signing certificate when a token's KeyInfo holds
// only ds:X509IssuerSerial (the UZI-register directory in production). The
// validator never trusts what it returns: the certificate must match the
// issuer and serial asked for and still chain to the configured roots.
type CertDirectory interface {
	Lookup(ctx context.Context, issuerDN string, serial *big.Int) (*x509.Certificate, error)
}

// FileDirectory is a CertDirectory over a directory of PEM files (any number
// of CERTIFICATE blocks per *.pem / *.crt / *.cer file), indexed by serial at
// load time. It is immutable after LoadFileDirectory and safe for concurrent use.
type FileDirectory struct {
	bySerial map[string][]*x509.Certificate
}

var _ CertDirectory = (*FileDirectory)(nil)

// LoadFileDirectory reads every certificate under dir (not recursive).
func LoadFileDirectory(dir string) (*FileDirectory, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate directory: %v", ErrConfig, err)
	}
	d := &FileDirectory{bySerial: map[string][]*x509.Certificate{}}
	for _, e := range ents {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || (ext != ".pem" && ext != ".crt" && ext != ".cer") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("%w: certificate directory: %v", ErrConfig, err)
		}
		certs, err := pemfile.ParseCertificates(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrConfig, e.Name(), err)
		}
		d.Add(certs...)
	}
	return d, nil
}

// Add indexes more certificates (only before the directory is shared).
func (d *FileDirectory) Add(certs ...*x509.Certificate) {
	if d.bySerial == nil {
		d.bySerial = map[string][]*x509.Certificate{}
	}
	for _, c := range certs {
		k := c.SerialNumber.String()
		d.bySerial[k] = append(d.bySerial[k], c)
	}
}

// Lookup implements CertDirectory.
func (d *FileDirectory) Lookup(_ context.Context, issuerDN string, serial *big.Int) (*x509.Certificate, error) {
	if serial == nil {
		return nil, ErrCertUnknown
	}
	for _, c := range d.bySerial[serial.String()] {
		if issuerNameMatches(issuerDN, c.RawIssuer) {
			return c, nil
		}
	}
	return nil, fmt.Errorf("%w: (serial=%s)", ErrCertUnknown, serial)
}
