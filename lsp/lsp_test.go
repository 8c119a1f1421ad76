package lsp

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/aortagw/aortagw/internal/hl7"
	"github.com/aortagw/aortagw/internal/mtls"
	"github.com/aortagw/aortagw/internal/soap"
	"github.com/aortagw/aortagw/internal/xmlsafe"
	"github.com/aortagw/aortagw/testpki"
	"github.com/aortagw/aortagw/tokens"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testApp     = "90000326"
	testContext = "https://linde.test/autorisatieregels/medicatiecontext/v2"
)

// world is one simulator behind real mutual TLS plus everything needed to
// mint valid messages: the test PKI's cards and server certificates.
type world struct {
	pki       *testpki.PKI
	sim       *Simulator
	ts        *httptest.Server
	giver     *testpki.Card // huisarts-a: signs enrolment and mandate
	author    *testpki.Card // apotheker-a: the caregiver who queries
	other     *testpki.Card // cardioloog-b: another organisation
	enrSigner *tokens.Signer
	mdtSigner *tokens.Signer
	trxSigner *tokens.Signer // author's AUT key
	srvSigner *tokens.Signer // gateway server key (conditional query)
	seq       atomic.Int64
}

var (
	worldOnce sync.Once
	shared    *world
	sharedErr error
)

// newWorld builds the test PKI (once per binary) and a fresh simulator.
func newWorld(t testing.TB) *world {
	t.Helper()
	worldOnce.Do(func() {
		p, err := testpki.Shared()
		if err != nil {
			sharedErr = err
			return
		}
		w := &world{pki: p}
		for name, dst := range map[string]**testpki.Card{"huisarts-a": &w.giver, "apotheker-a": &w.author, "cardioloog-b": &w.other} {
			c, err := p.Card(name)
			if err != nil {
				sharedErr = err
				return
			}
			*dst = c
		}
		mk := func(c *testpki.Cert) *tokens.Signer {
			s, err := tokens.NewSigner(c.Key, c.Chain)
			if err != nil && sharedErr == nil {
				sharedErr = err
			}
			return s
		}
		w.enrSigner, w.mdtSigner = mk(w.giver.Auth), mk(w.giver.Sign)
		w.trxSigner, w.srvSigner = mk(w.author.Auth), mk(p.Server)
		shared = w
	})
	require.NoError(t, sharedErr)
	w := &world{pki: shared.pki, giver: shared.giver, author: shared.author, other: shared.other,
		enrSigner: shared.enrSigner, mdtSigner: shared.mdtSigner, trxSigner: shared.trxSigner, srvSigner: shared.srvSigner}

	lspCert, err := mtls.Certificate(w.pki.Servers[testpki.ServerLSP].Key, w.pki.Servers[testpki.ServerLSP].Chain)
	require.NoError(t, err)
	w.sim, w.ts = startSim(t, w.pki, lspCert)
	return w
}

// startSim serves a simulator trusting p behind mutual TLS with lspCert.
func startSim(t testing.TB, p *testpki.PKI, lspCert tls.Certificate) (*Simulator, *httptest.Server) {
	t.Helper()
	sim, err := NewTrustingSimulator(SimConfig{Seed: 7}, Trust{Roots: p.RootCerts(), Intermediates: p.IntermediateCerts(),
		CRLs: p.CRLList(), Signers: p.LeafCerts(), ClientCA: p.CAs[testpki.CAServer].Cert})
	require.NoError(t, err)
	ts := httptest.NewUnstartedServer(sim)
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.TLS = sim.TLSConfig(lspCert)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return sim, ts
}

// client returns a client presenting server certificate name.
func (w *world) client(t testing.TB, name string, reg prometheus.Registerer) *Client {
	t.Helper()
	s := w.pki.Servers[name]
	cert, err := mtls.Certificate(s.Key, s.Chain)
	require.NoError(t, err)
	cfg := DefaultClientConfig()
	cfg.Endpoint, cfg.Certificate, cfg.RootCAs, cfg.Registerer = w.ts.URL+"/zim", cert, []*x509.Certificate{w.pki.ServerRoot.Cert}, reg
	c, err := NewClient(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// msg describes one message to mint; zero fields take valid defaults.
type msg struct {
	interaction  string
	bsn          string // message BSN
	tokenBSN     string // transaction + enrolment BSN ("" = bsn)
	messageURA   string // URA in the HL7 author organisation ("" = author's)
	tokenURA     string // URA in the tokens ("" = author's)
	serverSigned bool
	noMandate    bool
	noEnrolment  bool
}

type minted struct {
	envelope        []byte
	body            []byte
	enr, mdt, trx   *tokens.Signed
	msgRoot, msgExt string
}

func (w *world) mint(t testing.TB, m msg) *minted {
	t.Helper()
	if m.interaction == "" {
		m.interaction = hl7.QURXQuery
	}
	if m.bsn == "" {
		m.bsn = WellKnownBSNs[0]
	}
	if m.tokenBSN == "" {
		m.tokenBSN = m.bsn
	}
	ura := w.author.URA
	if m.messageURA == "" {
		m.messageURA = ura
	}
	if m.tokenURA == "" {
		m.tokenURA = ura
	}
	root := "2.16.528.1.1007.3.3." + ura + ".1"
	ext := fmt.Sprintf("m-%d-%d", time.Now().UnixNano(), w.seq.Add(1))
	body, err := hl7.BuildQuery(hl7.QueryParams{
		Interaction: m.interaction, MessageID: hl7.ID{Root: root, Ext: ext}, Created: time.Now(), SenderApp: testApp,
		Author:   hl7.Person{UZI: w.author.UZI, Role: w.author.Role, Name: w.author.Person, URA: m.messageURA},
		Overseer: &hl7.Person{UZI: w.giver.UZI, Role: w.giver.Role, URA: m.messageURA},
		BSN:      m.bsn,
	})
	require.NoError(t, err)
	out := &minted{body: body, msgRoot: root, msgExt: ext}
	var toks [][]byte
	if !m.noEnrolment {
		out.enr, err = w.enrSigner.SignEnrolment(tokens.Enrolment{URA: m.tokenURA, BSN: m.tokenBSN})
		require.NoError(t, err)
		toks = append(toks, out.enr.Bytes())
	}
	if !m.noMandate {
		out.mdt, err = w.mdtSigner.SignMandate(tokens.Mandate{URA: m.tokenURA, Context: testContext, UntilCardExpiry: true,
			Mandated: []string{w.author.UZI, tokens.AppIDPrefix + testApp}, ApplicationID: tokens.AppIDPrefix + testApp})
		require.NoError(t, err)
		toks = append(toks, out.mdt.Bytes())
	}
	trx := tokens.Transaction{URA: m.tokenURA, NameID: w.author.NameID(), BSN: m.tokenBSN, InteractionID: m.interaction,
		MessageIDRoot: root, MessageIDExt: ext, ApplicationID: tokens.AppIDPrefix + testApp, Context: testContext,
		ContextCodeSystem: hl7.OIDContextCode, ContextCode: "KZDI"}
	signer := w.trxSigner
	if m.serverSigned {
		trx.NameID, signer = "", w.srvSigner
	}
	out.trx, err = signer.SignTransaction(trx)
	require.NoError(t, err)
	toks = append(toks, out.trx.Bytes())
	out.envelope = soap.Build(body, toks...)
	return out
}

func TestSimulatorAcceptsAndAnswers(t *testing.T) {
	w := newWorld(t)
	reg := prometheus.NewRegistry()
	c := w.client(t, testpki.ServerGateway, reg)
	ctx := context.Background()

	t.Run("medication query", func(t *testing.T) {
		m := w.mint(t, msg{})
		resp, err := c.Send(ctx, m.envelope, "")
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.HTTPStatus)
		assert.Equal(t, hl7.QURXResponse, resp.Message.InteractionID)
		assert.Equal(t, "OK", resp.Message.QueryResponseCode)
		require.NotNil(t, resp.Message.Ack)
		assert.Equal(t, "AA", resp.Message.Ack.TypeCode)
		assert.Equal(t, m.msgExt, resp.Message.Ack.TargetExt)
		assert.Equal(t, testApp, resp.Message.ReceiverApp)
		p := w.sim.Dataset().Patient(WellKnownBSNs[0])
		require.NotNil(t, p)
		for _, d := range p.Dispenses {
			assert.Contains(t, string(resp.Body), d.Drug.HPK)
		}
		recs := w.sim.Accepted()
		require.NotEmpty(t, recs)
		last := recs[len(recs)-1]
		assert.Equal(t, Record{
			Time: last.Time, Interaction: hl7.QURXQuery, MessageID: m.msgRoot + "^" + m.msgExt, BSN: WellKnownBSNs[0],
			URA: w.author.URA, EnrolmentID: m.enr.ID(), MandateID: m.mdt.ID(), TransactionID: m.trx.ID(),
			PeerCN: "aortagw.test", Author: w.author.NameID(), Results: len(p.Dispenses),
		}, last)
	})
	t.Run("generic query", func(t *testing.T) {
		resp, err := c.Send(ctx, w.mint(t, msg{interaction: hl7.GQZGQuery}).envelope, "")
		require.NoError(t, err)
		assert.Equal(t, hl7.GQZGResponse, resp.Message.InteractionID)
		assert.Equal(t, "OK", resp.Message.QueryResponseCode)
		assert.Contains(t, string(resp.Body), "Professionele samenvatting")
	})
	t.Run("unknown patient is an empty result", func(t *testing.T) {
		resp, err := c.Send(ctx, w.mint(t, msg{bsn: "111222333"}).envelope, "")
		require.NoError(t, err)
		assert.Equal(t, "NF", resp.Message.QueryResponseCode)
		assert.NotContains(t, string(resp.Body), "MedicationDispenseEvent")
	})
	t.Run("caregiver-signed transaction token alone", func(t *testing.T) {
		m := w.mint(t, msg{noEnrolment: true, noMandate: true})
		resp, err := c.Send(ctx, m.envelope, "")
		require.NoError(t, err)
		assert.Equal(t, "OK", resp.Message.QueryResponseCode)
		last := w.sim.Accepted()[len(w.sim.Accepted())-1]
		assert.Equal(t, m.trx.ID(), last.TransactionID)
		assert.Empty(t, last.EnrolmentID)
		assert.Empty(t, last.MandateID)
	})
	t.Run("conditional query signed by the server certificate", func(t *testing.T) {
		resp, err := c.Send(ctx, w.mint(t, msg{serverSigned: true}).envelope, "")
		require.NoError(t, err)
		assert.Equal(t, "OK", resp.Message.QueryResponseCode)
	})
	assert.InDelta(t, 5.0, testutil.ToFloat64(c.m.responses.WithLabelValues(outcomeOK)), 0)
	n, err := testutil.GatherAndCount(reg, "aortagw_lsp_request_duration_seconds")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
}

// TestClientSendSecured: an envelope spliced by (*soap.Envelope).WithSecurity
// goes out without a second parse when it conforms to the client's limits,
// and gets the full check (and is refused, unsent) when it does not.
func TestClientSendSecured(t *testing.T) {
	w := newWorld(t)
	c := w.client(t, testpki.ServerGateway, prometheus.NewRegistry())
	ctx := context.Background()

	m := w.mint(t, msg{})
	env, err := soap.ParseEnvelope(soap.Build(m.body), xmlsafe.MessageLimits)
	require.NoError(t, err)
	sec, err := env.WithSecurity(m.enr.Bytes(), m.mdt.Bytes(), m.trx.Bytes())
	require.NoError(t, err)
	require.True(t, sec.Conforms(xmlsafe.MessageLimits))
	resp, err := c.SendSecured(ctx, sec, "")
	require.NoError(t, err)
	assert.Equal(t, "OK", resp.Message.QueryResponseCode)
	last := w.sim.Accepted()[len(w.sim.Accepted())-1]
	assert.Equal(t, m.trx.ID(), last.TransactionID)

	// Parsed under wider limits than the client's: the client parses it
	// itself, and its depth cap refuses the message before anything is sent.
	deep := strings.Repeat(`<x:a xmlns:x="urn:x">`, 70) + strings.Repeat(`</x:a>`, 70)
	body := bytes.Replace(m.body, []byte("</QURX_IN990011NL>"), []byte(deep+"</QURX_IN990011NL>"), 1)
	require.NotEqual(t, m.body, body)
	env, err = soap.ParseEnvelope(soap.Build(body), soap.Limits{MaxDepth: 100})
	require.NoError(t, err)
	m2 := w.mint(t, msg{})
	sec, err = env.WithSecurity(m2.enr.Bytes(), m2.mdt.Bytes(), m2.trx.Bytes())
	require.NoError(t, err)
	require.False(t, sec.Conforms(xmlsafe.MessageLimits))
	before := len(w.sim.Accepted())
	_, err = c.SendSecured(ctx, sec, "")
	require.ErrorIs(t, err, ErrEnvelope)
	assert.Len(t, w.sim.Accepted(), before, "nothing was sent")
}

func TestSimulatorRefuses(t *testing.T) {
	w := newWorld(t)
	c := w.client(t, testpki.ServerGateway, nil)
	ctx := context.Background()
	tamper := func(b []byte) []byte {
		// Change one attribute value inside the signed transaction token.
		out := bytes.Replace(b, []byte(testContext), []byte(testContext+"x"), 1)
		require.NotEqual(t, b, out)
		return out
	}
	tests := []struct {
		name  string
		build func(t *testing.T) []byte
		want  string
	}{
		{"tampered token", func(t *testing.T) []byte {
			m := w.mint(t, msg{})
			return soap.Build(m.body, m.enr.Bytes(), m.mdt.Bytes(), tamper(m.trx.Bytes()))
		}, "zim:TokenSignatureInvalid"},
		{"missing security header", func(t *testing.T) []byte { return soap.Build(w.mint(t, msg{}).body) }, FaultSecurityHeaderMissing},
		{"message URA differs from tokens", func(t *testing.T) []byte {
			return w.mint(t, msg{messageURA: w.other.URA}).envelope
		}, FaultURAMismatch},
		{"bsn differs", func(t *testing.T) []byte {
			return w.mint(t, msg{tokenBSN: WellKnownBSNs[1]}).envelope
		}, FaultBSNMismatch},
		{"server-signed without mandate", func(t *testing.T) []byte {
			return w.mint(t, msg{serverSigned: true, noMandate: true}).envelope
		}, FaultTokenMissing},
		{"token for another message", func(t *testing.T) []byte {
			a, b := w.mint(t, msg{}), w.mint(t, msg{})
			return soap.Build(a.body, a.enr.Bytes(), a.mdt.Bytes(), b.trx.Bytes())
		}, FaultMessageIDMismatch},
		{"author differs from the token", func(t *testing.T) []byte {
			m := w.mint(t, msg{})
			body := bytes.Replace(m.body, []byte(w.author.UZI), []byte(w.giver.UZI), 1)
			return soap.Build(body, m.enr.Bytes(), m.mdt.Bytes(), m.trx.Bytes())
		}, FaultAuthorMismatch},
		{"context differs between mandate and transaction", func(t *testing.T) []byte {
			m := w.mint(t, msg{})
			mdt, err := w.mdtSigner.SignMandate(tokens.Mandate{URA: w.author.URA, Context: testContext + "/other", UntilCardExpiry: true,
				Mandated: []string{w.author.UZI}})
			require.NoError(t, err)
			return soap.Build(m.body, m.enr.Bytes(), mdt.Bytes(), m.trx.Bytes())
		}, FaultContextMismatch},
		{"unknown mustUnderstand header", func(t *testing.T) []byte {
			m := w.mint(t, msg{})
			return bytes.Replace(m.envelope, []byte(`<soap:Header>`), []byte(`<soap:Header><x:Route xmlns:x="urn:x" soap:mustUnderstand="1"/>`), 1)
		}, FaultMustUnderstand},
		{"expired transaction token", func(t *testing.T) []byte {
			m := w.mint(t, msg{})
			old, err := tokens.NewSigner(w.author.Auth.Key, w.author.Auth.Chain, tokens.WithClock(func() time.Time { return time.Now().Add(-time.Hour) }))
			require.NoError(t, err)
			mm, err := hl7.Read(m.body)
			require.NoError(t, err)
			trx, err := old.SignTransaction(tokens.Transaction{URA: w.author.URA, NameID: w.author.NameID(), BSN: mm.BSN,
				InteractionID: mm.InteractionID, MessageIDRoot: mm.MessageIDRoot, MessageIDExt: mm.MessageIDExt, Context: testContext})
			require.NoError(t, err)
			return soap.Build(m.body, m.enr.Bytes(), m.mdt.Bytes(), trx.Bytes())
		}, "zim:TokenExpired"},
		{"two transaction tokens", func(t *testing.T) []byte {
			a, b := w.mint(t, msg{}), w.mint(t, msg{})
			return soap.Build(a.body, a.enr.Bytes(), a.trx.Bytes(), b.trx.Bytes())
		}, FaultTokenCount},
		{"soap 1.2", func(t *testing.T) []byte {
			return []byte(`<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body>` + string(w.mint(t, msg{}).body) + `</e:Body></e:Envelope>`)
		}, FaultVersionMismatch},
		{"not addressed to the lsp", func(t *testing.T) []byte {
			m := w.mint(t, msg{})
			body := bytes.Replace(m.body, []byte(`extension="1"`), []byte(`extension="2"`), 1)
			return soap.Build(body, m.enr.Bytes(), m.mdt.Bytes(), m.trx.Bytes())
		}, FaultWrongReceiver},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Send(ctx, tc.build(t), "urn:hl7-org:v3/QURX_IN990011NL")
			if tc.want == FaultSecurityHeaderMissing || tc.want == FaultVersionMismatch {
				// The client refuses to send these; post them raw.
				require.ErrorIs(t, err, ErrEnvelope)
				err = rawPost(t, w, testpki.ServerGateway, tc.build(t))
			}
			var fe *FaultError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, tc.want, fe.Code, fe.Detail)
			assert.NotEmpty(t, fe.Envelope)
		})
	}

	t.Run("replayed token", func(t *testing.T) {
		m := w.mint(t, msg{})
		_, err := c.Send(ctx, m.envelope, "")
		require.NoError(t, err)
		_, err = c.Send(ctx, m.envelope, "")
		var fe *FaultError
		require.ErrorAs(t, err, &fe)
		assert.Equal(t, FaultTokenReplayed, fe.Code)
	})
	t.Run("tls client of another organisation", func(t *testing.T) {
		other := w.client(t, testpki.ServerOtherOrg, nil)
		_, err := other.Send(ctx, w.mint(t, msg{}).envelope, "")
		var fe *FaultError
		require.ErrorAs(t, err, &fe)
		assert.Equal(t, FaultPeerURAMismatch, fe.Code)
	})
	t.Run("tls client certificate not a server certificate", func(t *testing.T) {
		// A UZI card's authentication certificate is not from the server CA.
		cert, err := mtls.Certificate(w.author.Auth.Key, w.author.Auth.Chain)
		require.NoError(t, err)
		cfg := DefaultClientConfig()
		cfg.Endpoint, cfg.Certificate, cfg.RootCAs = w.ts.URL, cert, []*x509.Certificate{w.pki.ServerRoot.Cert}
		cc, err := NewClient(cfg)
		require.NoError(t, err)
		defer cc.Close()
		_, err = cc.Send(ctx, w.mint(t, msg{}).envelope, "")
		var fe *FaultError
		require.ErrorAs(t, err, &fe)
		assert.Equal(t, FaultClientCertificateRefused, fe.Code)
		assert.Equal(t, http.StatusForbidden, fe.HTTPStatus)
	})
	t.Run("unsupported interaction is an AR acknowledgement", func(t *testing.T) {
		m := w.mint(t, msg{})
		// Rename the interaction in the message; the token then disagrees, so
		// sign a token for the renamed interaction.
		body := bytes.ReplaceAll(m.body, []byte(hl7.QURXQuery), []byte("QURX_IN990099NL"))
		mm, err := hl7.Read(body)
		require.NoError(t, err)
		trx, err := w.trxSigner.SignTransaction(tokens.Transaction{URA: w.author.URA, NameID: w.author.NameID(), BSN: mm.BSN,
			InteractionID: mm.InteractionID, MessageIDRoot: mm.MessageIDRoot, MessageIDExt: mm.MessageIDExt,
			ApplicationID: tokens.AppIDPrefix + testApp, Context: testContext})
		require.NoError(t, err)
		_, err = c.Send(ctx, soap.Build(body, m.enr.Bytes(), m.mdt.Bytes(), trx.Bytes()), "")
		var ae *AckError
		require.ErrorAs(t, err, &ae)
		assert.Equal(t, "AR", ae.TypeCode)
		require.Len(t, ae.Details, 1)
		assert.Equal(t, "ZIM-INT-01", ae.Details[0].Code)
		require.NotNil(t, ae.Response)
		assert.NotEmpty(t, ae.Response.Envelope)
	})
	t.Run("no client certificate fails the handshake", func(t *testing.T) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: w.pki.Roots()}}
		defer tr.CloseIdleConnections()
		req, err := http.NewRequest(http.MethodPost, w.ts.URL, bytes.NewReader(w.mint(t, msg{}).envelope))
		require.NoError(t, err)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		require.Error(t, err)
	})
	t.Run("accepted log as json", func(t *testing.T) {
		s := w.pki.Servers[testpki.ServerGateway]
		cert, err := mtls.Certificate(s.Key, s.Chain)
		require.NoError(t, err)
		tlsCfg, err := mtls.ClientConfig(cert, []*x509.Certificate{w.pki.ServerRoot.Cert}, "")
		require.NoError(t, err)
		tr := &http.Transport{TLSClientConfig: tlsCfg}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get(w.ts.URL + "/sim/accepted")
		require.NoError(t, err)
		defer resp.Body.Close()
		var recs []Record
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&recs))
		assert.Equal(t, len(w.sim.Accepted()), len(recs))
		assert.NotEmpty(t, recs)
	})
	faults := w.sim.Faults()
	assert.Equal(t, 1, faults[FaultTokenReplayed])
}

// rawPost posts b over mTLS without the client's outgoing checks.
func rawPost(t *testing.T, w *world, server string, b []byte) error {
	t.Helper()
	s := w.pki.Servers[server]
	cert, err := mtls.Certificate(s.Key, s.Chain)
	require.NoError(t, err)
	tlsCfg, err := mtls.ClientConfig(cert, []*x509.Certificate{w.pki.ServerRoot.Cert}, "")
	require.NoError(t, err)
	tr := &http.Transport{TLSClientConfig: tlsCfg}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodPost, w.ts.URL, bytes.NewReader(b))
	require.NoError(t, err)
	req.Header.Set("Content-Type", soap.ContentType)
	req.Header.Set("SOAPAction", `"x"`)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	cl := &Client{limits: soapLimits()}
	buf := new(bytes.Buffer)
	_, err = buf.ReadFrom(resp.Body)
	require.NoError(t, err)
	_, _, ierr := cl.interpret(resp, buf.Bytes())
	return ierr
}

func soapLimits() xmlsafe.Limits { return xmlsafe.MessageLimits }

func TestClientTransportErrors(t *testing.T) {
	w := newWorld(t)
	s := w.pki.Servers[testpki.ServerGateway]
	cert, err := mtls.Certificate(s.Key, s.Chain)
	require.NoError(t, err)
	env := w.mint(t, msg{}).envelope
	ctx := context.Background()
	newClient := func(t *testing.T, url string, roots []*x509.Certificate, mutate func(*ClientConfig)) *Client {
		cfg := DefaultClientConfig()
		cfg.Endpoint, cfg.Certificate, cfg.RootCAs = url, cert, roots
		if mutate != nil {
			mutate(&cfg)
		}
		c, err := NewClient(cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	serverRoot := []*x509.Certificate{w.pki.ServerRoot.Cert}

	t.Run("connection refused is retryable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		_, err = newClient(t, "https://"+addr, serverRoot, nil).Send(ctx, env, "")
		require.ErrorIs(t, err, ErrRetryable)
	})
	t.Run("untrusted lsp certificate", func(t *testing.T) {
		_, err := newClient(t, w.ts.URL, []*x509.Certificate{w.pki.Root.Cert}, nil).Send(ctx, env, "")
		require.ErrorIs(t, err, ErrTLS)
		assert.NotErrorIs(t, err, ErrRetryable)
	})
	lspCert, err := mtls.Certificate(w.pki.Servers[testpki.ServerLSP].Key, w.pki.Servers[testpki.ServerLSP].Chain)
	require.NoError(t, err)
	serve := func(t *testing.T, h http.HandlerFunc) string {
		ts := httptest.NewUnstartedServer(h)
		ts.Config.ErrorLog = log.New(io.Discard, "", 0)
		ts.TLS = &tls.Config{Certificates: []tls.Certificate{lspCert}, ClientAuth: tls.RequireAnyClientCert}
		ts.StartTLS()
		t.Cleanup(ts.Close)
		return ts.URL
	}
	t.Run("503 is retryable", func(t *testing.T) {
		url := serve(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
		_, err := newClient(t, url, serverRoot, nil).Send(ctx, env, "")
		require.ErrorIs(t, err, ErrRetryable)
		require.ErrorIs(t, err, ErrHTTPStatus)
	})
	t.Run("response too large", func(t *testing.T) {
		url := serve(t, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", soap.ContentType)
			_, _ = w.Write(bytes.Repeat([]byte("x"), 4096))
		})
		_, err := newClient(t, url, serverRoot, func(c *ClientConfig) { c.MaxResponseBytes = 1024 }).Send(ctx, env, "")
		require.ErrorIs(t, err, ErrResponseTooLarge)
	})
	t.Run("no answer after sending is outcome unknown", func(t *testing.T) {
		release := make(chan struct{})
		url := serve(t, func(_ http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		defer close(release)
		_, err := newClient(t, url, serverRoot, func(c *ClientConfig) { c.ResponseTimeout = 200 * time.Millisecond }).Send(ctx, env, "")
		require.ErrorIs(t, err, ErrOutcomeUnknown)
		assert.NotErrorIs(t, err, ErrRetryable)
	})
	t.Run("soap action sent and configurable", func(t *testing.T) {
		got := make(chan string, 2)
		url := serve(t, func(w http.ResponseWriter, r *http.Request) {
			got <- r.Header.Get("SOAPAction")
			soap.WriteFault(w, 500, soap.Fault{Code: "soap:Server", String: "x"})
		})
		c := newClient(t, url, serverRoot, func(c *ClientConfig) {
			c.SOAPActions = map[string]string{hl7.GQZGQuery: "urn:custom"}
		})
		_, err := c.Send(ctx, env, "")
		var fe *FaultError
		require.ErrorAs(t, err, &fe)
		assert.Equal(t, `"urn:hl7-org:v3/QURX_IN990011NL"`, <-got)
		_, _ = c.Send(ctx, w.mint(t, msg{interaction: hl7.GQZGQuery}).envelope, "")
		assert.Equal(t, `"urn:custom"`, <-got)
	})
	t.Run("outgoing envelope checks", func(t *testing.T) {
		c := newClient(t, w.ts.URL, serverRoot, nil)
		_, err := c.Send(ctx, []byte("<x/>"), "")
		require.ErrorIs(t, err, ErrEnvelope)
		_, err = c.Send(ctx, env, "bad\"action")
		require.ErrorIs(t, err, ErrEnvelope)
	})
}

func TestClientConfigValidate(t *testing.T) {
	w := newWorld(t)
	s := w.pki.Servers[testpki.ServerGateway]
	cert, err := mtls.Certificate(s.Key, s.Chain)
	require.NoError(t, err)
	tests := []struct {
		name   string
		mutate func(*ClientConfig)
	}{
		{"http endpoint", func(c *ClientConfig) { c.Endpoint = "http://lsp.test/zim" }},
		{"credentials in url", func(c *ClientConfig) { c.Endpoint = "https://u:p@lsp.test/zim" }},
		{"no certificate", func(c *ClientConfig) { c.Certificate = tls.Certificate{} }},
		{"no pinned roots", func(c *ClientConfig) { c.RootCAs = nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultClientConfig()
			cfg.Endpoint, cfg.Certificate, cfg.RootCAs = "https://lsp.test/zim", cert, []*x509.Certificate{w.pki.ServerRoot.Cert}
			tc.mutate(&cfg)
			_, err := NewClient(cfg)
			require.ErrorIs(t, err, ErrConfig)
		})
	}
}

func TestDatasetDeterministic(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	a, b := NewDataset(3, 20, now), NewDataset(3, 20, now)
	assert.Equal(t, a.BSNs(), b.BSNs())
	assert.Len(t, a.BSNs(), 20+len(WellKnownBSNs))
	for _, bsn := range a.BSNs() {
		assert.True(t, hl7.ValidBSN(bsn), bsn)
		assert.Equal(t, a.Patient(bsn), b.Patient(bsn))
	}
	assert.NotEqual(t, a.BSNs(), NewDataset(4, 20, now).BSNs())
}

// FuzzInterpret feeds arbitrary answers to the client's response parser.
func FuzzInterpret(f *testing.F) {
	now := time.Now()
	req := &hl7.Message{MessageIDRoot: "1.2", MessageIDExt: "3", SenderApp: "5", QueryIDRoot: "1.2", QueryIDExt: "q"}
	ds := NewDataset(1, 1, now)
	f.Add(soap.Build(medicationResponse(req, ds.Patient(WellKnownBSNs[0]), "1", now)), 200)
	f.Add(soap.Build(genericResponse(req, ds.Patient(WellKnownBSNs[0]), "1", now)), 200)
	f.Add(soap.Build(rejectAck(req, "1", now, "X", "y")), 200)
	f.Add(soap.MarshalFault(soap.Fault{Code: "zim:TokenReplayed", String: "x", Detail: "y"}), 500)
	c := &Client{limits: soapLimits()}
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		if status < 100 || status > 599 {
			status = 200
		}
		h := http.Header{}
		h.Set("Content-Type", soap.ContentType)
		resp, outcome, err := c.interpret(&http.Response{StatusCode: status, Header: h}, body)
		switch {
		case err == nil && (resp == nil || resp.Message == nil || outcome != outcomeOK):
			t.Fatalf("success without a message (outcome=%s)", outcome)
		case err != nil && resp != nil:
			t.Fatal("response and error together")
		}
		var fe *FaultError
		if errors.As(err, &fe) && fe.Code == "" {
			t.Fatal("fault without code")
		}
		if err == nil && status != 200 {
			t.Fatal("non-200 accepted")
		}
	})
}
