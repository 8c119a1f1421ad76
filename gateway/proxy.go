package gateway

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/aortagw/aortagw/gateway/store"
	"github.com/aortagw/aortagw/internal/hl7"
	"github.com/aortagw/aortagw/internal/soap"
	"github.com/aortagw/aortagw/lsp"
	"github.com/aortagw/aortagw/tokens"
)

// source says where a message came from, for the audit log.
type source struct {
	trigger string // trigger id, "" for an XIS message
	peer    string // XIS client certificate subject or "bearer"
	actor   string // mandated actor for trigger queries ("" = from the message)
}

// result is the LSP's answer, returned to the XIS unchanged.
type result struct {
	status      int
	contentType string
	body        []byte
	txID        string
	outcome     string // "" (by status), "lsp_fault" or "lsp_ack_error"
}

// handleMessage is the proxy: one XIS SOAP message in, the LSP's answer out
// (or an aortagw SOAP fault, in which case nothing was sent).
func (s *Server) handleMessage(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.writeFault(w, fail(CodeBadRequest, nil, "only POST is accepted"))
		return
	}
	s.m.inflight.Inc()
	defer s.m.inflight.Dec()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.XIS.MaxBodyBytes))
	if err != nil {
		e := fail(CodeBadRequest, err, "could not read the request body")
		if isTooLarge(err) {
			e = fail(CodeBodyTooLarge, err, "the message is larger than %d bytes", s.cfg.XIS.MaxBodyBytes)
		}
		s.m.messages.WithLabelValues(string(e.Code)).Inc()
		s.writeFault(w, e)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.XIS.RequestTimeout)
	defer cancel()
	res, err := s.process(ctx, body, source{peer: peerName(r)})
	if err != nil {
		s.writeFault(w, AsError(err))
		return
	}
	h := w.Header()
	if res.contentType != "" {
		h.Set("Content-Type", res.contentType)
	}
	h.Set("Content-Length", strconv.Itoa(len(res.body)))
	w.WriteHeader(res.status)
	_, _ = w.Write(res.body)
}

func peerName(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		return r.TLS.VerifiedChains[0][0].Subject.String()
	}
	return "bearer"
}

// process runs steps 1-5 for one message. On any error nothing was sent to
// the LSP. The outcome is audited in every case.
func (s *Server) process(ctx context.Context, body []byte, src source) (*result, error) {
	ev := store.AuditRecord{Kind: "message", TriggerID: src.trigger}
	res, err := s.forward(ctx, body, src, &ev)
	outcome := "ok"
	var detail map[string]string
	if err != nil {
		e := AsError(err)
		outcome = string(e.Code)
		detail = map[string]string{"reason": e.Public, "peer": src.peer}
		log := s.log.Warn
		if !e.Code.clientFault() {
			log = s.log.Error
		}
		log("message refused", "code", e.Code, "reason", e.Public, "err", e.Err,
			"interaction", ev.Interaction, "message_id", ev.MessageID, "trigger", src.trigger)
	} else {
		detail = map[string]string{"lsp_status": strconv.Itoa(res.status), "peer": src.peer}
		switch {
		case res.outcome != "":
			outcome = res.outcome
		case res.status >= 300:
			outcome = "lsp_" + strconv.Itoa(res.status)
		}
	}
	s.m.messages.WithLabelValues(metricOutcome(outcome)).Inc()
	ev.Outcome = outcome
	ev.Details, _ = json.Marshal(detail)
	if _, aerr := s.deps.Store.Append(context.WithoutCancel(ctx), ev); aerr != nil {
		s.log.Error("audit append failed", "err", aerr, "message_id", ev.MessageID)
	}
	return res, err
}

func metricOutcome(o string) string {
	if o == "ok" {
		return o
	}
	if _, ok := codeStatus[Code(o)]; ok {
		return o
	}
	return "lsp_error"
}

func (s *Server) forward(ctx context.Context, body []byte, src source, ev *store.AuditRecord) (*result, error) {
	lim := soap.Limits{MaxBytes: int(s.cfg.XIS.MaxBodyBytes), MaxDepth: 64, MaxAttrs: 64}
	// One tokenising pass: the strict pre-parse, the SOAP structure (with the
	// offsets the header insertion uses later) and the HL7 fields.
	var rd *hl7.Reader
	env, err := soap.ParseEnvelopeVisit(body, lim, func(tok xml.Token, scope map[string]string) {
		if rd == nil {
			rd = hl7.NewReader(scope)
		}
		rd.Token(tok)
	})
	if err != nil {
		return nil, fail(CodeBadRequest, err, "not a strict SOAP 1.1 envelope: %v", err)
	}
	if env.HasAnySecurity() {
		return nil, fail(CodeSecurityHeader, nil, "the XIS must not send a wsse:Security header; aortagw adds the tokens")
	}
	if rd == nil {
		rd = hl7.NewReader(nil) // cannot happen: ParseEnvelope requires one body element
	}
	msg, err := rd.Message()
	if err != nil {
		return nil, fail(CodeBadRequest, err, "the HL7v3 message could not be read: %v", err)
	}
	ev.Interaction = msg.InteractionID
	ev.MessageID = msg.MessageIDRoot + "/" + msg.MessageIDExt
	ev.BSN = msg.BSN
	ev.Actor = nameID(msg.AuthorUZI, msg.AuthorRole)
	ic, ok := s.cfg.Interactions[msg.InteractionID]
	if !ok {
		return nil, fail(CodeUnknownInteraction, nil, "interaction %s is not configured", msg.InteractionID)
	}
	ura := msg.AuthorURA
	if ura == "" {
		ura = msg.OverseerURA
	}
	if ura == "" {
		return nil, fail(CodeBadRequest, nil, "the message names no care provider (URA) for the author")
	}
	if s.cfg.Tokens.URA != "" && ura != s.cfg.Tokens.URA {
		return nil, fail(CodeWrongOrganisation, nil, "URA %s is not the care provider this gateway serves", ura)
	}
	if msg.OverseerURA != "" && msg.OverseerURA != ura {
		return nil, fail(CodeWrongOrganisation, nil, "author and overseer belong to different care providers")
	}
	if msg.BSN == "" {
		return nil, fail(CodeBadRequest, nil, "the message has no patient BSN; a conditional query needs one")
	}
	if msg.AuthorUZI == "" {
		return nil, fail(CodeCaregiverUnknown, nil, "the message names no author (UZI number)")
	}
	now := s.now()

	// (1) the patient's enrolment.
	enr, err := s.deps.Store.FindEnrolment(ctx, ura, msg.BSN, now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, fail(CodeNoEnrolment, err, "no valid enrolment token for this patient at URA %s", ura)
	case err != nil:
		return nil, fail(CodeStoreUnavailable, err, "the token store is unavailable")
	}
	ev.TokenIDs = append(ev.TokenIDs, enr.ID)

	// (2) the responsible caregiver's mandate covering the acting person.
	giver := msg.OverseerUZI
	if giver == "" {
		giver = msg.AuthorUZI
	}
	ev.Giver = giver
	if giver == msg.OverseerUZI {
		ev.Giver = nameID(giver, msg.OverseerRole)
	}
	blocked, err := s.deps.Store.ActorBlocked(ctx, msg.AuthorUZI)
	if err != nil {
		return nil, fail(CodeStoreUnavailable, err, "the token store is unavailable")
	}
	if blocked {
		return nil, fail(CodeActorBlocked, nil, "UZI %s is blocked (left the organisation or suspended)", msg.AuthorUZI)
	}
	// The acting person must be mandated by the responsible caregiver; a
	// caregiver acting himself (no overseer) mandates this application.
	actor := nameID(msg.AuthorUZI, msg.AuthorRole)
	if giver == msg.AuthorUZI {
		actor = s.appURN()
	}
	if src.actor != "" {
		actor = src.actor
	}
	q := store.MandateQuery{URA: ura, GiverUZI: giver, Actor: actor,
		ApplicationID: s.appURN(), Context: ic.Context, At: now}
	mdt, err := s.deps.Store.FindMandate(ctx, q)
	switch {
	case errors.Is(err, store.ErrActorBlocked):
		return nil, fail(CodeActorBlocked, err, "the caregiver or the acting person is blocked")
	case errors.Is(err, store.ErrNotFound):
		return nil, s.whyNoMandate(ctx, q)
	case err != nil:
		return nil, fail(CodeStoreUnavailable, err, "the token store is unavailable")
	}
	ev.TokenIDs = append(ev.TokenIDs, mdt.ID)
	// The server key's signatures for this message (the transaction token,
	// a new mTLS handshake) name the acting person in the HSM audit event;
	// a trigger's query is the system's (systemKey).
	if src.trigger == "" {
		ctx = WithActor(ctx, "uzi:"+msg.AuthorUZI)
	}

	// (3)-(5), at most maxSends times: the LSP client never resends, but
	// when a send provably did not reach the LSP (lsp.ErrRetryable: dial
	// failure before writing, or 503/429 without processing) the message goes
	// again with a NEW transaction token. A token is never sent twice.
	base := ev.TokenIDs
	var lastErr error
	for attempt := 1; attempt <= maxSends; attempt++ {
		if attempt > 1 {
			select {
			case <-ctx.Done():
				return nil, fail(CodeLSPUnavailable, lastErr, "the LSP could not be reached")
			case <-time.After(time.Duration(attempt-1) * retryDelay):
			}
		}
		res, err := s.sendOnce(ctx, env, msg, ura, ic, enr, mdt, ev, base)
		if err == nil {
			return res, nil
		}
		lastErr = err
		if e := AsError(err); e.Code != CodeLSPUnavailable || !errors.Is(e.Err, lsp.ErrRetryable) {
			return nil, err
		}
		s.log.Warn("lsp did not take the message; resending with a new transaction token",
			"attempt", attempt, "err", AsError(err).Err, "message_id", ev.MessageID)
	}
	return nil, lastErr
}

// maxSends and retryDelay bound the resends of a message the LSP provably
// did not receive.
const (
	maxSends   = 3
	retryDelay = 100 * time.Millisecond
)

// sendOnce mints a fresh transaction token, audits it, inserts the three
// tokens and sends the envelope once.
func (s *Server) sendOnce(ctx context.Context, env *soap.Envelope, msg *hl7.Message, ura string,
	ic InteractionConfig, enr *store.Enrolment, mdt *store.Mandate, ev *store.AuditRecord, base []string) (*result, error) {
	// (3) a fresh transaction token, signed by the server key in the HSM.
	t0 := time.Now()
	tx, err := s.deps.Signer.SignTransactionContext(ctx, tokens.Transaction{
		URA: ura, NameID: "", BSN: msg.BSN,
		InteractionID: msg.InteractionID, MessageIDRoot: msg.MessageIDRoot, MessageIDExt: msg.MessageIDExt,
		ApplicationID: s.appURN(), Context: ic.Context,
		ContextCodeSystem: ic.ContextCodeSystem, ContextCode: ic.ContextCode,
		Audiences: []string{s.cfg.Tokens.Audience},
	})
	s.m.sign.Observe(time.Since(t0).Seconds())
	if err != nil {
		return nil, fail(CodeHSMUnavailable, err, "the server key could not sign the transaction token")
	}
	ev.TokenIDs = append(append([]string(nil), base...), tx.ID())
	// Audit the minted token before anything leaves (fail closed).
	mint := *ev
	mint.Kind = "token.minted"
	mint.Outcome = "minted"
	mint.TokenIDs = []string{tx.ID()}
	mint.Details, _ = json.Marshal(map[string]string{"type": "transaction", "signer": "server",
		"enrolment": enr.ID, "mandate": mdt.ID, "not_on_or_after": tx.NotOnOrAfter().UTC().Format(time.RFC3339)})
	if _, err := s.deps.Store.Append(ctx, mint); err != nil {
		return nil, fail(CodeStoreUnavailable, err, "the audit log is unavailable")
	}

	// (4) insert the three tokens byte for byte and forward.
	// The envelope was parsed strictly once, in forward: the splice reuses
	// its offsets instead of parsing it again.
	out, err := env.WithSecurity(enr.Raw, mdt.Raw, tx.Bytes())
	if err != nil {
		return nil, fail(CodeInternal, err, "the security header could not be inserted")
	}
	t1 := time.Now()
	resp, err := s.deps.LSP.SendSecured(ctx, out, ic.SOAPAction)
	s.m.lsp.Observe(time.Since(t1).Seconds())
	if err != nil {
		if r := lspAnswer(err); r != nil {
			r.txID = tx.ID()
			return r, nil
		}
		return nil, fail(CodeLSPUnavailable, err, "the LSP could not be reached or gave no usable answer")
	}
	// (5) the LSP's answer, unchanged.
	return &result{status: resp.HTTPStatus, contentType: soap.ContentType, body: resp.Envelope, txID: tx.ID()}, nil
}

// lspAnswer turns an LSP that answered (with a SOAP fault or a negative HL7
// acknowledgement) into the answer the XIS gets; nil when the LSP gave no
// answer at all.
func lspAnswer(err error) *result {
	var ae *lsp.AckError
	if errors.As(err, &ae) && ae.Response != nil {
		return &result{status: ae.Response.HTTPStatus, contentType: soap.ContentType, body: ae.Response.Envelope,
			outcome: "lsp_ack_error"}
	}
	var fe *lsp.FaultError
	if errors.As(err, &fe) {
		// The LSP's fault goes back to the XIS byte for byte, with its status.
		body := fe.Envelope
		if len(body) == 0 {
			// Only a client that did not keep the bytes: render the fields.
			body = soap.MarshalFault(soap.Fault{Code: fe.Code, String: fe.String, Detail: fe.Detail})
		}
		return &result{status: fe.HTTPStatus, contentType: soap.ContentType, body: body, outcome: "lsp_fault"}
	}
	return nil
}

// whyNoMandate tells NoMandate, MandateExpired, MandateRevoked and
// ActorNotMandated apart by looking at the giver's mandates (only on the
// refusal path).
func (s *Server) whyNoMandate(ctx context.Context, q store.MandateQuery) error {
	list, err := s.deps.Store.ListTokens(ctx, store.ListFilter{Kind: store.KindMandate, URA: q.URA,
		GiverUZI: q.GiverUZI, IncludeRevoked: true, IncludeExpired: true})
	if err != nil {
		return fail(CodeStoreUnavailable, err, "the token store is unavailable")
	}
	var revoked, expired, other bool
	for _, t := range list {
		if t.Context != q.Context {
			continue
		}
		switch {
		case t.Revocation != nil:
			revoked = true
		case !q.At.Before(t.ValidUntil):
			expired = true
		case q.At.Before(t.NotBefore):
		default:
			other = true // valid, but not for this actor or application
		}
	}
	switch {
	case other:
		return fail(CodeActorNotMandated, nil, "%s is not mandated by caregiver %s for this application and context", q.Actor, q.GiverUZI)
	case revoked:
		return fail(CodeMandateRevoked, nil, "the mandate of caregiver %s for this context was revoked", q.GiverUZI)
	case expired:
		return fail(CodeMandateExpired, nil, "the mandate of caregiver %s for this context has expired", q.GiverUZI)
	}
	return fail(CodeNoMandate, nil, "caregiver %s has no mandate for application %s and context %s", q.GiverUZI, q.ApplicationID, q.Context)
}

// nameID is "<UZI>:<role>" (or the UZI number alone without a role).
func nameID(uzi, role string) string {
	if role == "" {
		return uzi
	}
	return uzi + ":" + role
}

// appURN is this application as a mandated system.
func (s *Server) appURN() string {
	return "urn:IIroot:2.16.840.1.113883.2.4.6.6:IIext:" + s.cfg.Tokens.ApplicationID
}
