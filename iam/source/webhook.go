package source

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aortagw/aortagw/iam"
)

// ErrAuth is returned for a webhook request that fails authentication.
var ErrAuth = errors.New("iam/source: webhook authentication failed")

// EventSink is the part of the engine the webhook feeds.
type EventSink interface {
	UpsertPerson(ctx context.Context, source string, p iam.Person, actor string) (*iam.ImportResult, error)
	EndContracts(ctx context.Context, source, id string, at time.Time, actor string) (*iam.ImportResult, error)
}

// Event is one HR event.
type Event struct {
	ID         string      `json:"id"`
	Type       string      `json:"type"` // joiner | mover | leaver
	OccurredAt time.Time   `json:"occurredAt"`
	Person     *iam.Person `json:"person,omitempty"`
	PersonID   string      `json:"personId,omitempty"`  // leaver without a full record
	LeaveDate  string      `json:"leaveDate,omitempty"` // YYYY-MM-DD, leaver; default: now
}

// ParseEvent decodes and checks one event (unknown fields rejected).
func ParseEvent(b []byte) (*Event, error) {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var ev Event
	if err := dec.Decode(&ev); err != nil {
		return nil, fmt.Errorf("%w: event: %v", ErrParse, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: event: trailing data", ErrParse)
	}
	if ev.ID == "" {
		return nil, fmt.Errorf("%w: event without id", ErrParse)
	}
	switch ev.Type {
	case "joiner", "mover":
		if ev.Person == nil || ev.Person.ID == "" {
			return nil, fmt.Errorf("%w: %s event needs a person (event=%s)", ErrParse, ev.Type, ev.ID)
		}
	case "leaver":
		if ev.Person == nil && ev.PersonID == "" {
			return nil, fmt.Errorf("%w: leaver event needs person or personId (event=%s)", ErrParse, ev.ID)
		}
		if ev.LeaveDate != "" {
			if _, err := time.Parse(time.DateOnly, ev.LeaveDate); err != nil {
				return nil, fmt.Errorf("%w: leaveDate (event=%s value=%q)", ErrParse, ev.ID, ev.LeaveDate)
			}
		}
	default:
		return nil, fmt.Errorf("%w: event type must be joiner, mover or leaver (event=%s type=%q)", ErrParse, ev.ID, ev.Type)
	}
	if ev.Person != nil {
		for _, c := range ev.Person.Contracts {
			if c.Start.IsZero() || (!c.End.IsZero() && c.End.Before(c.Start)) {
				return nil, fmt.Errorf("%w: contract dates (event=%s contract=%s)", ErrParse, ev.ID, c.ID)
			}
		}
	}
	return &ev, nil
}

// Webhook receives HR events over HTTP. Requests are authenticated with an
// HMAC-SHA256 signature over "<timestamp>.<body>" (headers
// X-Aortagw-Timestamp, unix seconds, and X-Aortagw-Signature:
// sha256=<hex>), or with a bearer token; at least one must be configured.
// Signed requests older or newer than MaxSkew are refused; an event ID seen
// before is acknowledged without being applied again.
type Webhook struct {
	Source  string
	Secret  []byte
	Bearer  string
	Sink    EventSink
	Now     func() time.Time
	MaxSkew time.Duration // default 5 minutes
	Logger  *slog.Logger

	mu   sync.Mutex
	seen map[string]time.Time
}

// Validate checks the webhook is usable and fails closed without credentials.
func (h *Webhook) Validate() error {
	if h.Source == "" || h.Sink == nil || h.Now == nil {
		return fmt.Errorf("%w: webhook needs source, sink and clock", iam.ErrInvalid)
	}
	if len(h.Secret) < 16 && h.Bearer == "" {
		return fmt.Errorf("%w: webhook needs an HMAC secret (>= 16 bytes) or a bearer token", iam.ErrInvalid)
	}
	if h.Bearer != "" && len(h.Bearer) < 16 {
		return fmt.Errorf("%w: webhook bearer token too short", iam.ErrInvalid)
	}
	return nil
}

// Sign computes the signature header value for a body (for senders and tests).
func Sign(secret []byte, ts int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "%d.", ts)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func (h *Webhook) authenticate(r *http.Request, body []byte) error {
	if len(h.Secret) > 0 {
		if sig := r.Header.Get("X-Aortagw-Signature"); sig != "" {
			ts, err := strconv.ParseInt(r.Header.Get("X-Aortagw-Timestamp"), 10, 64)
			if err != nil {
				return fmt.Errorf("%w: timestamp", ErrAuth)
			}
			skew := h.MaxSkew
			if skew <= 0 {
				skew = 5 * time.Minute
			}
			if d := h.Now().Sub(time.Unix(ts, 0)); d > skew || d < -skew {
				return fmt.Errorf("%w: timestamp outside window", ErrAuth)
			}
			if !hmac.Equal([]byte(sig), []byte(Sign(h.Secret, ts, body))) {
				return fmt.Errorf("%w: signature", ErrAuth)
			}
			return nil
		}
	}
	if h.Bearer != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if ok && subtle.ConstantTimeCompare([]byte(got), []byte(h.Bearer)) == 1 {
			return nil
		}
	}
	return ErrAuth
}

// ServeHTTP implements http.Handler.
func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	if err := h.authenticate(r, body); err != nil {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	ev, err := ParseEvent(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	now := h.Now()
	h.mu.Lock()
	if h.seen == nil {
		h.seen = map[string]time.Time{}
	}
	for id, at := range h.seen { // forget after a day
		if now.Sub(at) > 24*time.Hour {
			delete(h.seen, id)
		}
	}
	_, dup := h.seen[ev.ID]
	h.mu.Unlock()
	if dup {
		writeJSON(w, http.StatusOK, map[string]any{"event": ev.ID, "duplicate": true})
		return
	}
	actor := "webhook:" + h.Source + ":" + ev.ID
	var res *iam.ImportResult
	switch {
	case ev.Type == "leaver" && ev.Person == nil:
		at := now
		if ev.LeaveDate != "" {
			d, _ := time.Parse(time.DateOnly, ev.LeaveDate)
			at = d.Add(24*time.Hour - time.Nanosecond)
		}
		res, err = h.Sink.EndContracts(r.Context(), h.Source, ev.PersonID, at, actor)
	default:
		endOfDay(ev.Person.Contracts)
		res, err = h.Sink.UpsertPerson(r.Context(), h.Source, *ev.Person, actor)
	}
	if err != nil {
		status := http.StatusInternalServerError
		switch {
		case errors.Is(err, iam.ErrNotFound):
			status = http.StatusNotFound
		case errors.Is(err, iam.ErrInvalid):
			status = http.StatusBadRequest
		}
		if h.Logger != nil {
			h.Logger.Error("iam: webhook event failed", "event", ev.ID, "err", err)
		}
		http.Error(w, "event not applied", status)
		return
	}
	h.mu.Lock()
	h.seen[ev.ID] = now
	h.mu.Unlock()
	status := http.StatusAccepted
	if len(res.Blocked) > 0 {
		status = http.StatusUnprocessableEntity // the person lacks required fields
	}
	writeJSON(w, status, res)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
