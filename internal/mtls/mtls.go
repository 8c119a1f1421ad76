// Package mtls builds the mutual-TLS configurations aortagw uses towards the
// LSP and SBV-Z and on its own listeners. The private key is any crypto.Signer,
// so the UZI server key can stay in the HSM.
//
// The returned *tls.Config values are safe for concurrent use once built; do
// not mutate them afterwards.
package mtls

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ErrNoRoots is returned when a configuration would trust nothing or everything.
var ErrNoRoots = errors.New("mtls: no pinned CA certificates")

// Certificate turns a signer and its chain (leaf first) into a tls.Certificate.
func Certificate(key crypto.Signer, chain []*x509.Certificate) (tls.Certificate, error) {
	if key == nil || len(chain) == 0 {
		return tls.Certificate{}, errors.New("mtls: key and certificate chain are required")
	}
	c := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, cert := range chain {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	return c, nil
}

// Pool builds a certificate pool from the given CA certificates.
func Pool(cas []*x509.Certificate) (*x509.CertPool, error) {
	if len(cas) == 0 {
		return nil, ErrNoRoots
	}
	p := x509.NewCertPool()
	for _, c := range cas {
		p.AddCert(c)
	}
	return p, nil
}

// ClientConfig returns a TLS 1.2+ client configuration that presents cert and
// trusts only the pinned CAs (never the system roots).
func ClientConfig(cert tls.Certificate, pinned []*x509.Certificate, serverName string) (*tls.Config, error) {
	pool, err := Pool(pinned)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   serverName,
	}, nil
}

// ServerConfig returns a TLS 1.2+ server configuration that requires a client
// certificate chaining to one of clientCAs. verifyPeer, when not nil, runs after
// chain verification on the verified leaf (for example to check its UZI type).
func ServerConfig(cert tls.Certificate, clientCAs []*x509.Certificate, verifyPeer func(leaf *x509.Certificate) error) (*tls.Config, error) {
	pool, err := Pool(clientCAs)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}
	if verifyPeer != nil {
		cfg.VerifyPeerCertificate = func(_ [][]byte, chains [][]*x509.Certificate) error {
			if len(chains) == 0 || len(chains[0]) == 0 {
				return errors.New("mtls: no verified client chain")
			}
			if err := verifyPeer(chains[0][0]); err != nil {
				return fmt.Errorf("mtls: client certificate refused: %w", err)
			}
			return nil
		}
	}
	return cfg, nil
}
