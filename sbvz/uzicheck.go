package sbvz

import (
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/aortagw/aortagw/internal/uzi"
)

// ErrNotServerCert is returned by the simulator's TLS check for a client
// certificate that is not a UZI server (type S) certificate.
var ErrNotServerCert = errors.New("sbvz: client certificate is not a uzi server (type S) certificate")

// uziServerIdentity checks that cert is a UZI server certificate the way
// SBV-Z would (internal/uzi: SAN otherName 2.5.5.5 type S from a server CA,
// keyUsage digitalSignature+keyEncipherment, EKU serverAuth+clientAuth,
// subject serialNumber = UZI number) and returns its URA.
func uziServerIdentity(cert *x509.Certificate) (string, error) {
	if cert.IsCA {
		return "", fmt.Errorf("%w: certificate is a ca", ErrNotServerCert)
	}
	ura, err := uzi.ServerURA(cert, uzi.ParseOptions{}, false)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNotServerCert, err)
	}
	return ura, nil
}
