package lsp

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/internal/hl7"
	"github.com/aortagw/aortagw/internal/mtls"
	"github.com/aortagw/aortagw/internal/soap"
	"github.com/aortagw/aortagw/internal/testenv"
	"github.com/aortagw/aortagw/pkcs11"
	"github.com/aortagw/aortagw/testpki"
	"github.com/aortagw/aortagw/tokens"
)

// TestClientWithSoftHSMKeys runs the production shape end to end: the
// gateway's UZI server key, the LSP's key and the card keys live in SoftHSM
// and are used through package pkcs11 (crypto.Signer) for mutual TLS and for
// signing a conditional query (server-signed transaction token with an
// enrolment and a mandate signed by a Z card's AUT and HND keys).
func TestClientWithSoftHSMKeys(t *testing.T) {
	module := testenv.SoftHSMModule(t)
	dir := testenv.ShortTempDir(t)
	t.Setenv("SOFTHSM2_CONF", testpki.SoftHSMConfPath(dir))
	p, err := testpki.New(testpki.Options{Seed: 5, Dir: dir, SoftHSM: true, ModulePath: module})
	if errors.Is(err, pkcs11.ErrNoCgo) && !testenv.Strict() {
		testenv.Missing(t, "pkcs11 built without cgo")
	}
	require.NoError(t, err)
	ctx := context.Background()
	open := func(c *testpki.Cert) *pkcs11.Key {
		k, err := pkcs11.Open(ctx, c.KeyURI, pkcs11.Options{AllowedModules: []string{module}})
		require.NoError(t, err, c.Name)
		t.Cleanup(func() { _ = k.Close() })
		return k
	}
	gw, lspSrv := p.Servers[testpki.ServerGateway], p.Servers[testpki.ServerLSP]
	gwKey := open(gw)
	require.Nil(t, gw.Key, "the gateway key must live only in SoftHSM")
	giver, err := p.Card("huisarts-a")
	require.NoError(t, err)
	author, err := p.Card("apotheker-a")
	require.NoError(t, err)

	// The LSP's own key may be a software key (it is not ours).
	var lspKey crypto.Signer = lspSrv.Key
	if lspKey == nil {
		lspKey = open(lspSrv)
	}
	lspCert, err := mtls.Certificate(lspKey, lspSrv.Chain)
	require.NoError(t, err)
	sim, ts := startSim(t, p, lspCert)

	newSigner := func(k *pkcs11.Key, c *testpki.Cert) *tokens.Signer {
		s, err := tokens.NewSigner(k, c.Chain)
		require.NoError(t, err)
		return s
	}
	enrS := newSigner(open(giver.Auth), giver.Auth)
	mdtS := newSigner(open(giver.Sign), giver.Sign)
	srvS := newSigner(gwKey, gw)

	bsn := WellKnownBSNs[0]
	root, ext := "2.16.528.1.1007.3.3."+author.URA+".1", fmt.Sprintf("hsm-%d", time.Now().UnixNano())
	body, err := hl7.BuildQuery(hl7.QueryParams{
		Interaction: hl7.QURXQuery, MessageID: hl7.ID{Root: root, Ext: ext}, Created: time.Now(), SenderApp: testApp,
		Author:   hl7.Person{UZI: author.UZI, Role: author.Role, URA: author.URA},
		Overseer: &hl7.Person{UZI: giver.UZI, Role: giver.Role, URA: giver.URA},
		BSN:      bsn,
	})
	require.NoError(t, err)
	enr, err := enrS.SignEnrolment(tokens.Enrolment{URA: author.URA, BSN: bsn})
	require.NoError(t, err)
	mdt, err := mdtS.SignMandate(tokens.Mandate{URA: author.URA, Context: testContext, UntilCardExpiry: true,
		Mandated: []string{author.UZI}})
	require.NoError(t, err)
	trx, err := srvS.SignTransaction(tokens.Transaction{URA: author.URA, BSN: bsn, InteractionID: hl7.QURXQuery,
		MessageIDRoot: root, MessageIDExt: ext, ApplicationID: tokens.AppIDPrefix + testApp, Context: testContext})
	require.NoError(t, err)
	env, err := soap.WithSecurity([]byte(`<soap:Envelope xmlns:soap="`+soap.NS+`"><soap:Body>`+string(body)+`</soap:Body></soap:Envelope>`),
		enr.Bytes(), mdt.Bytes(), trx.Bytes())
	require.NoError(t, err)

	tlsCert, err := mtls.Certificate(gwKey, gw.Chain)
	require.NoError(t, err)
	cfg := DefaultClientConfig()
	cfg.Endpoint, cfg.Certificate, cfg.RootCAs = ts.URL, tlsCert, p.RootCerts()[1:]
	c, err := NewClient(cfg)
	require.NoError(t, err)
	defer c.Close()
	resp, err := c.Send(ctx, env, "")
	require.NoError(t, err)
	assert.Equal(t, "OK", resp.Message.QueryResponseCode)
	recs := sim.Accepted()
	require.Len(t, recs, 1)
	assert.Equal(t, trx.ID(), recs[0].TransactionID)
	assert.Equal(t, enr.ID(), recs[0].EnrolmentID)
	assert.Equal(t, mdt.ID(), recs[0].MandateID)
}
