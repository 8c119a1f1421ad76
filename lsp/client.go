package lsp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aortagw/aortagw/internal/hl7"
	"github.com/aortagw/aortagw/internal/mtls"
	"github.com/aortagw/aortagw/internal/soap"
	"github.com/aortagw/aortagw/internal/xmlsafe"
)

// Errors returned by the client. Typed errors (*FaultError, *AckError) carry
// the LSP's answer; the sentinels classify what went wrong.
var (
	ErrConfig = errors.New("lsp: invalid client configuration")
	// ErrRetryable means the request provably never left this process (dial
	// or connection failure before any byte of the request was written) or
	// the LSP answered 503/429 without processing it. The caller may resend
	// the same message with a NEW transaction token; never with the old one.
	ErrRetryable = errors.New("lsp: not processed; resend with a new transaction token")
	// ErrOutcomeUnknown means the request was (possibly) written but no
	// complete answer came back (timeout, reset). The transaction token is
	// spent. Whether to resend (with a new token) is the caller's policy.
	ErrOutcomeUnknown = errors.New("lsp: request sent, outcome unknown")
	// ErrTLS means the TLS handshake failed for a reason a resend will not
	// fix (untrusted LSP certificate, our certificate refused).
	ErrTLS = errors.New("lsp: tls handshake failed")
	// ErrClientKey means our client key (the UZI server key in the HSM)
	// failed to sign the TLS handshake; nothing was sent. The key's own
	// error stays in the chain (e.g. pkcs11.ErrTokenBusy), so callers can
	// report the HSM rather than the LSP.
	ErrClientKey = errors.New("lsp: client key could not sign the tls handshake")
	// ErrResponseTooLarge means the answer exceeded MaxResponseBytes.
	ErrResponseTooLarge = errors.New("lsp: response too large")
	// ErrBadResponse means the answer is not a usable SOAP/HL7v3 response.
	ErrBadResponse = errors.New("lsp: invalid response")
	// ErrHTTPStatus means a non-200 answer without a SOAP fault.
	ErrHTTPStatus = errors.New("lsp: unexpected http status")
	// ErrEnvelope means the outgoing envelope is refused before sending.
	ErrEnvelope = errors.New("lsp: outgoing envelope refused")
)

// FaultError is a SOAP fault answered by the LSP.
type FaultError struct {
	Code, String, Detail string
	HTTPStatus           int
	// Envelope is the fault envelope as received (do not modify), so a
	// proxy can pass it on unchanged.
	Envelope []byte
}

func (e *FaultError) Error() string {
	return fmt.Sprintf("lsp: soap fault (code=%s status=%d): %s", e.Code, e.HTTPStatus, e.String)
}

// AckError is an HL7v3 answer whose acknowledgement (typeCode AE/AR/CE/CR)
// or queryAck (queryResponseCode AE/QE) reports an error.
type AckError struct {
	TypeCode          string // acknowledgement typeCode
	QueryResponseCode string // queryAck/queryResponseCode, "" when absent
	Details           []hl7.AckDetail
	// Response is the full answer, for logging and auditing.
	Response *Response
}

func (e *AckError) Error() string {
	msg := fmt.Sprintf("lsp: hl7 acknowledgement error (type=%s query=%s", e.TypeCode, e.QueryResponseCode)
	for i, d := range e.Details {
		if i == 3 {
			msg += " ..."
			break
		}
		msg += fmt.Sprintf(" code=%s text=%q", d.Code, d.Text)
	}
	return msg + ")"
}

// Response is a successful LSP answer.
type Response struct {
	HTTPStatus int
	// Envelope is the complete SOAP envelope as received (do not modify).
	Envelope []byte
	// Body is the HL7v3 element in soap:Body, as received.
	Body []byte
	// Message holds the HL7 fields read from Body.
	Message  *hl7.Message
	Duration time.Duration
}

// ClientConfig configures a Client. Endpoint, Certificate and RootCAs are required.
type ClientConfig struct {
	// Endpoint is the LSP URL; it must be https.
	Endpoint string
	// Certificate is the UZI server certificate; its PrivateKey is a
	// crypto.Signer (from pkcs11 in production). Use mtls.Certificate.
	Certificate tls.Certificate
	// RootCAs is the pinned CA set of the LSP's TLS certificate. System roots are never used.
	RootCAs []*x509.Certificate
	// ServerName overrides the TLS server name (default: Endpoint's host).
	ServerName string
	// ConnectTimeout bounds dial plus TLS handshake (default 10s).
	ConnectTimeout time.Duration
	// ResponseTimeout bounds the whole exchange after the connection is up:
	// writing the request and reading the complete answer (default 60s).
	ResponseTimeout time.Duration
	// MaxResponseBytes caps the answer (default 16 MiB).
	MaxResponseBytes int64
	// SOAPActions overrides the SOAPAction per interactionId; the default is
	// "urn:hl7-org:v3/<interactionId>" [P].
	SOAPActions map[string]string
	// MaxConnsPerHost caps parallel connections to the LSP (default 32).
	MaxConnsPerHost int
	Registerer      prometheus.Registerer
	Logger          *slog.Logger
	Now             func() time.Time
}

// DefaultClientConfig returns the defaults for the optional fields.
func DefaultClientConfig() ClientConfig {
	return ClientConfig{
		ConnectTimeout:   10 * time.Second,
		ResponseTimeout:  60 * time.Second,
		MaxResponseBytes: 16 << 20,
		MaxConnsPerHost:  32,
	}
}

// Validate checks the configuration and fills defaults.
func (c *ClientConfig) Validate() error {
	d := DefaultClientConfig()
	u, err := url.Parse(c.Endpoint)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%w: endpoint must be an https url (endpoint=%q)", ErrConfig, c.Endpoint)
	}
	if u.User != nil {
		return fmt.Errorf("%w: endpoint must not carry credentials", ErrConfig)
	}
	if len(c.Certificate.Certificate) == 0 || c.Certificate.PrivateKey == nil {
		return fmt.Errorf("%w: client certificate and key are required", ErrConfig)
	}
	if _, ok := c.Certificate.PrivateKey.(crypto.Signer); !ok {
		return fmt.Errorf("%w: client key must be a crypto.Signer", ErrConfig)
	}
	if len(c.RootCAs) == 0 {
		return fmt.Errorf("%w: pinned lsp ca certificates are required", ErrConfig)
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = d.ConnectTimeout
	}
	if c.ResponseTimeout <= 0 {
		c.ResponseTimeout = d.ResponseTimeout
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = d.MaxResponseBytes
	}
	if c.MaxConnsPerHost <= 0 {
		c.MaxConnsPerHost = d.MaxConnsPerHost
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Client sends SOAP 1.1 envelopes to the LSP over mutual TLS. It is safe for
// concurrent use; connections are pooled. It never retries a request that
// may have been written (the transaction token in it is one-time); see
// ErrRetryable. Close releases idle connections.
type Client struct {
	cfg    ClientConfig
	http   *http.Client
	tr     *http.Transport
	m      *clientMetrics
	closed atomic.Bool
	limits xmlsafe.Limits
	outLim xmlsafe.Limits
}

type clientMetrics struct {
	latency   *prometheus.HistogramVec
	responses *prometheus.CounterVec
}

// Outcomes used as metric labels.
const (
	outcomeOK        = "ok"
	outcomeFault     = "fault"
	outcomeAck       = "ack_error"
	outcomeHTTP      = "http_error"
	outcomeNotSent   = "not_sent"
	outcomeUnknown   = "outcome_unknown"
	outcomeTLS       = "tls_error"
	outcomeBad       = "bad_response"
	outcomeTooLarge  = "too_large"
	outcomeEnvelope  = "envelope_refused"
	outcomeCancelled = "cancelled"
	outcomeClientKey = "client_key_error"
)

func newClientMetrics(reg prometheus.Registerer) (*clientMetrics, error) {
	m := &clientMetrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "aortagw", Subsystem: "lsp", Name: "request_duration_seconds",
			Help:    "Time from sending a message to the LSP until its complete answer, by outcome.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"outcome"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "aortagw", Subsystem: "lsp", Name: "responses_total",
			Help: "LSP exchanges by outcome (ok, fault, ack_error, http_error, not_sent, outcome_unknown, tls_error, client_key_error, bad_response, too_large, envelope_refused, cancelled).",
		}, []string{"outcome"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.latency, m.responses} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("%w: register metrics: %w", ErrConfig, err)
			}
		}
	}
	return m, nil
}

// NewClient validates cfg and builds a client. It does no I/O.
func NewClient(cfg ClientConfig) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.Endpoint)
	serverName := cfg.ServerName
	if serverName == "" {
		serverName = u.Hostname()
	}
	tlsCfg, err := mtls.ClientConfig(cfg.Certificate, cfg.RootCAs, serverName)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	// The handshake signature runs with the handshake's context (the
	// request's values: actor, trace) when the key supports it, and a key
	// failure is kept for classification (ErrClientKey).
	cert := cfg.Certificate
	tlsCfg.Certificates = nil
	tlsCfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if err := cri.SupportsCertificate(&cert); err != nil {
			return &tls.Certificate{}, nil // as crypto/tls does: no acceptable certificate, send none
		}
		ctx := cri.Context()
		slot, _ := ctx.Value(keyErrSlotKey{}).(*keyErrSlot)
		c := cert
		c.PrivateKey = &handshakeKey{Signer: cert.PrivateKey.(crypto.Signer), ctx: ctx, slot: slot}
		return &c, nil
	}
	m, err := newClientMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 nil, // never an environment proxy for the LSP
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   cfg.ConnectTimeout,
		ResponseHeaderTimeout: cfg.ResponseTimeout,
		MaxIdleConns:          cfg.MaxConnsPerHost,
		MaxIdleConnsPerHost:   cfg.MaxConnsPerHost,
		MaxConnsPerHost:       cfg.MaxConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     false, // SOAP 1.1 over HTTP/1.1, as AORTA specifies
		DisableCompression:    true,  // no transparent gzip: the size cap applies to the wire bytes
	}
	c := &Client{
		cfg:  cfg,
		tr:   tr,
		http: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		m:    m,
		limits: xmlsafe.Limits{
			MaxBytes: int(cfg.MaxResponseBytes), MaxDepth: xmlsafe.MessageLimits.MaxDepth, MaxAttrs: xmlsafe.MessageLimits.MaxAttrs,
		},
		outLim: xmlsafe.MessageLimits,
	}
	return c, nil
}

// SOAPAction returns the configured SOAPAction for an interaction.
func (c *Client) SOAPAction(interactionID string) string {
	if a, ok := c.cfg.SOAPActions[interactionID]; ok {
		return a
	}
	return "urn:hl7-org:v3/" + interactionID
}

// Close closes idle connections. In-flight calls finish; later calls fail.
// It is idempotent.
func (c *Client) Close() error {
	c.closed.Store(true)
	c.tr.CloseIdleConnections()
	return nil
}

// Send posts envelope (a complete SOAP 1.1 envelope with the zim
// wsse:Security header) to the LSP. soapAction "" means the configured or
// default action for the envelope's interaction. On success it returns the
// answer; otherwise *FaultError, *AckError, or an error wrapping one of the
// sentinels above. Send never resends by itself: a request that failed
// before anything was written wraps ErrRetryable, and the caller resends with
// a new transaction token (net/http may transparently redo a request on a
// fresh connection only when not one byte of it was written).
func (c *Client) Send(ctx context.Context, envelope []byte, soapAction string) (*Response, error) {
	return c.exchange(ctx, func() (*Response, string, error) { return c.send(ctx, envelope, soapAction) })
}

// SendSecured is Send for an envelope the caller spliced with
// (*soap.Envelope).WithSecurity. Such an envelope passed the strict parse
// and its tokens the token check, so when it conforms to the client's
// outgoing limits it goes out without being parsed again; otherwise it gets
// Send's full check. Everything else is as Send.
func (c *Client) SendSecured(ctx context.Context, s *soap.Secured, soapAction string) (*Response, error) {
	if !s.Conforms(c.outLim) {
		return c.Send(ctx, s.Bytes(), soapAction)
	}
	return c.exchange(ctx, func() (*Response, string, error) {
		_, local := s.BodyName()
		return c.post(ctx, s.Bytes(), local, soapAction)
	})
}

// exchange runs one send with the closed check, metrics and logging.
func (c *Client) exchange(ctx context.Context, send func() (*Response, string, error)) (*Response, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("%w: client closed", ErrConfig)
	}
	start := c.cfg.Now()
	resp, outcome, err := send()
	d := c.cfg.Now().Sub(start)
	c.m.latency.WithLabelValues(outcome).Observe(d.Seconds())
	c.m.responses.WithLabelValues(outcome).Inc()
	if resp != nil {
		resp.Duration = d
	}
	var ae *AckError
	if errors.As(err, &ae) && ae.Response != nil {
		ae.Response.Duration = d
	}
	if err != nil {
		c.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "lsp exchange failed",
			slog.String("outcome", outcome), slog.Duration("duration", d), slog.String("error", err.Error()))
	}
	return resp, err
}

func (c *Client) send(ctx context.Context, envelope []byte, soapAction string) (*Response, string, error) {
	env, err := soap.ParseEnvelope(envelope, c.outLim)
	if err != nil {
		return nil, outcomeEnvelope, fmt.Errorf("%w: %w", ErrEnvelope, err)
	}
	if !env.HasSecurity() {
		return nil, outcomeEnvelope, fmt.Errorf("%w: %w", ErrEnvelope, soap.ErrNoSecurity)
	}
	_, local := env.BodyName()
	return c.post(ctx, envelope, local, soapAction)
}

// post sends a checked envelope once; bodyLocal names its body element (the
// default SOAPAction).
func (c *Client) post(ctx context.Context, envelope []byte, bodyLocal, soapAction string) (*Response, string, error) {
	if soapAction == "" {
		soapAction = c.SOAPAction(bodyLocal)
	}
	if !validAction(soapAction) {
		return nil, outcomeEnvelope, fmt.Errorf("%w: invalid soap action (action=%q)", ErrEnvelope, soapAction)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout+c.cfg.ResponseTimeout)
	defer cancel()

	var wrote atomic.Bool // first byte of the request written
	var tlsErr atomic.Value
	slot := &keyErrSlot{}
	ctx = context.WithValue(ctx, keyErrSlotKey{}, slot)
	trace := &httptrace.ClientTrace{
		WroteHeaderField: func(string, []string) { wrote.Store(true) },
		WroteHeaders:     func() { wrote.Store(true) },
		TLSHandshakeDone: func(_ tls.ConnectionState, err error) {
			if err != nil {
				tlsErr.Store(err)
			}
		},
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, c.cfg.Endpoint, bytes.NewReader(envelope))
	if err != nil {
		return nil, outcomeEnvelope, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	req.Header.Set("Content-Type", soap.ContentType)
	req.Header.Set("SOAPAction", `"`+soapAction+`"`)
	req.Header.Set("Accept", "text/xml")

	hresp, err := c.http.Do(req)
	if err != nil {
		if kerr := slot.err.Load(); kerr != nil && !wrote.Load() {
			return nil, outcomeClientKey, fmt.Errorf("%w: %w", ErrClientKey, *kerr)
		}
		o, e := classifyTransport(ctx, err, wrote.Load(), tlsErr.Load())
		return nil, o, e
	}
	defer hresp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(hresp.Body, c.cfg.MaxResponseBytes+1))
	if err != nil {
		o, e := classifyTransport(ctx, err, true, nil)
		return nil, o, e
	}
	if int64(len(body)) > c.cfg.MaxResponseBytes {
		return nil, outcomeTooLarge, fmt.Errorf("%w (max=%d)", ErrResponseTooLarge, c.cfg.MaxResponseBytes)
	}
	return c.interpret(hresp, body)
}

func classifyTransport(ctx context.Context, err error, wrote bool, tlsErr any) (string, error) {
	if te, ok := tlsErr.(error); ok && te != nil {
		return outcomeTLS, fmt.Errorf("%w: %w", ErrTLS, te)
	}
	var (
		uerr *x509.UnknownAuthorityError
		herr x509.HostnameError
		cerr *x509.CertificateInvalidError
		aerr tls.AlertError
		rerr *tls.CertificateVerificationError
	)
	if errors.As(err, &uerr) || errors.As(err, &herr) || errors.As(err, &cerr) || errors.As(err, &aerr) || errors.As(err, &rerr) {
		return outcomeTLS, fmt.Errorf("%w: %w", ErrTLS, err)
	}
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) && !wrote {
		return outcomeCancelled, fmt.Errorf("%w: cancelled before sending: %w", ErrRetryable, err)
	}
	if !wrote {
		return outcomeNotSent, fmt.Errorf("%w: %w", ErrRetryable, err)
	}
	return outcomeUnknown, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
}

func (c *Client) interpret(hresp *http.Response, body []byte) (*Response, string, error) {
	status := hresp.StatusCode
	ct, _, _ := mime.ParseMediaType(hresp.Header.Get("Content-Type"))
	isXML := ct == "text/xml" || ct == "application/xml" || ct == "application/soap+xml"
	var env *soap.Envelope
	var rd *hl7.Reader
	if isXML && len(body) > 0 {
		// One tokenising pass: the strict parse and the HL7 fields.
		e, err := soap.ParseEnvelopeVisit(body, c.limits, func(tok xml.Token, scope map[string]string) {
			if rd == nil {
				rd = hl7.NewReader(scope)
			}
			rd.Token(tok)
		})
		if err == nil {
			env = e
		} else if status == http.StatusOK {
			return nil, outcomeBad, fmt.Errorf("%w: %w", ErrBadResponse, err)
		}
	}
	if env != nil && env.IsFault() {
		f, err := env.Fault()
		if err != nil {
			return nil, outcomeBad, fmt.Errorf("%w: fault: %w", ErrBadResponse, err)
		}
		return nil, outcomeFault, &FaultError{Code: f.Code, String: f.String, Detail: f.Detail, HTTPStatus: status, Envelope: body}
	}
	if status != http.StatusOK {
		err := fmt.Errorf("%w (status=%d)", ErrHTTPStatus, status)
		if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
			err = fmt.Errorf("%w: %w", ErrRetryable, err)
		}
		return nil, outcomeHTTP, err
	}
	if env == nil {
		return nil, outcomeBad, fmt.Errorf("%w: not a soap envelope (content-type=%q)", ErrBadResponse, ct)
	}
	if rd == nil {
		rd = hl7.NewReader(nil) // cannot happen: ParseEnvelope requires one body element
	}
	msg, err := rd.Message()
	if err != nil {
		return nil, outcomeBad, fmt.Errorf("%w: %w", ErrBadResponse, err)
	}
	resp := &Response{HTTPStatus: status, Envelope: body, Body: env.BodyElement(), Message: msg}
	qrc := msg.QueryResponseCode
	if msg.Ack.IsError() || qrc == "AE" || qrc == "QE" {
		ae := &AckError{QueryResponseCode: qrc, Response: resp}
		if msg.Ack != nil {
			ae.TypeCode = msg.Ack.TypeCode
			ae.Details = msg.Ack.Details
		}
		return nil, outcomeAck, ae
	}
	return resp, outcomeOK, nil
}

// validAction accepts a printable-ASCII URI without quotes or backslashes.
func validAction(a string) bool {
	if a == "" || len(a) > 512 {
		return false
	}
	for i := 0; i < len(a); i++ {
		if a[i] <= ' ' || a[i] > '~' || a[i] == '"' || a[i] == '\\' {
			return false
		}
	}
	return true
}

// keyErrSlotKey is the context key of the per-request keyErrSlot.
type keyErrSlotKey struct{}

// keyErrSlot receives the client key's signing error during the handshake
// of a request (crypto/tls keeps only its text).
type keyErrSlot struct{ err atomic.Pointer[error] }

// contextSigner is a key that takes a context (pkcs11.Key): deadline,
// actor for the audit event.
type contextSigner interface {
	SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error)
}

// handshakeKey is the client key for one TLS handshake.
type handshakeKey struct {
	crypto.Signer
	ctx  context.Context
	slot *keyErrSlot
}

// Sign signs the handshake with the handshake's context when the key
// supports it, recording a failure for the request.
func (k *handshakeKey) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	var (
		sig []byte
		err error
	)
	if cs, ok := k.Signer.(contextSigner); ok {
		sig, err = cs.SignContext(k.ctx, digest, opts)
	} else {
		sig, err = k.Signer.Sign(r, digest, opts)
	}
	if err != nil && k.slot != nil {
		k.slot.err.CompareAndSwap(nil, &err)
	}
	return sig, err
}
