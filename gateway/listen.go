package gateway

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/aortagw/aortagw/internal/pemfile"
)

// authMiddleware strips client-supplied identity headers, then admits the
// request only with a verified client certificate (mtls) or the right bearer
// token (bearer). The Authorization header is removed after the check so no
// handler can ever read or forward it.
func (s *Server) authMiddleware(next http.Handler, mode string, bearer []byte, strip []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, h := range strip {
			r.Header.Del(h)
		}
		switch mode {
		case "mtls":
			if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
				s.writeFault(w, fail(CodeUnauthenticated, nil, "a verified client certificate is required"))
				return
			}
		case "bearer":
			if !bearerOK(r, bearer) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="aortagw"`)
				s.writeFault(w, fail(CodeUnauthenticated, nil, "a valid bearer token is required"))
				return
			}
		default:
			s.writeFault(w, fail(CodeInternal, nil, "listener has no authentication configured"))
			return
		}
		r.Header.Del("Authorization")
		next.ServeHTTP(w, r)
	})
}

// bearerOK compares the bearer token in constant time.
func bearerOK(r *http.Request, want []byte) bool {
	if len(want) == 0 {
		return false
	}
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), want) == 1
}

// bearerSecret returns the inline token or the token from the file.
func bearerSecret(inline, file string) ([]byte, error) {
	if inline != "" {
		return []byte(inline), nil
	}
	if file == "" {
		return nil, nil
	}
	return ReadSecretFile(file)
}

// LoadCertificates reads every PEM CERTIFICATE block of a file.
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	certs, err := pemfile.ReadCertificates(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return certs, nil
}

// LoadCRLs reads DER or PEM ("X509 CRL") revocation lists.
func LoadCRLs(paths []string) ([]*x509.RevocationList, error) {
	crls, err := pemfile.ReadCRLs(paths...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return crls, nil
}

// xisTLS builds the XIS listener's TLS config from the files: nil when the
// listener is plain HTTP (bearer on loopback).
func xisTLS(c XISConfig) (*tls.Config, error) {
	if c.CertFile == "" {
		if c.Auth == "mtls" {
			return nil, fmt.Errorf("%w: xis.auth=mtls needs a certificate", ErrConfig)
		}
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: xis certificate: %v", ErrConfig, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if c.Auth == "mtls" {
		cas, err := LoadCertificates(c.ClientCAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		for _, ca := range cas {
			pool.AddCert(ca)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

func adminTLS(c AdminConfig) (*tls.Config, error) {
	if c.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: admin certificate: %v", ErrConfig, err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// errBodyTooLarge is matched with errors.As on *http.MaxBytesError.
func isTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}
