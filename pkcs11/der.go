package pkcs11

import (
	"encoding/asn1"
	"fmt"
	"math/big"
)

// derInteger encodes n as a DER INTEGER (CKA_SERIAL_NUMBER form).
func derInteger(n *big.Int) ([]byte, error) {
	if n == nil {
		return nil, fmt.Errorf("%w: certificate without serial", ErrUnsupported)
	}
	return asn1.Marshal(n)
}
