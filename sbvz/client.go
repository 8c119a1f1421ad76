package sbvz

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/aortagw/aortagw/internal/mtls"
	"github.com/aortagw/aortagw/internal/uzi"
)

// Endpoints are the service URLs, one per WSDL.
type Endpoints struct {
	Verify      string // OpvragenVerifieren (mrt21)
	PersonData  string // OpvragenPersoonsgegevens (dec14)
	Document    string // ControleIdentiteitsdocument [P]
	Appointment string // initial-fill afspraak [P]
}

// Service paths below the host, as CIBG publishes them ([P] for the last two).
const (
	PathVerify      = "/cibg.sbv.interface.xis.webservice.mrt21/opvragenverifieren.asmx"
	PathPersonData  = "/cibg.sbv.interface.xis.webservice.dec14/opvragenpersoonsgegevens.asmx"
	PathDocument    = "/aortagw.proposal/controleidentiteitsdocument.asmx"
	PathAppointment = "/aortagw.proposal/initielevulling.asmx"

	AcceptanceBase = "https://webservice-acc.sbv-z.nl"
	ProductionBase = "https://webservice.sbv-z.nl"
)

// EndpointsFor returns the endpoints below a base URL ("https://host[:port]").
// "acceptance" and "production" name CIBG's hosts; for those the proposal
// endpoints (WID, afspraak) stay empty because CIBG has not published them.
func EndpointsFor(base string) (Endpoints, error) {
	switch base {
	case "acceptance", "acc":
		return Endpoints{Verify: AcceptanceBase + PathVerify, PersonData: AcceptanceBase + PathPersonData}, nil
	case "production", "prod":
		return Endpoints{Verify: ProductionBase + PathVerify, PersonData: ProductionBase + PathPersonData}, nil
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return Endpoints{}, fmt.Errorf("sbvz: endpoint must be acceptance, production or https://host[:port] (value=%q)", clip(base))
	}
	b := "https://" + u.Host
	return Endpoints{Verify: b + PathVerify, PersonData: b + PathPersonData, Document: b + PathDocument, Appointment: b + PathAppointment}, nil
}

// ClientConfig configures a Client. Key and Chain are the UZI server
// certificate (key typically in the HSM, from pkcs11.Open); PinnedCAs are the
// only CAs trusted for SBV-Z's TLS certificate.
type ClientConfig struct {
	Endpoints  Endpoints
	Key        crypto.Signer
	Chain      []*x509.Certificate // leaf first
	PinnedCAs  []*x509.Certificate
	ServerName string        // overrides the TLS server name (default: endpoint host)
	Timeout    time.Duration // whole request, default 30s
	// MaxResponseBytes caps an answer; default 1 MiB.
	MaxResponseBytes int
	// NewID makes LokaalKenmerk values (at most 50 characters); default UUIDv4.
	NewID      func() string
	Now        func() time.Time
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// DefaultConfig returns a configuration for CIBG's acceptance service with
// default timeouts; Key, Chain and PinnedCAs still have to be set.
func DefaultConfig() ClientConfig {
	ep, _ := EndpointsFor("acceptance")
	return ClientConfig{Endpoints: ep, Timeout: 30 * time.Second, MaxResponseBytes: defaultMaxBytes}
}

// Validate checks the configuration without doing I/O.
func (c ClientConfig) Validate() error {
	if c.Key == nil || len(c.Chain) == 0 {
		return errors.New("sbvz: client key and certificate chain are required")
	}
	if len(c.PinnedCAs) == 0 {
		return errors.New("sbvz: pinned ca certificates are required")
	}
	if c.Endpoints.Verify == "" && c.Endpoints.PersonData == "" && c.Endpoints.Document == "" && c.Endpoints.Appointment == "" {
		return errors.New("sbvz: no endpoint configured")
	}
	for _, e := range []string{c.Endpoints.Verify, c.Endpoints.PersonData, c.Endpoints.Document, c.Endpoints.Appointment} {
		if e == "" {
			continue
		}
		u, err := url.Parse(e)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("sbvz: endpoint must be an https url (value=%q)", clip(e))
		}
	}
	if c.Timeout < 0 || c.MaxResponseBytes < 0 {
		return errors.New("sbvz: negative timeout or response cap")
	}
	return nil
}

// doer is the part of *http.Client the Client uses.
type doer interface {
	Do(*http.Request) (*http.Response, error)
	CloseIdleConnections()
}

// Client talks to SBV-Z. It is safe for concurrent use.
type Client struct {
	cfg     ClientConfig
	http    doer
	log     *slog.Logger
	reqs    *prometheus.CounterVec
	latency *prometheus.HistogramVec
	once    sync.Once
}

// NewClient builds a client; it does no I/O.
func NewClient(cfg ClientConfig) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = defaultMaxBytes
	}
	if cfg.NewID == nil {
		cfg.NewID = uuid.NewString
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := checkOwnCertificate(cfg.Key, cfg.Chain[0], cfg.Now()); err != nil {
		return nil, err
	}
	cert, err := mtls.Certificate(cfg.Key, cfg.Chain)
	if err != nil {
		return nil, err
	}
	tcfg, err := mtls.ClientConfig(cert, cfg.PinnedCAs, cfg.ServerName)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		TLSClientConfig:       tcfg,
		TLSHandshakeTimeout:   min(cfg.Timeout, 10*time.Second),
		ResponseHeaderTimeout: cfg.Timeout,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     false,
	}
	c := &Client{
		cfg:  cfg,
		http: &http.Client{Transport: tr, Timeout: cfg.Timeout, CheckRedirect: noRedirect},
		log:  cfg.Logger,
		reqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aortagw_sbvz_client_requests_total",
			Help: "SBV-Z requests by operation and result (G, A, F, fault, error, refused).",
		}, []string{"operation", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aortagw_sbvz_client_request_duration_seconds",
			Help:    "SBV-Z request latency by operation.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"operation"}),
	}
	if cfg.Registerer != nil {
		for _, col := range []prometheus.Collector{c.reqs, c.latency} {
			if err := cfg.Registerer.Register(col); err != nil {
				return nil, fmt.Errorf("sbvz: register metrics: %w", err)
			}
		}
	}
	return c, nil
}

// checkOwnCertificate fails fast on a configuration SBV-Z would refuse in
// the handshake: the leaf must be a valid UZI server (type S) certificate
// whose public key belongs to the configured key.
func checkOwnCertificate(key crypto.Signer, leaf *x509.Certificate, now time.Time) error {
	if _, err := uzi.ServerURA(leaf, uzi.ParseOptions{}, false); err != nil {
		return fmt.Errorf("sbvz: client certificate is not a uzi server certificate: %w", err)
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return fmt.Errorf("sbvz: client certificate not valid now (not_before=%s not_after=%s)",
			leaf.NotBefore.Format(time.DateOnly), leaf.NotAfter.Format(time.DateOnly))
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return errors.New("sbvz: key does not belong to the client certificate")
	}
	return nil
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Close releases idle connections. It is idempotent; in-flight calls finish.
func (c *Client) Close() error {
	c.once.Do(c.http.CloseIdleConnections)
	return nil
}

func (c *Client) newRef() (string, error) {
	ref := c.cfg.NewID()
	if strings.TrimSpace(ref) == "" || len(ref) > maxLocalRef {
		return "", fmt.Errorf("sbvz: generated lokaalkenmerk must be 1-%d characters", maxLocalRef)
	}
	return ref, nil
}

// Lookup asks the BSN of a person (OpvragenVerifieren without BSN).
func (c *Client) Lookup(ctx context.Context, q Query) (*Result, error) {
	return c.opvragenVerifieren(ctx, "lookup", q, false)
}

// Verify checks a BSN against person data (OpvragenVerifieren with BSN). An
// answer with another BSN than asked is ErrBSNMismatch.
func (c *Client) Verify(ctx context.Context, q Query) (*Result, error) {
	return c.opvragenVerifieren(ctx, "verify", q, true)
}

func (c *Client) opvragenVerifieren(ctx context.Context, op string, q Query, verify bool) (*Result, error) {
	if _, err := q.Validate(verify); err != nil {
		c.reqs.WithLabelValues(op, "refused").Inc()
		return nil, err
	}
	ref, err := c.newRef()
	if err != nil {
		return nil, err
	}
	body, err := c.post(ctx, op, c.cfg.Endpoints.Verify, ActionVerify, buildVerifyRequest(q, ref))
	if err != nil {
		return nil, err
	}
	r, err := parseVerifyResponse(body, c.cfg.MaxResponseBytes)
	err = faultIn200(err)
	if err == nil && r.LocalRef != ref {
		err = fmt.Errorf("%w (sent=%s)", ErrLocalRefMismatch, ref)
	}
	if err == nil && verify && r.Outcome != OutcomeFailed && r.BSN != q.Person.BSN {
		err = fmt.Errorf("%w (asked=%s got=%s)", ErrBSNMismatch, maskBSN(q.Person.BSN), maskBSN(r.BSN))
	}
	return c.finish(op, ref, r, err)
}

// PersonData asks the registered data of a BSN (OpvragenPersoonsgegevens).
// An answer about another BSN is ErrBSNMismatch.
func (c *Client) PersonData(ctx context.Context, bsn string) (*Result, error) {
	const op = "persondata"
	if !ValidBSN(bsn) {
		c.reqs.WithLabelValues(op, "refused").Inc()
		return nil, fmt.Errorf("%w (bsn=%s)", ErrInvalidBSN, maskBSN(bsn))
	}
	body, err := c.post(ctx, op, c.cfg.Endpoints.PersonData, ActionPersonData, buildPersonDataRequest(bsn))
	if err != nil {
		return nil, err
	}
	r, err := parsePersonDataResponse(body, c.cfg.MaxResponseBytes)
	err = faultIn200(err)
	if err == nil && r.Outcome != OutcomeFailed && r.BSN != bsn {
		err = fmt.Errorf("%w (asked=%s got=%s)", ErrBSNMismatch, maskBSN(bsn), maskBSN(r.BSN))
	}
	return c.finish(op, "", r, err)
}

// CheckDocument runs the WID check on an identity document ([P] shape).
func (c *Client) CheckDocument(ctx context.Context, q DocumentQuery) (*DocumentResult, error) {
	const op = "document"
	if err := q.Validate(); err != nil {
		c.reqs.WithLabelValues(op, "refused").Inc()
		return nil, err
	}
	ref, err := c.newRef()
	if err != nil {
		return nil, err
	}
	body, err := c.post(ctx, op, c.cfg.Endpoints.Document, ActionDocument, buildDocumentRequest(q, ref))
	if err != nil {
		return nil, err
	}
	d, err := parseDocumentResponse(body, c.cfg.MaxResponseBytes)
	err = faultIn200(err)
	if err == nil && d.LocalRef != ref {
		err = fmt.Errorf("%w (sent=%s)", ErrLocalRefMismatch, ref)
	}
	if err == nil && d.Outcome == OutcomeFound && (d.Number != q.Number || d.Kind != q.Kind) {
		err = protoErr("answer is about another document")
	}
	if err != nil {
		c.count(op, err)
		return nil, err
	}
	c.reqs.WithLabelValues(op, string(d.Outcome)).Inc()
	return d, nil
}

// CreateAppointment makes the initial-fill afspraak ([P] shape) and returns
// its AfspraakKenmerk.
func (c *Client) CreateAppointment(ctx context.Context, expected int, description string) (string, error) {
	const op = "appointment_create"
	if expected <= 0 || expected > 10_000_000 {
		return "", fmt.Errorf("%w: aantalverzoeken out of range (value=%d)", ErrInvalidQuery, expected)
	}
	if err := checkText("Omschrijving", description, 80); err != nil {
		return "", err
	}
	ref, err := c.newRef()
	if err != nil {
		return "", err
	}
	body, err := c.post(ctx, op, c.cfg.Endpoints.Appointment, ActionCreateAppointment, buildCreateAppointmentRequest(expected, description, ref))
	if err != nil {
		return "", err
	}
	pa, err := parseProposalAnswer(body, c.cfg.MaxResponseBytes, NSAppointment, "AfspraakAanmaken", []string{"AfspraakKenmerk"})
	var id string
	if err == nil && pa.localRef != ref {
		err = fmt.Errorf("%w (sent=%s)", ErrLocalRefMismatch, ref)
	}
	if err == nil && pa.outcome == OutcomeFailed {
		err = fmt.Errorf("sbvz: afspraak refused (codes=%s)", codesOf(pa.messages))
	}
	if err == nil {
		id, _ = text(first(pa.answer, "AfspraakKenmerk"), 50)
		if id == "" {
			err = protoErr("afspraak without afspraakkenmerk")
		}
	}
	if err != nil {
		c.count(op, err)
		return "", err
	}
	c.reqs.WithLabelValues(op, "G").Inc()
	return id, nil
}

// DeleteAppointment removes the initial-fill afspraak ([P] shape).
func (c *Client) DeleteAppointment(ctx context.Context, id string) error {
	const op = "appointment_delete"
	if err := checkText("AfspraakKenmerk", id, 50); err != nil || id == "" {
		return fmt.Errorf("%w: afspraakkenmerk must be 1-50 characters", ErrInvalidQuery)
	}
	ref, err := c.newRef()
	if err != nil {
		return err
	}
	body, err := c.post(ctx, op, c.cfg.Endpoints.Appointment, ActionDeleteAppointment, buildDeleteAppointmentRequest(id, ref))
	if err != nil {
		return err
	}
	pa, err := parseProposalAnswer(body, c.cfg.MaxResponseBytes, NSAppointment, "AfspraakVerwijderen", nil)
	if err == nil && pa.localRef != ref {
		err = fmt.Errorf("%w (sent=%s)", ErrLocalRefMismatch, ref)
	}
	if err == nil && pa.outcome == OutcomeFailed {
		err = fmt.Errorf("sbvz: afspraak not removed (codes=%s)", codesOf(pa.messages))
	}
	if err != nil {
		c.count(op, err)
		return err
	}
	c.reqs.WithLabelValues(op, "G").Inc()
	return nil
}

// faultIn200 marks a SOAP fault that arrived with HTTP 200 (not SOAP 1.1
// conformant, but seen in the wild) with its status.
func faultIn200(err error) error {
	var f *FaultError
	if errors.As(err, &f) && f.HTTPStatus == 0 {
		f.HTTPStatus = http.StatusOK
	}
	return err
}

func codesOf(ms []Melding) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = m.Code
	}
	return strings.Join(s, ",")
}

func (c *Client) count(op string, err error) {
	switch {
	case errors.Is(err, ErrFault):
		c.reqs.WithLabelValues(op, "fault").Inc()
	default:
		c.reqs.WithLabelValues(op, "error").Inc()
	}
}

func (c *Client) finish(op, ref string, r *Result, err error) (*Result, error) {
	if err != nil {
		c.count(op, err)
		c.log.Warn("sbvz answer refused", "operation", op, "lokaalkenmerk", ref, "error", err)
		return nil, err
	}
	c.reqs.WithLabelValues(op, string(r.Outcome)).Inc()
	c.log.Debug("sbvz answer", "operation", op, "lokaalkenmerk", ref, "resultaat", string(r.Outcome), "codes", strings.Join(r.Codes(), ","))
	return r, nil
}

// post sends one SOAP request and returns the body of a 200 answer. Faults
// (any status) become *FaultError. It never retries: SBV-Z questions are
// logged by CIBG, and the caller decides.
func (c *Client) post(ctx context.Context, op, endpoint, action string, body []byte) ([]byte, error) {
	if endpoint == "" {
		return nil, fmt.Errorf("%w (operation=%s)", ErrNotConfigured, op)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("sbvz: build request: %w", err)
	}
	req.Header.Set("Content-Type", "text/xml; charset=utf-8")
	req.Header.Set("SOAPAction", `"`+action+`"`)
	start := c.cfg.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		c.reqs.WithLabelValues(op, "error").Inc()
		return nil, fmt.Errorf("sbvz: %s request (endpoint=%s): %w", op, endpoint, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(c.cfg.MaxResponseBytes)+1))
	c.latency.WithLabelValues(op).Observe(c.cfg.Now().Sub(start).Seconds())
	if err != nil {
		c.reqs.WithLabelValues(op, "error").Inc()
		return nil, fmt.Errorf("sbvz: %s read answer: %w", op, err)
	}
	if len(b) > c.cfg.MaxResponseBytes {
		c.reqs.WithLabelValues(op, "error").Inc()
		return nil, fmt.Errorf("%w (limit=%d)", ErrResponseTooLarge, c.cfg.MaxResponseBytes)
	}
	if resp.StatusCode != http.StatusOK {
		f := &FaultError{HTTPStatus: resp.StatusCode}
		if _, perr := soapBody(b, c.cfg.MaxResponseBytes); perr != nil {
			var sf *FaultError
			if errors.As(perr, &sf) {
				f.Code, f.String = sf.Code, sf.String
			}
		}
		c.reqs.WithLabelValues(op, "fault").Inc()
		return nil, f
	}
	return b, nil
}

var _ doer = (*http.Client)(nil)
