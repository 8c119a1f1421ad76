package directory

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Simulator is a strict stand-in for the national directory: 9-digit UZI
// numbers only, unknown JSON fields rejected, an ended role cannot be ended
// again, confirmation only of active roles.
type Simulator struct {
	Now   func() time.Time
	mu    sync.Mutex
	roles map[string]*Role
}

// NewSimulator creates an empty directory.
func NewSimulator(now func() time.Time) *Simulator {
	return &Simulator{Now: now, roles: map[string]*Role{}}
}

// Role returns a copy of a registration.
func (s *Simulator) Role(uzi string) (Role, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.roles[uzi]
	if !ok {
		return Role{}, false
	}
	return *r, true
}

// SetConfirmedAt backdates a confirmation (test helper for due lists).
func (s *Simulator) SetConfirmedAt(uzi string, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.roles[uzi]; ok {
		r.ConfirmedAt = t
	}
}

func validUZI(s string) bool {
	if len(s) != 9 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// ServeHTTP implements http.Handler.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if parts[0] != "roles" {
		http.Error(w, "no such endpoint", http.StatusNotFound)
		return
	}
	if len(parts) == 1 && r.Method == http.MethodGet {
		out := make([]Role, 0, len(s.roles))
		for _, ro := range s.roles {
			out = append(out, *ro)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].UZI < out[j].UZI })
		_ = json.NewEncoder(w).Encode(out)
		return
	}
	if len(parts) < 2 || !validUZI(parts[1]) {
		http.Error(w, "uzi must be 9 digits", http.StatusBadRequest)
		return
	}
	uzi := parts[1]
	cur := s.roles[uzi]
	switch {
	case len(parts) == 2 && r.Method == http.MethodGet:
		if cur == nil {
			http.Error(w, "not registered", http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(cur)
	case len(parts) == 2 && r.Method == http.MethodPut:
		var ro Role
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ro); err != nil || ro.UZI != uzi || ro.Organisation == "" || !ro.Active {
			http.Error(w, "invalid role", http.StatusBadRequest)
			return
		}
		ro.ConfirmedAt, ro.EndedAt = s.Now(), time.Time{}
		s.roles[uzi] = &ro
		w.WriteHeader(http.StatusNoContent)
	case len(parts) == 3 && parts[2] == "end" && r.Method == http.MethodPost:
		var body struct {
			Reason string `json:"reason"`
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil || body.Reason == "" {
			http.Error(w, "reason required", http.StatusBadRequest)
			return
		}
		if cur == nil || !cur.Active {
			http.Error(w, "no active role", http.StatusConflict)
			return
		}
		cur.Active, cur.EndedAt = false, s.Now()
		w.WriteHeader(http.StatusNoContent)
	case len(parts) == 3 && parts[2] == "confirm" && r.Method == http.MethodPost:
		if cur == nil {
			http.Error(w, "not registered", http.StatusNotFound)
			return
		}
		if !cur.Active {
			http.Error(w, "role ended", http.StatusConflict)
			return
		}
		cur.ConfirmedAt = s.Now()
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "method", http.StatusMethodNotAllowed)
	}
}
