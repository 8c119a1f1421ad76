package pemfile

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func fixture(t *testing.T) (certPEM, keyPEM, crlPEM, crlDER []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCRLSign | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	crlDER, err = x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}, ca, key)
	if err != nil {
		t.Fatal(err)
	}
	k8, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k8}),
		pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crlDER}), crlDER
}

func write(t *testing.T, name string, b []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadCertificatesKeysAndCRLs(t *testing.T) {
	certPEM, keyPEM, crlPEM, crlDER := fixture(t)
	// A chain file with a key block between two certificates keeps order and skips the key.
	certs, err := ReadCertificates(write(t, "chain.pem", append(append(append([]byte{}, certPEM...), keyPEM...), certPEM...), 0o644))
	if err != nil || len(certs) != 2 {
		t.Fatalf("ReadCertificates: %d certs, %v", len(certs), err)
	}
	if _, err := ReadCertificates(write(t, "key.pem", keyPEM, 0o600)); !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("key-only file: got %v, want ErrNoCertificate", err)
	}
	if _, err := ReadPrivateKey(write(t, "ok.pem", keyPEM, 0o600)); err != nil {
		t.Fatalf("ReadPrivateKey: %v", err)
	}
	if _, err := ReadPrivateKey(write(t, "open.pem", keyPEM, 0o644)); !errors.Is(err, ErrKeyPermissions) {
		t.Fatalf("world-readable key: got %v, want ErrKeyPermissions", err)
	}
	if _, err := ReadPrivateKey(write(t, "cert.pem", certPEM, 0o600)); !errors.Is(err, ErrNoKey) {
		t.Fatalf("certificate as key: got %v, want ErrNoKey", err)
	}
	crls, err := ReadCRLs(write(t, "a.crl.pem", crlPEM, 0o644), write(t, "b.crl", crlDER, 0o644))
	if err != nil || len(crls) != 2 {
		t.Fatalf("ReadCRLs: %d, %v", len(crls), err)
	}
	if _, err := ReadCRLs(write(t, "junk.crl", []byte("junk"), 0o644)); !errors.Is(err, ErrNoCRL) {
		t.Fatalf("junk crl: got %v, want ErrNoCRL", err)
	}
}
