package tokens

import (
	"crypto"
	"io"
	"testing"
)

// instantSigner returns a fixed 256-byte "signature" at once, so a benchmark
// measures only the XML work around the signature.
type instantSigner struct{ crypto.Signer }

func (s instantSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return make([]byte, 256), nil
}

// BenchmarkSignXMLOnly is BenchmarkSign/transaction without the RSA operation.
func BenchmarkSignXMLOnly(b *testing.B) {
	p := testPKI(b)
	s := newTestSigner(b, p.server)
	s.key = instantSigner{p.server.key}
	for b.Loop() {
		if _, err := s.SignTransaction(sampleTransaction()); err != nil {
			b.Fatal(err)
		}
	}
}
