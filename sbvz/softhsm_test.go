package sbvz

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/internal/mtls"
	"github.com/aortagw/aortagw/internal/testenv"
	"github.com/aortagw/aortagw/pkcs11"
	"github.com/aortagw/aortagw/testpki"
)

// TestSoftHSMMutualTLS runs the client against the simulator with the
// gateway's UZI server key in SoftHSM, reached through package pkcs11: the
// client side of every TLS handshake signs on the token. (testpki keeps the
// simulator's own key in software: it stands for an outside system.)
func TestSoftHSMMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("softhsm test")
	}
	module := testenv.SoftHSMModule(t)
	dir := testenv.ShortTempDir(t)
	t.Setenv("SOFTHSM2_CONF", testpki.SoftHSMConfPath(dir))
	p, err := testpki.New(testpki.Options{Seed: 9, Dir: dir, SoftHSM: true, ModulePath: module})
	if errors.Is(err, pkcs11.ErrNoCgo) && !testenv.Strict() {
		testenv.Missing(t, "pkcs11 built without cgo")
	}
	require.NoError(t, err)
	ctx := context.Background()
	open := func(c *testpki.Cert) *pkcs11.Key {
		require.Nil(t, c.Key, "key must live only in the token")
		k, err := pkcs11.Open(ctx, c.KeyURI, pkcs11.Options{AllowedModules: []string{module}})
		require.NoError(t, err)
		t.Cleanup(func() { _ = k.Close() })
		return k
	}
	gwKey := open(p.Servers[testpki.ServerGateway])
	simKey := p.Servers[testpki.ServerSBVZ].Key

	sim, err := NewSimulator(SimConfig{Seed: 1})
	require.NoError(t, err)
	cert, err := mtls.Certificate(simKey, p.Servers[testpki.ServerSBVZ].Chain)
	require.NoError(t, err)
	tcfg, err := sim.TLSConfig(cert, []*x509.Certificate{p.ServerRoot.Cert})
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(sim)
	srv.TLS = tcfg
	srv.StartTLS()
	defer srv.Close()

	ep, err := EndpointsFor(srv.URL)
	require.NoError(t, err)
	c, err := NewClient(ClientConfig{Endpoints: ep, Key: gwKey, Chain: p.Servers[testpki.ServerGateway].Chain,
		PinnedCAs: []*x509.Certificate{p.ServerRoot.Cert}, ServerName: "localhost", Timeout: 10 * time.Second})
	require.NoError(t, err)
	defer c.Close()

	f := Persona("found")
	q := path2(f)
	q.Person.BSN = f.BSN
	r, err := c.Verify(ctx, q)
	require.NoError(t, err)
	assert.Equal(t, OutcomeFound, r.Outcome)
	assert.Equal(t, f.BSN, r.BSN)
	// A second client forces a second full handshake on the token.
	c2, err := NewClient(ClientConfig{Endpoints: ep, Key: gwKey, Chain: p.Servers[testpki.ServerGateway].Chain,
		PinnedCAs: []*x509.Certificate{p.ServerRoot.Cert}, ServerName: "localhost", Timeout: 10 * time.Second})
	require.NoError(t, err)
	defer c2.Close()
	r, err = c2.PersonData(ctx, Persona("secret").BSN)
	require.NoError(t, err)
	assert.True(t, r.Secret)
	recs := sim.Records()
	require.Len(t, recs, 2)
	assert.Equal(t, p.Org("A").URA, recs[0].ClientURA)
}
