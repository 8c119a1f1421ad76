package source_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/iam/source"
	"github.com/aortagw/aortagw/iam/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func TestParseCSV(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		persons int
		errPart string
	}{
		{"two contracts one person", "id,email,contractId,start,end,function\np1,a@z,c1,2020-01-01,,Arts\np1,a@z,c2,2021-01-01,2022-01-01,Arts\n", 1, ""},
		{"person without contract", "id,email\np1,a@z\n", 1, ""},
		{"unknown column", "id,salary\np1,1\n", 0, "unknown csv column"},
		{"no id column", "email\na@z\n", 0, "needs an id"},
		{"bad date", "id,start\np1,01-01-2020\n", 0, "contract start"},
		{"end before start", "id,start,end\np1,2020-01-02,2020-01-01\n", 0, "ends before"},
		{"bad trained", "id,trained\np1,maybe\n", 0, "trained"},
		{"duplicate column", "id,id\np1,p1\n", 0, "duplicate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ps, err := source.ParseCSV(strings.NewReader(tc.in))
			if tc.errPart != "" {
				require.ErrorIs(t, err, source.ErrParse)
				assert.Contains(t, err.Error(), tc.errPart)
				return
			}
			require.NoError(t, err)
			assert.Len(t, ps, tc.persons)
		})
	}
}

func TestParseJSONRejectsUnknownFields(t *testing.T) {
	_, err := source.ParseJSON(strings.NewReader(`[{"id":"p1","salary":1}]`))
	assert.ErrorIs(t, err, source.ErrParse)
	ps, err := source.ParseJSON(strings.NewReader(`[{"id":"p1","email":"a@z","contracts":[{"id":"c","start":"2020-01-01T00:00:00Z"}]}]`))
	require.NoError(t, err)
	require.Len(t, ps, 1)
}

func FuzzParseCSV(f *testing.F) {
	f.Add("id,email,contractId,start\np1,a@z,c1,2020-01-01\n")
	f.Add("id\n\"p\"\"1\"\n")
	f.Fuzz(func(t *testing.T, in string) {
		ps, err := source.ParseCSV(strings.NewReader(in))
		if err == nil {
			for _, p := range ps {
				if p.ID == "" {
					t.Fatal("person without id accepted")
				}
			}
		}
	})
}

func FuzzParseJSON(f *testing.F) {
	f.Add(`[{"id":"p1"}]`)
	f.Fuzz(func(t *testing.T, in string) {
		ps, err := source.ParseJSON(strings.NewReader(in))
		if err == nil {
			for _, p := range ps {
				if p.ID == "" {
					t.Fatal("person without id accepted")
				}
			}
		}
	})
}

func FuzzParseEvent(f *testing.F) {
	f.Add([]byte(`{"id":"e1","type":"leaver","personId":"p1","leaveDate":"2026-11-22"}`))
	f.Add([]byte(`{"id":"e2","type":"joiner","person":{"id":"p1","contracts":[{"id":"c","start":"2026-01-01T00:00:00Z"}]}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		ev, err := source.ParseEvent(in)
		if err == nil && ev.ID == "" {
			t.Fatal("event without id accepted")
		}
	})
}

func newEngine(t *testing.T) (*iam.Engine, *store.SQLite) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "iam.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	var n atomic.Int64
	eng, err := iam.New(iam.Config{Required: []iam.RequiredField{{Field: "email", Fallbacks: []string{"privateEmail"}}}}, st, nil,
		iam.Options{Now: func() time.Time { return t0 }, NewID: func() string { return fmt.Sprint(n.Add(1)) }})
	require.NoError(t, err)
	return eng, st
}

func TestWebhookAuthentication(t *testing.T) {
	eng, st := newEngine(t)
	secret := []byte("0123456789abcdef0123")
	h := &source.Webhook{Source: "hr", Secret: secret, Bearer: "bearer-token-123456", Sink: eng, Now: func() time.Time { return t0 }}
	require.NoError(t, h.Validate())
	joiner := []byte(`{"id":"e1","type":"joiner","person":{"id":"p1","email":"a@z.test","employeeNumber":"1","contracts":[{"id":"c","start":"2026-01-01T00:00:00Z"}]}}`)
	post := func(body []byte, hdr map[string]string) int {
		req := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	ts := fmt.Sprint(t0.Unix())
	tests := []struct {
		name string
		body []byte
		hdr  map[string]string
		want int
	}{
		{"no credentials", joiner, nil, http.StatusUnauthorized},
		{"wrong bearer", joiner, map[string]string{"Authorization": "Bearer nope"}, http.StatusUnauthorized},
		{"bad signature", joiner, map[string]string{"X-Aortagw-Timestamp": ts, "X-Aortagw-Signature": "sha256=00"}, http.StatusUnauthorized},
		{"stale timestamp", joiner, map[string]string{"X-Aortagw-Timestamp": fmt.Sprint(t0.Unix() - 3600), "X-Aortagw-Signature": source.Sign(secret, t0.Unix()-3600, joiner)}, http.StatusUnauthorized},
		{"signed", joiner, map[string]string{"X-Aortagw-Timestamp": ts, "X-Aortagw-Signature": source.Sign(secret, t0.Unix(), joiner)}, http.StatusAccepted},
		{"replayed event id", joiner, map[string]string{"Authorization": "Bearer bearer-token-123456"}, http.StatusOK},
		{"malformed event", []byte(`{"id":"e3","type":"promotion"}`), map[string]string{"Authorization": "Bearer bearer-token-123456"}, http.StatusBadRequest},
		{"leaver by id", []byte(`{"id":"e4","type":"leaver","personId":"p1","leaveDate":"2026-11-20"}`), map[string]string{"Authorization": "Bearer bearer-token-123456"}, http.StatusAccepted},
		{"joiner lacking e-mail is held back", []byte(`{"id":"e5","type":"joiner","person":{"id":"p2","contracts":[{"id":"c","start":"2026-01-01T00:00:00Z"}]}}`), map[string]string{"Authorization": "Bearer bearer-token-123456"}, http.StatusUnprocessableEntity},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, post(tc.body, tc.hdr))
		})
	}
	ps, err := st.SourcePersons(context.Background(), "hr")
	require.NoError(t, err)
	require.Len(t, ps, 1)
	assert.Equal(t, iam.StateLeaver, ps[0].StateAt(t0))
	assert.Error(t, (&source.Webhook{Source: "hr", Sink: eng, Now: time.Now}).Validate(), "no credentials must not validate")
}

type recorder struct {
	mu    sync.Mutex
	snaps [][]iam.Person
}

func (r *recorder) Import(_ context.Context, _ string, ps []iam.Person, _ string) (*iam.ImportResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.snaps = append(r.snaps, ps)
	return &iam.ImportResult{}, nil
}

func (r *recorder) last() []iam.Person {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.snaps) == 0 {
		return nil
	}
	return r.snaps[len(r.snaps)-1]
}

func TestWatchSeesAtomicRenameAndStopsOnCancel(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hr.json")
	require.NoError(t, os.WriteFile(path, []byte(`[{"id":"p1"}]`), 0o600))
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- (&source.FileSource{Name: "hr", Path: path, Debounce: 10 * time.Millisecond}).Watch(ctx, rec)
	}()
	require.Eventually(t, func() bool { return len(rec.last()) == 1 }, 5*time.Second, 10*time.Millisecond)
	// a broken file changes nothing
	require.NoError(t, os.WriteFile(path+".tmp", []byte(`[{"id":`), 0o600))
	require.NoError(t, os.Rename(path+".tmp", path))
	require.NoError(t, os.WriteFile(path+".tmp", []byte(`[{"id":"p1"},{"id":"p2"}]`), 0o600))
	require.NoError(t, os.Rename(path+".tmp", path))
	require.Eventually(t, func() bool { return len(rec.last()) == 2 }, 5*time.Second, 10*time.Millisecond)
	cancel()
	assert.NoError(t, <-done)
}

func TestStaffingSourceAgainstSimulator(t *testing.T) {
	now := func() time.Time { return t0 }
	sim := source.NewStaffingSimulator("aortagw", "client-secret", now)
	var shifts []source.StaffingShift
	for w := range 3 {
		for d := -3; d <= 3; d++ {
			st := t0.AddDate(0, 0, d).Add(-2 * time.Hour)
			if w == 2 && d >= -1 {
				continue // worker 2 has no current or future shift
			}
			shifts = append(shifts, source.StaffingShift{ShiftID: fmt.Sprintf("s%d%+d", w, d), WorkerID: fmt.Sprintf("w%d", w), EmployeeNumber: fmt.Sprint(9000 + w),
				GivenName: "Flex", FamilyName: fmt.Sprint(w), Email: fmt.Sprintf("w%d@flex.test", w), Start: st, End: st.Add(8 * time.Hour), Function: "Verpleegkundige", Department: "SEH"})
		}
	}
	sim.SetShifts(shifts)
	hs := httptest.NewServer(sim)
	defer hs.Close()
	src := &source.Staffing{Name: "elanza", BaseURL: hs.URL, TokenURL: hs.URL + "/oauth/token", ClientID: "aortagw", ClientSecret: "client-secret",
		PageSize: 4, Window: iam.ShiftWindow{HistoricalDays: 60, FutureDays: 14, DetailDays: 1}, HTTPClient: hs.Client(), Now: now}
	ps, err := src.Fetch(context.Background())
	require.NoError(t, err)
	require.Len(t, ps, 3)
	assert.Equal(t, 1, sim.Tokens, "one token for all pages")
	assert.Equal(t, 4, sim.Requests, "16 shifts in pages of 4")
	states := map[string]iam.State{}
	for _, p := range ps {
		states[p.ID] = p.StateAt(t0)
	}
	assert.Equal(t, map[string]iam.State{"w0": iam.StateActive, "w1": iam.StateActive, "w2": iam.StateLeaver}, states)

	bad := *src
	bad.ClientSecret = "wrong"
	_, err = bad.Fetch(context.Background())
	assert.Error(t, err)
}
