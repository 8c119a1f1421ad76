package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aortagw/aortagw/gateway/store"
	"github.com/aortagw/aortagw/internal/hl7"
	"github.com/aortagw/aortagw/lsp"
)

// Trigger kinds accepted by POST /v1/triggers.
const (
	TriggerAppointment    = "appointment"     // at At, or Lead before it
	TriggerDossierOpened  = "dossier_opened"  // now
	TriggerNewInformation = "new_information" // now
	TriggerSchedule       = "schedule"        // every time Schedule matches
	TriggerUserAction     = "user_action"     // now
)

// Person names a caregiver or system actor by UZI number and role code.
type Person struct {
	UZI  string `json:"uzi"`
	Role string `json:"role,omitempty"`
}

// TriggerRequest is the body of POST /v1/triggers.
type TriggerRequest struct {
	Kind        string    `json:"kind"`
	Interaction string    `json:"interaction"`
	BSN         string    `json:"bsn"`
	URA         string    `json:"ura,omitempty"`      // default tokens.ura
	Author      Person    `json:"author"`             // the acting person (default triggers.author)
	Overseer    Person    `json:"overseer,omitzero"`  // the responsible caregiver (mandate giver)
	At          time.Time `json:"at,omitzero"`        // appointment time
	Lead        string    `json:"lead,omitempty"`     // run this long before At ("24h")
	Schedule    string    `json:"schedule,omitempty"` // 5-field cron, in triggers.time_zone
	Callback    string    `json:"callback,omitempty"` // where the result is POSTed
	Key         string    `json:"idempotency_key,omitempty"`
}

// jobPayload is what the durable queue stores per occurrence.
type jobPayload struct {
	TriggerID  string         `json:"trigger_id"`
	Occurrence time.Time      `json:"occurrence"`
	Request    TriggerRequest `json:"request"`
}

// TriggerResult is the stored outcome of one query, as fetched or POSTed.
type TriggerResult struct {
	Status      int    `json:"status"`
	ContentType string `json:"content_type,omitempty"`
	Body        string `json:"body"`
	Fault       string `json:"fault,omitempty"` // the aortagw fault code when the gateway refused
}

// TriggerView is the answer of POST and GET /v1/triggers.
type TriggerView struct {
	ID        string         `json:"id"`
	TriggerID string         `json:"trigger_id"`
	Kind      string         `json:"kind"`
	State     string         `json:"state"`
	RunAt     time.Time      `json:"run_at"`
	Attempts  int            `json:"attempts"`
	MessageID string         `json:"message_id,omitempty"`
	LastError string         `json:"last_error,omitempty"`
	Result    *TriggerResult `json:"result,omitempty"`
	Created   bool           `json:"created"`
}

func (s *Server) validateTrigger(req *TriggerRequest) error {
	switch req.Kind {
	case TriggerAppointment:
		if req.At.IsZero() {
			return errors.New("an appointment trigger needs at")
		}
	case TriggerSchedule:
		if _, err := ParseSchedule(req.Schedule); err != nil {
			return err
		}
	case TriggerDossierOpened, TriggerNewInformation, TriggerUserAction:
	default:
		return fmt.Errorf("kind must be one of appointment, dossier_opened, new_information, schedule, user_action (got %q)", req.Kind)
	}
	if req.Kind != TriggerSchedule && req.Schedule != "" {
		return errors.New("schedule is only allowed with kind schedule")
	}
	if req.Lead != "" {
		d, err := time.ParseDuration(req.Lead)
		if err != nil || d < 0 || d > 90*24*time.Hour {
			return fmt.Errorf("lead must be a duration in [0, 2160h] (got %q)", req.Lead)
		}
	}
	ic, ok := s.cfg.Interactions[req.Interaction]
	if !ok {
		return fmt.Errorf("interaction %q is not configured", req.Interaction)
	}
	if !ic.Query {
		return fmt.Errorf("interaction %q is not enabled for trigger queries", req.Interaction)
	}
	if !digits(req.BSN, 9) {
		return errors.New("bsn must be 9 digits")
	}
	if req.URA == "" {
		req.URA = s.cfg.Tokens.URA
	}
	if !digits(req.URA, 8) {
		return errors.New("ura must be 8 digits (or configure tokens.ura)")
	}
	if req.Author.UZI == "" {
		req.Author.UZI = s.cfg.Triggers.Author
	}
	if !digits(req.Author.UZI, 9) {
		return errors.New("author.uzi must be 9 digits (or configure triggers.author)")
	}
	if req.Overseer.UZI != "" && !digits(req.Overseer.UZI, 9) {
		return errors.New("overseer.uzi must be 9 digits")
	}
	if req.Callback != "" && !s.callbackAllowed(req.Callback) {
		return fmt.Errorf("callback %q is not under a configured triggers.callback_prefixes entry", req.Callback)
	}
	if len(req.Key) > 200 {
		return errors.New("idempotency_key is longer than 200 characters")
	}
	// Build once with placeholder ids so a broken template fails now, not in the queue.
	if _, err := s.buildQuery(req, ic, "0", s.now()); err != nil {
		return fmt.Errorf("query template: %v", err)
	}
	return nil
}

func (s *Server) callbackAllowed(u string) bool {
	for _, p := range s.cfg.Triggers.CallbackPrefixes {
		if strings.HasPrefix(u, p) && (strings.HasSuffix(p, "/") || len(u) == len(p) || u[len(p)] == '/' || u[len(p)] == '?') {
			return true
		}
	}
	return false
}

// firstRun is when the first (or only) occurrence is due.
func (s *Server) firstRun(req TriggerRequest, now time.Time) (time.Time, error) {
	switch req.Kind {
	case TriggerAppointment:
		lead, _ := time.ParseDuration(req.Lead)
		t := req.At.Add(-lead)
		if t.Before(now) {
			t = now
		}
		return t, nil
	case TriggerSchedule:
		sch, _ := ParseSchedule(req.Schedule)
		t := sch.Next(now.In(s.loc))
		if t.IsZero() {
			return t, fmt.Errorf("schedule %q never matches", req.Schedule)
		}
		return t, nil
	}
	return now, nil
}

// CreateTrigger validates and enqueues a trigger; a repeated request with
// the same idempotency key returns the existing job.
func (s *Server) CreateTrigger(ctx context.Context, req TriggerRequest) (*TriggerView, error) {
	if err := s.validateTrigger(&req); err != nil {
		return nil, fail(CodeBadRequest, err, "%v", err)
	}
	now := s.now()
	runAt, err := s.firstRun(req, now)
	if err != nil {
		return nil, fail(CodeBadRequest, err, "%v", err)
	}
	tid := req.Key
	if tid == "" {
		tid = s.newID()
	}
	job, created, err := s.enqueue(ctx, tid, req, runAt)
	if err != nil {
		return nil, fail(CodeStoreUnavailable, err, "the trigger queue is unavailable")
	}
	if created {
		det, _ := json.Marshal(map[string]string{"kind": req.Kind, "run_at": runAt.UTC().Format(time.RFC3339)})
		if _, err := s.deps.Store.Append(ctx, store.AuditRecord{Kind: "trigger.created", TriggerID: job.ID,
			BSN: req.BSN, Interaction: req.Interaction, Actor: nameID(req.Author.UZI, req.Author.Role),
			Giver: nameID(req.Overseer.UZI, req.Overseer.Role), Outcome: "queued", Details: det}); err != nil {
			s.log.Error("audit trigger", "err", err)
		}
	}
	v := s.viewJob(job)
	v.Created = created
	return v, nil
}

func (s *Server) enqueue(ctx context.Context, triggerID string, req TriggerRequest, runAt time.Time) (*store.Job, bool, error) {
	p, err := json.Marshal(jobPayload{TriggerID: triggerID, Occurrence: runAt.UTC(), Request: req})
	if err != nil {
		return nil, false, err
	}
	job, created, err := s.deps.Store.Enqueue(ctx, store.JobSpec{
		IdempotencyKey: "trigger:" + triggerID + ":" + runAt.UTC().Format(time.RFC3339),
		Kind:           "trigger." + req.Kind,
		Payload:        p,
		RunAt:          runAt,
		MaxAttempts:    s.cfg.Triggers.MaxAttempts,
	})
	if err == nil && created {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return job, created, err
}

func (s *Server) viewJob(j *store.Job) *TriggerView {
	v := &TriggerView{ID: j.ID, Kind: strings.TrimPrefix(j.Kind, "trigger."), State: string(j.State),
		RunAt: j.RunAt, Attempts: j.Attempts, MessageID: j.AttemptID, LastError: j.LastError}
	var p jobPayload
	if json.Unmarshal(j.Payload, &p) == nil {
		v.TriggerID = p.TriggerID
	}
	if len(j.Result) > 0 {
		var r TriggerResult
		if json.Unmarshal(j.Result, &r) == nil {
			v.Result = &r
		}
	}
	return v
}

func (s *Server) handleCreateTrigger(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	var req TriggerRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid trigger json: " + err.Error()})
		return
	}
	if k := r.Header.Get("Idempotency-Key"); k != "" && req.Key == "" {
		req.Key = k
	}
	v, err := s.CreateTrigger(r.Context(), req)
	if err != nil {
		e := AsError(err)
		status := http.StatusBadRequest
		if e.Code != CodeBadRequest {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, map[string]string{"error": e.Public, "code": string(e.Code)})
		return
	}
	status := http.StatusAccepted
	if !v.Created {
		status = http.StatusOK
	}
	writeJSON(w, status, v)
}

func (s *Server) handleGetTrigger(w http.ResponseWriter, r *http.Request) {
	j, err := s.deps.Store.Job(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such trigger job"})
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the trigger queue is unavailable"})
	default:
		writeJSON(w, http.StatusOK, s.viewJob(j))
	}
}

// startWorkers starts the trigger workers; they stop when ctx is cancelled.
func (s *Server) startWorkers(ctx context.Context) {
	for i := 0; i < s.cfg.Triggers.Workers; i++ {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.worker(ctx, fmt.Sprintf("%s/%d", s.workerID, i), i == 0)
		}()
	}
}

func (s *Server) lease() time.Duration {
	return s.cfg.XIS.RequestTimeout + s.cfg.LSP.Timeout + 30*time.Second
}

func (s *Server) worker(ctx context.Context, name string, recoverer bool) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
		for ctx.Err() == nil {
			job, err := s.deps.Store.Claim(ctx, name, s.lease())
			if errors.Is(err, store.ErrNoJob) {
				break
			}
			if err != nil {
				if ctx.Err() == nil {
					s.log.Error("trigger claim", "err", err, "worker", name)
				}
				break
			}
			s.runJob(ctx, job)
		}
		if recoverer && ctx.Err() == nil {
			// Expired leases (claimed -> queued, sending -> unknown, never
			// resent) are handled by every Claim, also an idle one.
			s.updateDepth(ctx)
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(s.cfg.Triggers.PollInterval)
	}
}

func (s *Server) updateDepth(ctx context.Context) {
	d, err := s.deps.Store.QueueDepth(ctx)
	if err != nil {
		return
	}
	s.m.queueDepth.Set(float64(d[store.JobQueued] + d[store.JobClaimed] + d[store.JobSending]))
}

// permanent reports codes that a retry will not fix by itself soon.
func permanent(c Code) bool {
	switch c {
	case CodeHSMUnavailable, CodeStoreUnavailable, CodeInternal:
		return false
	}
	return true
}

// runJob sends one trigger query at most once: BeginSend commits "sending"
// before the gateway touches the network, so a crash leaves the job
// "unknown" for an operator, never queued for a second send.
func (s *Server) runJob(ctx context.Context, job *store.Job) {
	log := s.log.With("job", job.ID, "kind", job.Kind)
	var p jobPayload
	if err := json.Unmarshal(job.Payload, &p); err != nil {
		_, _ = s.deps.Store.Fail(ctx, job.ID, job.ClaimToken, "payload unreadable: "+err.Error(), store.DispDead)
		return
	}
	req := p.Request
	// A schedule enqueues its next occurrence first, so a crash cannot end it.
	if req.Kind == TriggerSchedule {
		if sch, err := ParseSchedule(req.Schedule); err == nil {
			if next := sch.Next(p.Occurrence.In(s.loc)); !next.IsZero() {
				if _, _, err := s.enqueue(ctx, p.TriggerID, req, next); err != nil {
					log.Error("enqueue next occurrence", "err", err)
				}
			}
		}
	}
	ic, ok := s.cfg.Interactions[req.Interaction]
	if !ok {
		_, _ = s.deps.Store.Fail(ctx, job.ID, job.ClaimToken, "interaction no longer configured", store.DispDead)
		return
	}
	att, err := s.deps.Store.BeginSend(ctx, job.ID, job.ClaimToken)
	if err != nil {
		log.Warn("trigger begin send", "err", err)
		return
	}
	body, err := s.buildQuery(&req, ic, att.ID, s.now())
	if err != nil {
		_, _ = s.deps.Store.Fail(ctx, job.ID, job.ClaimToken, "query template: "+err.Error(), store.DispDead)
		return
	}
	actor := ""
	if req.Overseer.UZI == "" || req.Overseer.UZI == req.Author.UZI {
		actor = s.appURN()
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.XIS.RequestTimeout)
	res, err := s.process(rctx, envelope(body), source{trigger: job.ID, peer: "trigger", actor: actor})
	cancel()
	if err != nil {
		e := AsError(err)
		disp := store.DispRetry // the gateway refused: provably nothing was sent
		if e.Code == CodeLSPUnavailable && !errors.Is(e.Err, lsp.ErrRetryable) && !errors.Is(e.Err, lsp.ErrTLS) {
			disp = store.DispUnknown // may have reached the LSP
		} else if e.Code != CodeLSPUnavailable && permanent(e.Code) {
			disp = store.DispDead
		}
		j, ferr := s.deps.Store.Fail(ctx, job.ID, job.ClaimToken, string(e.Code)+": "+e.Public, disp)
		if ferr != nil {
			log.Error("trigger fail", "err", ferr)
		}
		outcome := map[store.Disposition]string{store.DispRetry: "retried", store.DispDead: "failed", store.DispUnknown: "unknown"}[disp]
		s.m.triggers.WithLabelValues(outcome).Inc()
		if j != nil && (j.State == store.JobDead || j.State == store.JobUnknown) {
			fr := TriggerResult{Fault: string(e.Code), Body: e.Public}
			s.callback(ctx, req, job.ID, fr)
		}
		return
	}
	tr := TriggerResult{Status: res.status, ContentType: res.contentType, Body: string(res.body)}
	b, _ := json.Marshal(tr)
	if err := s.deps.Store.Complete(ctx, job.ID, job.ClaimToken, b); err != nil {
		log.Error("trigger complete", "err", err)
	}
	s.m.triggers.WithLabelValues("done").Inc()
	s.callback(ctx, req, job.ID, tr)
}

// envelope wraps an HL7v3 body in a SOAP 1.1 envelope without header.
func envelope(body []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(body) + 128)
	b.WriteString(`<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>`)
	b.Write(body)
	b.WriteString(`</soap:Body></soap:Envelope>`)
	return b.Bytes()
}

func (s *Server) messageIDRoot() string {
	if s.cfg.Triggers.MessageIDRoot != "" {
		return s.cfg.Triggers.MessageIDRoot
	}
	return "2.16.840.1.113883.2.4.6.6." + s.cfg.Tokens.ApplicationID + ".1"
}

func (s *Server) buildQuery(req *TriggerRequest, ic InteractionConfig, msgID string, now time.Time) ([]byte, error) {
	p := hl7.QueryParams{
		Interaction: req.Interaction,
		MessageID:   hl7.ID{Root: s.messageIDRoot(), Ext: msgID},
		Created:     now,
		SenderApp:   s.cfg.Tokens.ApplicationID,
		Author:      hl7.Person{UZI: req.Author.UZI, Role: req.Author.Role, URA: req.URA},
		BSN:         req.BSN,
		ContextCode: ic.ContextCode,
	}
	if req.Overseer.UZI != "" {
		p.Overseer = &hl7.Person{UZI: req.Overseer.UZI, Role: req.Overseer.Role, URA: req.URA}
	}
	return hl7.BuildQuery(p)
}

// callback POSTs the result to the XIS, retrying a few times with backoff.
// The result stays fetchable with GET /v1/triggers/{id} either way.
func (s *Server) callback(ctx context.Context, req TriggerRequest, jobID string, r TriggerResult) {
	if req.Callback == "" {
		return
	}
	b, _ := json.Marshal(struct {
		ID string `json:"id"`
		TriggerResult
	}{jobID, r})
	delay := 500 * time.Millisecond
	for attempt := 1; attempt <= 4; attempt++ {
		hr, err := http.NewRequestWithContext(ctx, http.MethodPost, req.Callback, bytes.NewReader(b))
		if err != nil {
			s.log.Error("trigger callback", "err", err, "job", jobID)
			return
		}
		hr.Header.Set("Content-Type", "application/json")
		hr.Header.Set("Idempotency-Key", jobID)
		resp, err := s.deps.Callback.Do(hr)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close()
			if resp.StatusCode < 300 {
				return
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		s.log.Warn("trigger callback failed", "err", err, "job", jobID, "attempt", attempt)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay *= 2
	}
}
