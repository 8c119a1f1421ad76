package gateway

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/aortagw/aortagw/gateway/store"
	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/internal/hl7"
	"github.com/aortagw/aortagw/internal/mtls"
	"github.com/aortagw/aortagw/internal/soap"
	"github.com/aortagw/aortagw/internal/uzi"
	"github.com/aortagw/aortagw/lsp"
	"github.com/aortagw/aortagw/testpki"
	"github.com/aortagw/aortagw/tokens"
)

func TestMain(m *testing.M) {
	if cfg := os.Getenv(benchChildEnv); cfg != "" {
		os.Exit(benchChildMain(cfg)) // the gateway benchmark's child process
	}
	goleak.VerifyTestMain(m,
		// The store's database/sql connection openers of modernc sqlite end
		// with Close; pgx pools likewise. Nothing else is expected to linger.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	)
}

// env is a running gateway in front of the LSP simulator over real mTLS,
// with testpki certificates (software keys) and the real SQLite store.
type env struct {
	t        *testing.T
	pki      *testpki.PKI
	st       store.Store
	sim      *lsp.Simulator
	simHits  *atomic.Int64 // requests that reached the simulator's listener
	simURL   string
	srv      *Server
	cfg      Config
	reg      *prometheus.Registry
	client   *http.Client
	xisURL   string
	adminURL string
	giver    *testpki.Card // mandate giver (responsible caregiver)
	actor    *testpki.Card // colleague acting under the mandate
	other    *testpki.Card // a caregiver without mandate
	ura      string
	bsn      string
	signer   *tokens.Signer
	key      *flakyKey     // the server key behind signer
	offset   *atomic.Int64 // added to the gateway's clock
	simTS    *httptest.Server
	lastHdr  atomic.Pointer[http.Header] // headers of the last request at the simulator
	failSign *atomic.Bool                // makes the server key fail (HSM down)
	busy     atomic.Int64                // the next n requests get 503 at the simulator
	lastLen  atomic.Value                // [2]int64{declared Content-Length, bytes received} at the simulator
	deps     Deps
	opts     Options
}

type envOpt func(*Config)

const testAppID = "1234"

func newEnv(t *testing.T, opts ...envOpt) *env {
	t.Helper()
	p, err := testpki.Shared()
	require.NoError(t, err)
	e := &env{t: t, pki: p, simHits: &atomic.Int64{}, reg: prometheus.NewRegistry(), bsn: lsp.WellKnownBSNs[0],
		offset: &atomic.Int64{}, failSign: &atomic.Bool{}}
	id, err := uzi.Parse(p.Server.Cert)
	require.NoError(t, err)
	e.ura = id.URA
	var zs, ns []*testpki.Card
	for _, c := range p.Cards {
		if c.URA == e.ura && c.Sign != nil {
			switch c.Type {
			case uzi.CardZ:
				zs = append(zs, c)
			case uzi.CardN:
				ns = append(ns, c)
			}
		}
	}
	require.GreaterOrEqual(t, len(zs), 2, "testpki needs two Z cards in the gateway's organisation")
	require.NotEmpty(t, ns, "testpki needs an N card in the gateway's organisation")
	// The GP mandates his assistant; the pharmacist has no mandate.
	e.giver, e.actor, e.other = zs[0], ns[0], zs[1]

	ctx := context.Background()
	e.st = openStore(t, filepath.Join(t.TempDir(), "gw.db"))

	e.startSimulator()

	e.key = &flakyKey{Signer: p.Server.Key, fail: e.failSign}
	e.signer, err = tokens.NewSigner(e.key, p.Server.Chain)
	require.NoError(t, err)
	tlsCert, err := mtls.Certificate(p.Server.Key, p.Server.Chain)
	require.NoError(t, err)
	lcfg := lsp.DefaultClientConfig()
	lcfg.Endpoint, lcfg.Certificate, lcfg.RootCAs = e.simURL, tlsCert, p.RootCerts()
	lcfg.ResponseTimeout = 10 * time.Second
	lclient, err := lsp.NewClient(lcfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = lclient.Close() })
	validator, err := tokens.NewValidator(tokens.ValidatorConfig{
		Roots: p.RootCerts(), Intermediates: p.IntermediateCerts(), CRLs: p.CRLList(),
	})
	require.NoError(t, err)

	cfg := DefaultConfig()
	cfg.XIS.Addr, cfg.Admin.Addr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.XIS.Auth, cfg.XIS.BearerToken, cfg.Admin.BearerToken = "bearer", "xis-token", "admin-token"
	cfg.LSP.Endpoint, cfg.LSP.CAFile = e.simURL, "unused-in-tests.pem"
	cfg.HSM.KeyURI = "pkcs11:token=unused-in-tests"
	cfg.Trust.UZIRootsFile = "unused-in-tests.pem"
	cfg.Tokens.ApplicationID, cfg.Tokens.URA = testAppID, e.ura
	cfg.Triggers.PollInterval, cfg.Triggers.Backoff, cfg.Triggers.MaxBackoff = 20*time.Millisecond, 50*time.Millisecond, time.Second
	cfg.Triggers.CallbackPrefixes = []string{"http://127.0.0.1"}
	cfg.Strict = false // the callback test uses a plain http:// callback server
	for _, o := range opts {
		o(&cfg)
	}
	e.cfg = cfg
	e.deps = Deps{Store: e.st, Signer: e.signer, LSP: lclient, Verifier: validator}
	e.opts = Options{Logger: slog.New(slog.DiscardHandler),
		Now:    func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) },
		XISTLS: xisTLSOverride(t, p, cfg)}
	o := e.opts
	o.Registerer, o.Gatherer = e.reg, e.reg
	e.srv, err = New(cfg, e.deps, o)
	require.NoError(t, err)
	require.NoError(t, e.srv.Start(ctx))
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.srv.Shutdown(sctx)
	})
	scheme := "http"
	if cfg.XIS.Auth == "mtls" {
		scheme = "https"
	}
	e.xisURL = scheme + "://" + e.srv.XISAddr()
	e.adminURL = "http://" + e.srv.AdminAddr()
	e.client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	t.Cleanup(e.client.CloseIdleConnections)
	return e
}

// xisTLSOverride gives the mtls-mode tests a listener certificate and the
// UZI server CA as the XIS client CA.
func xisTLSOverride(t *testing.T, p *testpki.PKI, cfg Config) *tls.Config {
	if cfg.XIS.Auth != "mtls" {
		return nil
	}
	srvCert := p.Servers[testpki.ServerSBVZ]
	c, err := mtls.Certificate(srvCert.Key, srvCert.Chain)
	require.NoError(t, err)
	tc, err := mtls.ServerConfig(c, p.RootCerts(), nil)
	require.NoError(t, err)
	return tc
}

func openStore(t *testing.T, path string) store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite:"+path, store.Options{
		Logger: slog.New(slog.DiscardHandler),
		Retry:  store.RetryPolicy{Base: 50 * time.Millisecond, Max: time.Second, MaxAttempts: 3},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func (e *env) startSimulator() {
	t, p := e.t, e.pki
	sim, err := lsp.NewTrustingSimulator(lsp.SimConfig{Seed: 1, Logger: slog.New(slog.DiscardHandler)},
		lsp.Trust{Roots: p.RootCerts(), Intermediates: p.IntermediateCerts(), CRLs: p.CRLList(),
			Signers: p.LeafCerts(), ClientCA: p.CAs[testpki.CAServer].Cert})
	require.NoError(t, err)
	e.sim = sim
	hits := e.simHits
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if e.busy.Load() > 0 {
			e.busy.Add(-1)
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusServiceUnavailable) // not processed: the client may resend
			return
		}
		h := r.Header.Clone()
		e.lastHdr.Store(&h)
		body, _ := io.ReadAll(r.Body)
		e.lastLen.Store([2]int64{r.ContentLength, int64(len(body))})
		r.Body = io.NopCloser(bytes.NewReader(body))
		sim.ServeHTTP(w, r)
	}))
	lc := p.Servers[testpki.ServerLSP]
	cert, err := mtls.Certificate(lc.Key, lc.Chain)
	require.NoError(t, err)
	ts.TLS = sim.TLSConfig(cert)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	e.simTS = ts
	e.simURL = strings.Replace(ts.URL, "127.0.0.1", "localhost", 1)
}

// register signs and registers the standard enrolment and mandate.
func (e *env) register() (enrolmentID, mandateID string) {
	t := e.t
	enr := e.signEnrolment(e.actor, e.bsn)
	v, err := e.srv.Register(context.Background(), enr, tokens.TypeEnrolment, "test")
	require.NoError(t, err)
	mdt := e.signMandate(e.giver, []string{e.actor.UZI, e.srv.appURN()}, MedicationContext, 365*24*time.Hour)
	m, err := e.srv.Register(context.Background(), mdt, tokens.TypeMandate, "test")
	require.NoError(t, err)
	return v.ID, m.ID
}

func (e *env) signEnrolment(card *testpki.Card, bsn string) []byte {
	s, err := tokens.NewSigner(card.Auth.Key, card.Auth.Chain, tokens.WithEmbeddedCertificate(true))
	require.NoError(e.t, err)
	tok, err := s.SignEnrolment(tokens.Enrolment{URA: e.ura, BSN: bsn})
	require.NoError(e.t, err)
	return tok.Bytes()
}

func (e *env) signMandate(card *testpki.Card, mandated []string, ctxURI string, life time.Duration) []byte {
	s, err := tokens.NewSigner(card.Sign.Key, card.Sign.Chain, tokens.WithEmbeddedCertificate(true))
	require.NoError(e.t, err)
	na := time.Now().Add(life)
	if na.After(card.Sign.Cert.NotAfter) {
		na = card.Sign.Cert.NotAfter
	}
	tok, err := s.SignMandate(tokens.Mandate{URA: e.ura, Mandated: mandated, Context: ctxURI,
		ApplicationID: tokens.AppIDPrefix + testAppID, NotOnOrAfter: na})
	require.NoError(e.t, err)
	return tok.Bytes()
}

// query builds the XIS's SOAP message: a medication query by author, under
// overseer (nil: the author acts himself).
func (e *env) query(author, overseer *testpki.Card, bsn string) []byte {
	p := hl7.QueryParams{
		Interaction: hl7.QURXQuery,
		MessageID:   hl7.ID{Root: "2.16.840.1.113883.2.4.6.6.1234.1", Ext: uuid.NewString()},
		Created:     time.Now(), SenderApp: testAppID, BSN: bsn,
		Author: hl7.Person{UZI: author.UZI, Role: author.Role, URA: author.URA},
	}
	if overseer != nil {
		p.Overseer = &hl7.Person{UZI: overseer.UZI, Role: overseer.Role, URA: overseer.URA}
	}
	body, err := hl7.BuildQuery(p)
	require.NoError(e.t, err)
	return envelope(body)
}

func (e *env) post(body []byte, hdr map[string]string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.xisURL+"/", bytes.NewReader(body))
	require.NoError(e.t, err)
	req.Header.Set("Content-Type", "text/xml; charset=utf-8")
	req.Header.Set("Authorization", "Bearer xis-token")
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	return e.do(req)
}

// do sends req with the test client and reads the whole answer.
func (e *env) do(req *http.Request) (*http.Response, []byte) {
	e.t.Helper()
	resp, err := e.client.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return resp, b
}

func (e *env) adminDo(method, path string, body []byte) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.adminURL+path, bytes.NewReader(body))
	require.NoError(e.t, err)
	req.Header.Set("Authorization", "Bearer admin-token")
	resp, b := e.do(req)
	return resp.StatusCode, b
}

func (e *env) xisJSON(method, path string, v any) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if v != nil {
		b, err := json.Marshal(v)
		require.NoError(e.t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.xisURL+path, rd)
	require.NoError(e.t, err)
	req.Header.Set("Authorization", "Bearer xis-token")
	req.Header.Set("Content-Type", "application/json")
	resp, b := e.do(req)
	return resp.StatusCode, b
}

// faultCode extracts <Code> from an aortagw:<Code> fault answer.
func faultCode(b []byte) string {
	f, ok := soap.ParseFault(b)
	if !ok {
		return ""
	}
	c, ok := strings.CutPrefix(f.Code, "aortagw:")
	if !ok {
		return ""
	}
	return c
}

func (e *env) auditOf(kind string) []store.AuditRecord {
	recs, err := e.st.AuditRecords(context.Background(), store.AuditFilter{})
	require.NoError(e.t, err)
	var out []store.AuditRecord
	for _, r := range recs {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// flakyKey is the real server key that can be made to fail, as an HSM
// whose session broke would. Like pkcs11.Key it signs under a context, and
// it records the actor each signature was made for (ActorFromContext).
type flakyKey struct {
	crypto.Signer
	fail   *atomic.Bool
	mu     sync.Mutex
	actors []string
}

func (k *flakyKey) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.SignContext(context.Background(), digest, opts)
}

func (k *flakyKey) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	k.mu.Lock()
	k.actors = append(k.actors, ActorFromContext(ctx))
	k.mu.Unlock()
	if k.fail.Load() {
		return nil, fmt.Errorf("pkcs11: C_Sign failed (rv=CKR_DEVICE_ERROR)")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return k.Signer.Sign(rand.Reader, digest, opts)
}

// signedFor returns the actors of the signatures made so far.
func (k *flakyKey) signedFor() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.actors...)
}

// The gateway's store satisfies the mandate authority iam drives (leavers).
var _ iam.MandateAuthority = store.Store(nil)
