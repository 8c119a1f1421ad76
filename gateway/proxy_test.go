package gateway

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/internal/hl7"
	"github.com/aortagw/aortagw/internal/mtls"
	"github.com/aortagw/aortagw/internal/soap"
	"github.com/aortagw/aortagw/internal/uzi"
	"github.com/aortagw/aortagw/internal/xmlsafe"
	"github.com/aortagw/aortagw/lsp"
	"github.com/aortagw/aortagw/testpki"
)

func TestProxyEndToEnd(t *testing.T) {
	e := newEnv(t)
	enrID, mdtID := e.register()

	msg := e.query(e.actor, e.giver, e.bsn)
	var txIDs []string
	for i := 0; i < 3; i++ {
		body := msg
		if i == 2 {
			body = e.query(e.actor, e.giver, e.bsn) // a new message id
		}
		resp, b := e.post(body, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
		assert.Equal(t, strconv.Itoa(len(b)), resp.Header.Get("Content-Length"), "Content-Length matches the body")
		assert.Contains(t, resp.Header.Get("Content-Type"), "text/xml")
		env, err := soap.ParseEnvelope(b, soap.Limits{})
		require.NoError(t, err, "the LSP's answer is passed on as a SOAP envelope")
		assert.False(t, env.IsFault())
		m, err := hl7.ReadScope(env.BodyElement(), env.BodyNamespaces(), xmlsafeLimits())
		require.NoError(t, err)
		assert.Equal(t, hl7.QURXResponse, m.InteractionID)
	}
	ll, ok := e.lastLen.Load().([2]int64)
	require.True(t, ok)
	assert.Equal(t, ll[1], ll[0], "the forwarded request declares the length of the rewritten body")
	assert.Greater(t, ll[1], int64(len(msg)), "the body grew by the security header")
	acc := e.sim.Accepted()
	require.Len(t, acc, 3, "the LSP accepted every message")
	for _, r := range acc {
		assert.Equal(t, enrID, r.EnrolmentID)
		assert.Equal(t, mdtID, r.MandateID)
		assert.Equal(t, e.bsn, r.BSN)
		assert.Equal(t, e.ura, r.URA)
		txIDs = append(txIDs, r.TransactionID)
	}
	assert.NotEqual(t, txIDs[0], txIDs[1], "the same message sent twice gets a new transaction token")
	assert.NotEqual(t, txIDs[1], txIDs[2])

	minted := e.auditOf("token.minted")
	msgs := e.auditOf("message")
	require.Len(t, minted, 3)
	require.Len(t, msgs, 3)
	for i, r := range msgs {
		assert.Equal(t, "ok", r.Outcome)
		assert.Equal(t, e.bsn, r.BSN)
		assert.Equal(t, hl7.QURXQuery, r.Interaction)
		assert.Equal(t, e.giver.NameID(), r.Giver)
		assert.Equal(t, e.actor.NameID(), r.Actor)
		assert.Equal(t, []string{enrID, mdtID, txIDs[i]}, r.TokenIDs)
		assert.Equal(t, []string{txIDs[i]}, minted[i].TokenIDs)
	}
	rep, err := e.st.VerifyChain(context.Background())
	require.NoError(t, err)
	assert.True(t, rep.OK)
	// Each transaction token was signed in the name of the acting person.
	assert.Equal(t, slices.Repeat([]string{"uzi:" + e.actor.UZI}, 3), e.key.signedFor())

	// The caregiver himself, without overseer: his mandate names this application.
	resp, b := e.post(e.query(e.giver, nil, e.bsn), nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode, string(b))
}

func xmlsafeLimits() xmlsafe.Limits { return xmlsafe.Limits{} }

func TestProxyFaults(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.XIS.MaxBodyBytes = 32 << 10 })
	enrID, mdtID := e.register()
	_ = enrID
	ctx := context.Background()
	p := e.pki
	var orgB *testpki.Card
	for _, c := range p.CardsOf(uzi.CardZ) {
		if c.URA != e.ura {
			orgB = c
			break
		}
	}
	require.NotNil(t, orgB, "testpki needs a Z card of another organisation")
	appAuthor := func() []byte {
		body, err := hl7.BuildQuery(hl7.QueryParams{Interaction: hl7.QURXQuery,
			MessageID: hl7.ID{Root: "2.16.840.1.113883.2.4.6.6.1234.1", Ext: uuid.NewString()},
			Created:   time.Now(), SenderApp: testAppID, BSN: e.bsn,
			AuthorDevice: testAppID, Author: hl7.Person{URA: e.ura}})
		require.NoError(t, err)
		return envelope(body)
	}
	smuggled := func() []byte {
		out, err := soap.WithSecurity(e.query(e.actor, e.giver, e.bsn), e.signEnrolment(e.actor, e.bsn))
		require.NoError(t, err)
		return out
	}

	tests := []struct {
		name   string
		setup  func()
		body   func() []byte
		hdr    map[string]string
		code   Code
		status int
	}{
		{name: "not xml", body: func() []byte { return []byte("hello") }, code: CodeBadRequest, status: 500},
		{name: "doctype", body: func() []byte {
			return []byte(`<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><x/></soap:Body></soap:Envelope>`)
		}, code: CodeBadRequest, status: 500},
		{name: "soap 1.2", body: func() []byte {
			return []byte(`<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><x/></env:Body></env:Envelope>`)
		}, code: CodeBadRequest, status: 500},
		{name: "hl7 body unreadable", body: func() []byte { return envelope([]byte(`<x xmlns="urn:hl7-org:v3"/>`)) }, code: CodeBadRequest, status: 500},
		{name: "body too large", body: func() []byte {
			return []byte(strings.Replace(string(e.query(e.actor, e.giver, e.bsn)), "<soap:Body>", "<soap:Body><!--"+strings.Repeat("x", 40<<10)+"-->", 1))
		}, code: CodeBodyTooLarge, status: 413},
		{name: "no bearer", body: func() []byte { return e.query(e.actor, e.giver, e.bsn) }, hdr: map[string]string{"Authorization": ""}, code: CodeUnauthenticated, status: 401},
		{name: "wrong bearer", body: func() []byte { return e.query(e.actor, e.giver, e.bsn) }, hdr: map[string]string{"Authorization": "Bearer nope"}, code: CodeUnauthenticated, status: 401},
		{name: "xis smuggles a security header", body: smuggled, code: CodeSecurityHeader, status: 500},
		{name: "other organisation", body: func() []byte { return e.query(orgB, nil, e.bsn) }, code: CodeWrongOrganisation, status: 500},
		{name: "no enrolment for this patient", body: func() []byte { return e.query(e.actor, e.giver, lsp.WellKnownBSNs[1]) }, code: CodeNoEnrolment, status: 500},
		{name: "no author", body: appAuthor, code: CodeCaregiverUnknown, status: 500},
		{name: "caregiver without mandate", body: func() []byte { return e.query(e.actor, e.other, e.bsn) }, code: CodeNoMandate, status: 500},
		{name: "actor not mandated", body: func() []byte { return e.query(e.other, e.giver, e.bsn) }, code: CodeActorNotMandated, status: 500},
		{name: "hsm unavailable", setup: func() { e.failSign.Store(true) }, body: func() []byte { return e.query(e.actor, e.giver, e.bsn) }, code: CodeHSMUnavailable, status: 503},
		{name: "actor blocked (leaver)", setup: func() {
			e.failSign.Store(false)
			require.NoError(t, e.st.BlockActor(ctx, e.actor.UZI, "left"))
		}, body: func() []byte { return e.query(e.actor, e.giver, e.bsn) }, code: CodeActorBlocked, status: 500},
		{name: "mandate expired", setup: func() {
			require.NoError(t, e.st.UnblockActor(ctx, e.actor.UZI, "back"))
			e.offset.Store(int64(400 * 24 * time.Hour)) // the mandate runs a year, the enrolment 1.5
		}, body: func() []byte { return e.query(e.actor, e.giver, e.bsn) }, code: CodeMandateExpired, status: 500},
		{name: "mandate revoked", setup: func() {
			e.offset.Store(0)
			require.NoError(t, e.st.Revoke(ctx, mdtID, "card lost", "test"))
		}, body: func() []byte { return e.query(e.actor, e.giver, e.bsn) }, code: CodeMandateRevoked, status: 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			before := e.simHits.Load()
			auditBefore := len(e.auditOf("message"))
			resp, b := e.post(tt.body(), tt.hdr)
			assert.Equal(t, tt.status, resp.StatusCode, string(b))
			assert.Equal(t, string(tt.code), faultCode(b), string(b))
			assert.Equal(t, strconv.Itoa(len(b)), resp.Header.Get("Content-Length"))
			f, ok := soap.ParseFault(b)
			if assert.True(t, ok, "a SOAP fault") {
				assert.Contains(t, f.String, string(tt.code)+": ")
			}
			assert.Equal(t, before, e.simHits.Load(), "nothing reached the LSP")
			if tt.code != CodeUnauthenticated && tt.code != CodeBodyTooLarge {
				recs := e.auditOf("message")
				if assert.Len(t, recs, auditBefore+1) {
					assert.Equal(t, string(tt.code), recs[len(recs)-1].Outcome)
				}
			}
		})
	}
	assert.Empty(t, e.sim.Accepted())
}

func TestProxyUpstreamDown(t *testing.T) {
	e := newEnv(t)
	e.register()
	e.simTS.Close()
	resp, b := e.post(e.query(e.actor, e.giver, e.bsn), nil)
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	assert.Equal(t, string(CodeLSPUnavailable), faultCode(b))
	assert.Len(t, e.auditOf("token.minted"), maxSends, "each resend of a message that never left had its own new token")

	require.NoError(t, e.st.Close())
	resp, b = e.post(e.query(e.actor, e.giver, e.bsn), nil)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, string(CodeStoreUnavailable), faultCode(b))
}

func TestProxyPassesLSPFaultOn(t *testing.T) {
	// A message addressed to another receiver: the gateway does not judge
	// the transmission wrapper, the LSP refuses it, and the XIS gets the
	// LSP's own fault, not ours.
	e := newEnv(t)
	e.register()
	body, err := hl7.BuildQuery(hl7.QueryParams{Interaction: hl7.QURXQuery,
		MessageID: hl7.ID{Root: "2.16.840.1.113883.2.4.6.6.1234.1", Ext: uuid.NewString()},
		Created:   time.Now(), SenderApp: testAppID, ReceiverApp: "2", BSN: e.bsn,
		Author:   hl7.Person{UZI: e.actor.UZI, Role: e.actor.Role, URA: e.ura},
		Overseer: &hl7.Person{UZI: e.giver.UZI, Role: e.giver.Role, URA: e.ura}})
	require.NoError(t, err)
	resp, b := e.post(envelope(body), map[string]string{"SOAPAction": "xis-value"})
	assert.Equal(t, http.StatusInternalServerError, resp.StatusCode, string(b))
	f, ok := soap.ParseFault(b)
	require.True(t, ok, string(b))
	assert.True(t, strings.HasPrefix(f.Code, "zim:"), f.Code)
	assert.Empty(t, faultCode(b), "not an aortagw fault")
	assert.Equal(t, int64(1), e.simHits.Load())
	h := e.lastHdr.Load()
	require.NotNil(t, h)
	assert.Equal(t, `"urn:hl7-org:v3/QURX_IN990011NL"`, h.Get("SOAPAction"), "the gateway sets SOAPAction from its configuration")
	recs := e.auditOf("message")
	require.Len(t, recs, 1)
	assert.Equal(t, "lsp_fault", recs[0].Outcome)
}

func TestIdentityHeadersStripped(t *testing.T) {
	e := newEnv(t)
	e.register()
	resp, b := e.post(e.query(e.actor, e.giver, e.bsn), map[string]string{
		"X-Forwarded-For": "10.0.0.1", "X-Uzi-Number": "999999999", "X-Remote-User": "admin",
		"Forwarded": "for=1.2.3.4", "X-Aortagw-Actor": "someone",
	})
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	h := e.lastHdr.Load()
	require.NotNil(t, h)
	for _, k := range []string{"X-Forwarded-For", "X-Uzi-Number", "X-Remote-User", "Forwarded", "X-Aortagw-Actor", "Authorization"} {
		assert.Empty(t, h.Get(k), k)
	}
	// The strip middleware runs before any handler: prove it on the handler itself.
	var seen http.Header
	mw := e.srv.authMiddleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { seen = r.Header.Clone() }),
		"bearer", []byte("t"), e.cfg.XIS.StripHeaders)
	req, err := http.NewRequest(http.MethodPost, "/", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer t")
	req.Header.Set("X-Ssl-Client-Dn", "CN=forged")
	mw.ServeHTTP(discardWriter{}, req)
	require.NotNil(t, seen)
	assert.Empty(t, seen.Get("X-Ssl-Client-Dn"))
	assert.Empty(t, seen.Get("Authorization"))
}

type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) WriteHeader(int)             {}

func TestHeaderCap(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.XIS.MaxHeaderBytes = 4 << 10 })
	before := e.simHits.Load()
	resp, _ := e.post(e.query(e.actor, e.giver, e.bsn), map[string]string{"X-Big": strings.Repeat("a", 16<<10)})
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
	assert.Equal(t, before, e.simHits.Load())
}

func TestMutualTLSListener(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.XIS.Auth = "mtls"
		c.XIS.CertFile, c.XIS.KeyFile, c.XIS.ClientCAFile = "set-by-override", "set-by-override", "set-by-override"
	})
	e.register()
	body := e.query(e.actor, e.giver, e.bsn)
	// Without a client certificate the handshake fails.
	pool := e.pki.Roots()
	noCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	defer noCert.CloseIdleConnections()
	_, err := noCert.Post(e.xisURL+"/", "text/xml", strings.NewReader(string(body)))
	assert.Error(t, err)
	// With one from the configured CA the message goes through.
	xc := e.pki.Servers["other-org"]
	cert, err := mtls.Certificate(xc.Key, xc.Chain)
	require.NoError(t, err)
	withCert := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{cert}}}}
	defer withCert.CloseIdleConnections()
	resp, err := withCert.Post(e.xisURL+"/", "text/xml", strings.NewReader(string(body)))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, string(b))
}

func TestOpsEndpoints(t *testing.T) {
	e := newEnv(t)
	e.register()
	resp, _ := e.post(e.query(e.actor, e.giver, e.bsn), nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	e.post(e.query(e.other, e.giver, e.bsn), nil)

	get := func(path string) (int, string) {
		r, err := e.client.Get(e.adminURL + path)
		require.NoError(t, err)
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	st, body := get("/metrics")
	require.Equal(t, http.StatusOK, st)
	assert.Contains(t, body, `aortagw_messages_total{outcome="ok"} 1`)
	assert.Contains(t, body, `aortagw_messages_total{outcome="ActorNotMandated"} 1`)
	assert.Contains(t, body, "aortagw_sign_seconds_count 1")
	assert.Contains(t, body, "aortagw_lsp_seconds_count 1")
	assert.Contains(t, body, "aortagw_trigger_queue_depth")
	st, _ = get("/healthz")
	assert.Equal(t, http.StatusOK, st)
	st, body = get("/readyz")
	assert.Equal(t, http.StatusOK, st, body)
	assert.Contains(t, body, `"database": "ok"`)
	st, _ = get("/v1/admin/tokens")
	assert.Equal(t, http.StatusUnauthorized, st, "the admin API needs the bearer token")
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	assert.ErrorIs(t, e.srv.Start(context.Background()), ErrLifecycle)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, e.srv.Shutdown(ctx))
	require.NoError(t, e.srv.Shutdown(ctx), "Shutdown is idempotent")
	_, err := e.client.Get(e.adminURL + "/healthz")
	assert.Error(t, err, "listeners are closed")
}

func TestProxyResendsWithNewTokenWhenLSPBusy(t *testing.T) {
	e := newEnv(t)
	e.register()
	e.busy.Store(1) // the LSP answers 503 once without processing
	resp, b := e.post(e.query(e.actor, e.giver, e.bsn), nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	assert.Equal(t, int64(2), e.simHits.Load())
	acc := e.sim.Accepted()
	require.Len(t, acc, 1)
	minted := e.auditOf("token.minted")
	require.Len(t, minted, 2, "the resend carries a new transaction token")
	assert.NotEqual(t, minted[0].TokenIDs, minted[1].TokenIDs)
	msgs := e.auditOf("message")
	require.Len(t, msgs, 1)
	assert.Equal(t, acc[0].TransactionID, msgs[0].TokenIDs[2])
	assert.Equal(t, minted[1].TokenIDs[0], acc[0].TransactionID)
}
