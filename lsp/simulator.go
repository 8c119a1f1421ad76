package lsp

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aortagw/aortagw/internal/hl7"
	"github.com/aortagw/aortagw/internal/soap"
	"github.com/aortagw/aortagw/internal/uzi"
	"github.com/aortagw/aortagw/internal/xmlsafe"
	"github.com/aortagw/aortagw/tokens"
)

// TokenVerifier verifies the tokens of one message and their binding to it
// (aorta-uzi.md section 7); *tokens.Validator satisfies it. Its replay cache
// makes transaction tokens one-time.
type TokenVerifier interface {
	VerifyBundle(ctx context.Context, b tokens.Bundle, m tokens.Binding) (*tokens.BundleResult, error)
}

var _ TokenVerifier = (*tokens.Validator)(nil)

// SimConfig configures a Simulator.
type SimConfig struct {
	// ClientCAs are the CAs allowed to issue TLS client certificates (the UZI
	// server CA); ClientRoots and ClientIntermediates complete their chains.
	// Required.
	ClientCAs, ClientRoots, ClientIntermediates []*x509.Certificate
	// Verifier verifies tokens (a *tokens.Validator with a replay cache). Required.
	Verifier TokenVerifier
	// Dataset answers queries; nil builds NewDataset(Seed, 50, Now()).
	Dataset *Dataset
	Seed    int64
	// Limits caps incoming messages (zero: xmlsafe.MessageLimits).
	Limits xmlsafe.Limits
	// MaxRecords bounds the accepted-message log (default 10,000; oldest dropped).
	MaxRecords int
	// AllowUntrustedPeer skips the TLS client certificate checks (only for
	// handler tests without TLS; never in `aortagw sim lsp`).
	AllowUntrustedPeer bool
	Now                func() time.Time
	NewID              func() string
	Logger             *slog.Logger
}

// Record is one accepted message, as the LSP saw it.
type Record struct {
	Time          time.Time `json:"time"`
	Interaction   string    `json:"interaction"`
	MessageID     string    `json:"messageId"` // root^extension
	BSN           string    `json:"bsn,omitempty"`
	URA           string    `json:"ura"`
	EnrolmentID   string    `json:"enrolmentId,omitempty"`
	MandateID     string    `json:"mandateId,omitempty"`
	TransactionID string    `json:"transactionId"`
	PeerCN        string    `json:"peerCN"`
	Author        string    `json:"author,omitempty"` // UZI:role, or the application id
	Results       int       `json:"results"`
}

// Simulator is a strict LSP (see the package comment). Safe for concurrent use.
type Simulator struct {
	cfg       SimConfig
	data      *Dataset
	clientCAs map[string]bool // raw DER of allowed issuing CAs
	roots     *x509.CertPool
	inter     *x509.CertPool
	seq       atomic.Uint64

	mu      sync.Mutex
	records []Record
	faults  map[string]int
}

// Trust is what a simulator checks against, as a (test) PKI provides it.
type Trust struct {
	Roots, Intermediates []*x509.Certificate // UZI roots and CAs: tokens and client certificates
	CRLs                 []*x509.RevocationList
	Signers              []*x509.Certificate // certificates tokens may name by issuer and serial only
	ClientCA             *x509.Certificate   // the CA of the clients' UZI server certificates
}

// NewTrustingSimulator is NewSimulator with cfg's client trust and token
// verifier set from t: a strict tokens.Validator with its own replay cache.
func NewTrustingSimulator(cfg SimConfig, t Trust) (*Simulator, error) {
	dir := &tokens.FileDirectory{}
	for _, c := range t.Signers {
		dir.Add(c)
	}
	v, err := tokens.NewValidator(tokens.ValidatorConfig{Roots: t.Roots, Intermediates: t.Intermediates,
		CRLs: t.CRLs, Directory: dir, Replay: tokens.NewMemoryReplayCache(0, nil)})
	if err != nil {
		return nil, err
	}
	cfg.ClientCAs, cfg.ClientRoots, cfg.ClientIntermediates = []*x509.Certificate{t.ClientCA}, t.Roots, t.Intermediates
	cfg.Verifier = v
	return NewSimulator(cfg)
}

// NewSimulator checks cfg and builds a simulator. It does no I/O.
func NewSimulator(cfg SimConfig) (*Simulator, error) {
	if cfg.Verifier == nil {
		return nil, fmt.Errorf("%w: simulator needs a token verifier", ErrConfig)
	}
	if !cfg.AllowUntrustedPeer && (len(cfg.ClientCAs) == 0 || len(cfg.ClientRoots) == 0) {
		return nil, fmt.Errorf("%w: simulator needs client CAs and roots", ErrConfig)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxRecords <= 0 {
		cfg.MaxRecords = 10_000
	}
	if cfg.Limits.MaxBytes <= 0 {
		cfg.Limits = xmlsafe.MessageLimits
	}
	s := &Simulator{cfg: cfg, data: cfg.Dataset, clientCAs: map[string]bool{}, faults: map[string]int{}}
	if s.data == nil {
		s.data = NewDataset(cfg.Seed, 50, cfg.Now())
	}
	if cfg.NewID == nil {
		s.cfg.NewID = func() string { return strconv.FormatUint(s.seq.Add(1), 10) }
	}
	s.roots = x509.NewCertPool()
	for _, c := range cfg.ClientRoots {
		s.roots.AddCert(c)
	}
	s.inter = x509.NewCertPool()
	for _, c := range append(append([]*x509.Certificate{}, cfg.ClientIntermediates...), cfg.ClientCAs...) {
		s.inter.AddCert(c)
	}
	for _, c := range cfg.ClientCAs {
		s.clientCAs[string(c.Raw)] = true
	}
	return s, nil
}

// Dataset returns the simulator's patients.
func (s *Simulator) Dataset() *Dataset { return s.data }

// TLSConfig returns the server TLS configuration for the simulator: TLS 1.2+,
// a client certificate is required at the handshake (a client without one
// is refused there); chain, CA and UZI type are checked by the handler so
// that a wrong certificate gets a specific SOAP fault.
func (s *Simulator) TLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAnyClientCert,
	}
}

// Accepted returns a copy of the accepted-message log, oldest first.
func (s *Simulator) Accepted() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append(make([]Record, 0, len(s.records)), s.records...)
}

// Faults returns how many times each fault code was answered.
func (s *Simulator) Faults() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.faults))
	for k, v := range s.faults {
		out[k] = v
	}
	return out
}

// peer is the checked TLS client.
type peer struct {
	cn  string
	id  *uzi.Identity
	ura string
}

// ServeHTTP implements http.Handler: POST a SOAP message to any path, or
// GET /sim/accepted for the log as JSON.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, serr := s.checkPeer(r)
	if serr != nil {
		s.fail(w, r, serr)
		return
	}
	if r.Method == http.MethodGet && r.URL.Path == "/sim/accepted" {
		s.ServeAccepted(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		s.fail(w, r, &simError{status: http.StatusMethodNotAllowed, fault: soap.Fault{Code: FaultMethodNotAllowed, String: "use POST"}})
		return
	}
	body, serr := s.readBody(w, r)
	if serr != nil {
		s.fail(w, r, serr)
		return
	}
	answer, rec, serr := s.handle(r.Context(), p, body)
	if serr != nil {
		s.fail(w, r, serr)
		return
	}
	s.mu.Lock()
	s.records = append(s.records, *rec)
	if over := len(s.records) - s.cfg.MaxRecords; over > 0 {
		s.records = append([]Record(nil), s.records[over:]...)
	}
	s.mu.Unlock()
	s.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "lsp sim accepted",
		slog.String("interaction", rec.Interaction), slog.String("message_id", rec.MessageID),
		slog.String("ura", rec.URA), slog.String("transaction_id", rec.TransactionID), slog.Int("results", rec.Results))
	h := w.Header()
	h.Set("Content-Type", soap.ContentType)
	h.Set("Content-Length", strconv.Itoa(len(answer)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(answer)
}

// ServeAccepted writes the accepted-message log as JSON.
func (s *Simulator) ServeAccepted(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(s.Accepted())
}

func (s *Simulator) fail(w http.ResponseWriter, r *http.Request, e *simError) {
	s.mu.Lock()
	s.faults[e.fault.Code]++
	s.mu.Unlock()
	s.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "lsp sim refused",
		slog.String("fault", e.fault.Code), slog.String("reason", e.fault.Detail))
	soap.WriteFault(w, e.status, e.fault)
}

// checkPeer verifies the TLS client certificate: a chain to ClientRoots
// whose leaf is issued by one of ClientCAs, valid now, for client auth, and
// a UZI server certificate (type S) with a URA.
func (s *Simulator) checkPeer(r *http.Request) (*peer, *simError) {
	if s.cfg.AllowUntrustedPeer && (r.TLS == nil || len(r.TLS.PeerCertificates) == 0) {
		return &peer{}, nil
	}
	refused := func(msg string, err error) *simError {
		e := refuse(FaultClientCertificateRefused, msg, err)
		e.status = http.StatusForbidden
		return e
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, refused("a TLS client certificate is required", nil)
	}
	leaf := r.TLS.PeerCertificates[0]
	inter := s.inter.Clone()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: s.roots, Intermediates: inter, CurrentTime: s.cfg.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, refused("client certificate not trusted", err)
	}
	issuedByServerCA := false
	for _, ch := range chains {
		if len(ch) > 1 && s.clientCAs[string(ch[1].Raw)] {
			issuedByServerCA = true
		}
	}
	if !issuedByServerCA {
		return nil, refused("client certificate not issued by the UZI server CA", nil)
	}
	id, err := uzi.Parse(leaf)
	if err != nil {
		return nil, refused("client certificate is not a UZI certificate", err)
	}
	if id.CardType != uzi.CardS || id.URA == "" {
		return nil, refused("client certificate is not a UZI server certificate", fmt.Errorf("(type=%s)", id.CardType))
	}
	return &peer{cn: leaf.Subject.CommonName, id: id, ura: id.URA}, nil
}

func (s *Simulator) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *simError) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "text/xml" {
		return nil, refuse(FaultContentType, "Content-Type must be text/xml (SOAP 1.1)", err)
	}
	if r.Header.Get("SOAPAction") == "" {
		return nil, refuse(FaultMalformed, "SOAPAction header missing", nil)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.cfg.Limits.MaxBytes)))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, refuse(FaultTooLarge, "message too large", err)
		}
		return nil, refuse(FaultMalformed, "could not read the message", err)
	}
	return b, nil
}

// handle runs every check on one message and builds the answer.
func (s *Simulator) handle(ctx context.Context, p *peer, body []byte) ([]byte, *Record, *simError) {
	// One tokenising pass for the SOAP structure and the HL7 fields.
	var rd *hl7.Reader
	env, err := soap.ParseEnvelopeVisit(body, s.cfg.Limits, func(tok xml.Token, scope map[string]string) {
		if rd == nil {
			rd = hl7.NewReader(scope)
		}
		rd.Token(tok)
	})
	if err != nil {
		return nil, nil, envelopeFault(err)
	}
	if rd == nil {
		rd = hl7.NewReader(nil) // cannot happen: ParseEnvelope requires one body element
	}
	// Rule 1: a wsse:Security header for the zim actor.
	raw, err := env.SecurityTokens()
	if errors.Is(err, soap.ErrNoSecurity) {
		return nil, nil, refuse(FaultSecurityHeaderMissing, "no wsse:Security header for the zim actor", err)
	}
	if err != nil {
		return nil, nil, refuse(FaultSecurityHeaderInvalid, "wsse:Security header for the zim actor is invalid", err)
	}
	for _, h := range env.Headers() {
		zimOrUltimate := h.Actor == "" || h.Actor == soap.ActorZIM || h.Actor == "http://schemas.xmlsoap.org/soap/actor/next"
		known := h.Space == soap.NSWSSE && h.Local == "Security"
		if h.MustUnderstand == "1" && zimOrUltimate && !known {
			return nil, nil, refuse(FaultMustUnderstand, "header not understood", fmt.Errorf("header {%s}%s", h.Space, h.Local))
		}
	}
	msg, err := rd.Message()
	if err != nil {
		return nil, nil, hl7Fault(err)
	}
	if msg.ReceiverApp != hl7.LSPApp {
		return nil, nil, refuse(FaultWrongReceiver, "message not addressed to the LSP", fmt.Errorf("(receiver=%s)", msg.ReceiverApp))
	}
	b, serr := s.verifyTokens(ctx, raw, msg, p)
	if serr != nil {
		return nil, nil, serr
	}
	rec := &Record{
		Time: s.cfg.Now().UTC(), Interaction: msg.InteractionID, MessageID: msg.MessageIDRoot + "^" + msg.MessageIDExt,
		BSN: msg.BSN, URA: b.ura, EnrolmentID: b.enrID, MandateID: b.mdtID, TransactionID: b.trxID,
		PeerCN: p.cn, Author: b.author,
	}
	answer, n := s.answer(msg)
	rec.Results = n
	return soap.Build(answer), rec, nil
}

// answer builds the HL7 answer and returns the number of results.
func (s *Simulator) answer(msg *hl7.Message) ([]byte, int) {
	now := s.cfg.Now()
	id := s.cfg.NewID()
	p := s.data.Patient(msg.BSN)
	switch msg.InteractionID {
	case hl7.QURXQuery, "QURX_IN990111NL":
		n := 0
		if p != nil {
			n = len(p.Dispenses)
		}
		return medicationResponse(msg, p, id, now), n
	case hl7.GQZGQuery:
		n := 0
		if p != nil {
			n = len(p.Conditions) + len(p.Dispenses)
		}
		return genericResponse(msg, p, id, now), n
	}
	return rejectAck(msg, id, now, "ZIM-INT-01", "Interactie wordt niet ondersteund: "+msg.InteractionID), 0
}

// sniff guesses the token type from its bytes so the right strict check
// runs; a wrong guess can only lead to a refusal (ErrWrongType), never to
// acceptance.
func sniff(raw []byte) tokens.Type {
	switch {
	case bytes.Contains(raw, []byte(tokens.MethodHolderOfKey)):
		return tokens.TypeTransaction
	case bytes.Contains(raw, []byte(`"autorisatieregel/context"`)):
		return tokens.TypeMandate
	}
	return tokens.TypeEnrolment
}
