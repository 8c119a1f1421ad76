package source

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// StaffingSimulator is a strict stand-in for the staffing platform: an
// OAuth2 token endpoint (POST /oauth/token, client credentials in the Basic
// header only, grant_type=client_credentials, tokens expire) and GET
// /shifts that demands a valid bearer token, from/to dates, page >= 1 and
// 1 <= pageSize <= 100, and rejects any other parameter.
type StaffingSimulator struct {
	ClientID, ClientSecret string
	TokenTTL               time.Duration
	Now                    func() time.Time

	mu       sync.Mutex
	tokens   map[string]time.Time
	shifts   []StaffingShift
	Requests int // /shifts requests served
	Tokens   int // tokens issued
}

// NewStaffingSimulator creates a simulator with the given client credentials.
func NewStaffingSimulator(id, secret string, now func() time.Time) *StaffingSimulator {
	return &StaffingSimulator{ClientID: id, ClientSecret: secret, TokenTTL: time.Hour, Now: now, tokens: map[string]time.Time{}}
}

// SetShifts replaces the platform's shifts.
func (s *StaffingSimulator) SetShifts(sh []StaffingShift) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shifts = append([]StaffingShift(nil), sh...)
}

// ServeHTTP implements http.Handler.
func (s *StaffingSimulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.URL.Path {
	case "/oauth/token":
		s.token(w, r)
	case "/shifts":
		s.list(w, r)
	default:
		http.Error(w, "no such endpoint", http.StatusNotFound)
	}
}

func (s *StaffingSimulator) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok || subtle.ConstantTimeCompare([]byte(id), []byte(s.ClientID)) != 1 || subtle.ConstantTimeCompare([]byte(secret), []byte(s.ClientSecret)) != 1 {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("client_secret") != "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	s.tokens[tok] = s.Now().Add(s.TokenTTL)
	s.Tokens++
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": int(s.TokenTTL.Seconds())})
}

func (s *StaffingSimulator) list(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	exp, known := s.tokens[tok]
	if !ok || !known || !s.Now().Before(exp) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	q := r.URL.Query()
	for k, v := range q {
		if (k != "from" && k != "to" && k != "page" && k != "pageSize") || len(v) != 1 {
			http.Error(w, "unknown or repeated parameter "+k, http.StatusBadRequest)
			return
		}
	}
	from, err1 := time.Parse(time.DateOnly, q.Get("from"))
	to, err2 := time.Parse(time.DateOnly, q.Get("to"))
	page, err3 := strconv.Atoi(q.Get("page"))
	size, err4 := strconv.Atoi(q.Get("pageSize"))
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || page < 1 || size < 1 || size > 100 || to.Before(from) {
		http.Error(w, "from, to (YYYY-MM-DD), page >= 1 and 1 <= pageSize <= 100 are required", http.StatusBadRequest)
		return
	}
	s.Requests++
	var sel []StaffingShift
	for _, sh := range s.shifts {
		if !sh.End.Before(from) && sh.Start.Before(to) {
			sel = append(sel, sh)
		}
	}
	sort.Slice(sel, func(i, j int) bool { return sel[i].ShiftID < sel[j].ShiftID })
	total := (len(sel) + size - 1) / size
	lo := min((page-1)*size, len(sel))
	hi := min(lo+size, len(sel))
	_ = json.NewEncoder(w).Encode(StaffingPage{Items: append([]StaffingShift{}, sel[lo:hi]...), Page: page, TotalPages: total})
}
