package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/gateway/store"
	"github.com/aortagw/aortagw/internal/hl7"
)

func (e *env) trigger(kind string) TriggerRequest {
	return TriggerRequest{Kind: kind, Interaction: hl7.QURXQuery, BSN: e.bsn,
		Author: Person{UZI: e.actor.UZI, Role: e.actor.Role}, Overseer: Person{UZI: e.giver.UZI, Role: e.giver.Role}}
}

// waitJob polls the job until it leaves the queued/claimed/sending states.
func (e *env) waitJob(id string) TriggerView {
	e.t.Helper()
	var v TriggerView
	require.Eventually(e.t, func() bool {
		st, b := e.xisJSON(http.MethodGet, "/v1/triggers/"+id, nil)
		if st != http.StatusOK || json.Unmarshal(b, &v) != nil {
			return false
		}
		return v.State == string(store.JobDone) || v.State == string(store.JobDead) || v.State == string(store.JobUnknown)
	}, 20*time.Second, 20*time.Millisecond)
	return v
}

// newServer builds another gateway over the same store, simulator and keys
// (a restart).
func (e *env) newServer() *Server {
	e.t.Helper()
	s, err := New(e.cfg, e.deps, e.opts)
	require.NoError(e.t, err)
	return s
}

func (e *env) restart(s *Server) {
	e.t.Helper()
	require.NoError(e.t, s.Start(context.Background()))
	e.t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	e.srv = s
	e.xisURL = "http://" + s.XISAddr()
	e.adminURL = "http://" + s.AdminAddr()
}

func TestTriggerCallbackAndFetch(t *testing.T) {
	got := make(chan []byte, 4)
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- b
	}))
	defer cb.Close()
	e := newEnv(t, func(c *Config) { c.Triggers.CallbackPrefixes = []string{cb.URL + "/results"} })
	e.register()

	req := e.trigger(TriggerDossierOpened)
	req.Callback = cb.URL + "/results"
	req.Key = "dossier-42"
	st, b := e.xisJSON(http.MethodPost, "/v1/triggers", req)
	require.Equal(t, http.StatusAccepted, st, string(b))
	var created TriggerView
	require.NoError(t, json.Unmarshal(b, &created))
	assert.True(t, created.Created)

	// The same idempotency key again: the same job, not a second query.
	st, b = e.xisJSON(http.MethodPost, "/v1/triggers", req)
	require.Equal(t, http.StatusOK, st, string(b))
	var again TriggerView
	require.NoError(t, json.Unmarshal(b, &again))
	assert.Equal(t, created.ID, again.ID)

	v := e.waitJob(created.ID)
	require.Equal(t, string(store.JobDone), v.State, v.LastError)
	require.NotNil(t, v.Result)
	assert.Equal(t, http.StatusOK, v.Result.Status)
	assert.Contains(t, v.Result.Body, hl7.QURXResponse)

	select {
	case b := <-got:
		var res struct {
			ID string `json:"id"`
			TriggerResult
		}
		require.NoError(t, json.Unmarshal(b, &res))
		assert.Equal(t, created.ID, res.ID)
		assert.Equal(t, http.StatusOK, res.Status)
	case <-time.After(10 * time.Second):
		t.Fatal("no callback")
	}
	acc := e.sim.Accepted()
	require.Len(t, acc, 1, "one query, despite two POSTs")
	assert.Equal(t, v.MessageID, acc[0].MessageID[len(acc[0].MessageID)-len(v.MessageID):], "the attempt id is the HL7 message id extension")
	msgs := e.auditOf("message")
	require.Len(t, msgs, 1)
	assert.Equal(t, created.ID, msgs[0].TriggerID)
	assert.Len(t, e.auditOf("trigger.created"), 1)
}

func TestTriggerRefused(t *testing.T) {
	e := newEnv(t)
	bad := []struct {
		name string
		mut  func(r *TriggerRequest)
	}{
		{name: "unknown kind", mut: func(r *TriggerRequest) { r.Kind = "whenever" }},
		{name: "appointment without time", mut: func(r *TriggerRequest) { r.Kind = TriggerAppointment }},
		{name: "bad schedule", mut: func(r *TriggerRequest) { r.Kind = TriggerSchedule; r.Schedule = "* * *" }},
		{name: "bad bsn", mut: func(r *TriggerRequest) { r.BSN = "123" }},
		{name: "interaction without template", mut: func(r *TriggerRequest) { r.Interaction = "QURX_IN990111NL" }},
		{name: "callback outside the allowed prefixes", mut: func(r *TriggerRequest) { r.Callback = "http://169.254.169.254/latest" }},
		{name: "lead too long", mut: func(r *TriggerRequest) { r.Kind = TriggerAppointment; r.At = time.Now(); r.Lead = "9999h" }},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			r := e.trigger(TriggerUserAction)
			tt.mut(&r)
			st, b := e.xisJSON(http.MethodPost, "/v1/triggers", r)
			assert.Equal(t, http.StatusBadRequest, st, string(b))
		})
	}
	st, _ := e.xisJSON(http.MethodGet, "/v1/triggers/nope", nil)
	assert.Equal(t, http.StatusNotFound, st)
	d, err := e.st.QueueDepth(context.Background())
	require.NoError(t, err)
	assert.Zero(t, d[store.JobQueued], "nothing was queued")
}

func TestTriggerSurvivesRestart(t *testing.T) {
	e := newEnv(t)
	e.register()
	ctx := context.Background()
	require.NoError(t, e.srv.Shutdown(ctx)) // the gateway is down

	// Accepted by a gateway whose workers never ran (it crashed right after).
	accepted := e.newServer()
	v, err := accepted.CreateTrigger(ctx, e.trigger(TriggerNewInformation))
	require.NoError(t, err)
	sch := e.trigger(TriggerSchedule)
	sch.Schedule = "0 3 1 1 *" // far in the future: stays queued
	sv, err := accepted.CreateTrigger(ctx, sch)
	require.NoError(t, err)
	assert.Equal(t, int64(0), e.simHits.Load())

	// Restart: the queued job runs once.
	e.restart(e.newServer())
	done := e.waitJob(v.ID)
	require.Equal(t, string(store.JobDone), done.State, done.LastError)
	assert.Len(t, e.sim.Accepted(), 1)

	// Another restart: nothing is sent again.
	require.NoError(t, e.srv.Shutdown(ctx))
	e.restart(e.newServer())
	time.Sleep(200 * time.Millisecond) // several poll intervals
	assert.Len(t, e.sim.Accepted(), 1, "a done job is never sent twice")
	j, err := e.st.Job(ctx, sv.ID)
	require.NoError(t, err)
	assert.Equal(t, store.JobQueued, j.State, "the schedule waits for its time")
}

func TestTriggerCrashWhileSendingIsNotResent(t *testing.T) {
	e := newEnv(t)
	e.register()
	ctx := context.Background()
	require.NoError(t, e.srv.Shutdown(ctx))
	s := e.newServer()
	v, err := s.CreateTrigger(ctx, e.trigger(TriggerUserAction))
	require.NoError(t, err)
	// A worker claimed it and committed "sending", then the process died.
	j, err := e.st.Claim(ctx, "crashed-worker", 300*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, v.ID, j.ID)
	_, err = e.st.BeginSend(ctx, j.ID, j.ClaimToken)
	require.NoError(t, err)
	time.Sleep(350 * time.Millisecond) // the lease runs out

	e.restart(e.newServer())
	got := e.waitJob(v.ID)
	assert.Equal(t, string(store.JobUnknown), got.State, "may have been sent: parked for an operator, never resent")
	assert.Equal(t, int64(0), e.simHits.Load())
}

func TestTriggerAppointmentLeadTime(t *testing.T) {
	e := newEnv(t)
	e.register()
	r := e.trigger(TriggerAppointment)
	r.At = time.Now().Add(48 * time.Hour)
	r.Lead = "24h"
	v, err := e.srv.CreateTrigger(context.Background(), r)
	require.NoError(t, err)
	assert.WithinDuration(t, r.At.Add(-24*time.Hour), v.RunAt, time.Second)
	r2 := e.trigger(TriggerAppointment)
	r2.At = time.Now().Add(time.Hour)
	r2.Lead = "24h" // lead time already passed: run now
	v2, err := e.srv.CreateTrigger(context.Background(), r2)
	require.NoError(t, err)
	assert.Equal(t, string(store.JobDone), e.waitJob(v2.ID).State)
	j, err := e.st.Job(context.Background(), v.ID)
	require.NoError(t, err)
	assert.Equal(t, store.JobQueued, j.State)
}

func FuzzTriggerRequest(f *testing.F) {
	f.Add([]byte(`{"kind":"appointment","interaction":"QURX_IN990011NL","bsn":"999911466","author":{"uzi":"977445532","role":"00.000"},"at":"2026-11-24T09:00:00Z","lead":"24h"}`))
	f.Add([]byte(`{"kind":"schedule","schedule":"*/5 * * * *","interaction":"GQZG_IN000001NL","bsn":"999911466","ura":"98004271","author":{"uzi":"977445532"}}`))
	f.Add([]byte(`{"kind":"user_action","callback":"http://127.0.0.1/x","interaction":"x"}`))
	cfg := DefaultConfig()
	cfg.Tokens.ApplicationID, cfg.Tokens.URA = "1234", "98004271"
	cfg.Triggers.CallbackPrefixes = []string{"http://127.0.0.1/x"}
	loc, _ := time.LoadLocation(cfg.Triggers.TimeZone)
	s := &Server{cfg: cfg, now: time.Now, loc: loc}
	f.Fuzz(func(t *testing.T, b []byte) {
		var req TriggerRequest
		if json.Unmarshal(b, &req) != nil {
			return
		}
		if err := s.validateTrigger(&req); err != nil {
			return
		}
		// Whatever passed validation has a first run time and a buildable query.
		if _, err := s.firstRun(req, time.Now()); err != nil && req.Kind != TriggerSchedule {
			t.Fatalf("validated trigger without a first run: %v", err)
		}
		if req.Callback != "" && !strings.HasPrefix(req.Callback, "http://127.0.0.1/x") {
			t.Fatalf("callback %q passed outside the allowed prefix", req.Callback)
		}
	})
}
