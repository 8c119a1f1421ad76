package mtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

type pair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func issue(t *testing.T, cn string, parent *pair, isCA bool) *pair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:         isCA, BasicConstraintsValid: true,
	}
	signer, parentCert := key, tmpl
	if parent != nil {
		signer, parentCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &pair{c, key}
}

func TestMutualTLS(t *testing.T) {
	ca := issue(t, "test ca", nil, true)
	otherCA := issue(t, "other ca", nil, true)
	srv := issue(t, "localhost", ca, false)
	good := issue(t, "client", ca, false)
	stranger := issue(t, "stranger", otherCA, false)

	srvCert, err := Certificate(srv.key, []*x509.Certificate{srv.cert})
	if err != nil {
		t.Fatal(err)
	}
	refuse := errors.New("wrong client")
	scfg, err := ServerConfig(srvCert, []*x509.Certificate{ca.cert}, func(leaf *x509.Certificate) error {
		if leaf.Subject.CommonName != "client" {
			return refuse
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	ts.TLS = scfg
	ts.StartTLS()
	defer ts.Close()
	_, port, _ := net.SplitHostPort(ts.Listener.Addr().String())

	call := func(p *pair) (string, error) {
		c, err := Certificate(p.key, []*x509.Certificate{p.cert})
		if err != nil {
			return "", err
		}
		ccfg, err := ClientConfig(c, []*x509.Certificate{ca.cert}, "localhost")
		if err != nil {
			return "", err
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: ccfg}, Timeout: 5 * time.Second}
		resp, err := hc.Get("https://localhost:" + port)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if got, err := call(good); err != nil || got != "client" {
		t.Fatalf("good client: got %q, %v", got, err)
	}
	if _, err := call(stranger); err == nil {
		t.Fatal("client from another CA was accepted")
	}
	wrongName := issue(t, "client2", ca, false)
	if _, err := call(wrongName); err == nil {
		t.Fatal("client refused by verifyPeer was accepted")
	}
	if _, err := ClientConfig(srvCert, nil, "x"); !errors.Is(err, ErrNoRoots) {
		t.Fatalf("empty pin set: got %v, want ErrNoRoots", err)
	}
	_ = tls.VersionTLS13
}
