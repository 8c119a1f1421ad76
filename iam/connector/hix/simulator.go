package hix

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Simulator is a strict stand-in for the HiX account API: full objects
// only (PUT must carry every element and the current Version), known
// function codes only, employee types GS/MW with a U suffix exactly when
// the account is inactive, no DELETE, and one request at a time (a second
// concurrent request is refused with 503 and counted).
type Simulator struct {
	// FunctionCodes are the codes HiX knows.
	FunctionCodes []string
	// Delay holds every request this long (to make overlapping requests visible).
	Delay time.Duration

	inflight atomic.Int32
	refused  atomic.Int32
	mu       sync.Mutex
	seq      int
	accounts map[string]*Account
	writes   int
}

// NewSimulator creates an empty simulator.
func NewSimulator(codes ...string) *Simulator {
	return &Simulator{FunctionCodes: codes, accounts: map[string]*Account{}}
}

// Refused counts requests refused for concurrency.
func (s *Simulator) Refused() int { return int(s.refused.Load()) }

// Writes counts successful POST/PUT requests.
func (s *Simulator) Writes() int { s.mu.Lock(); defer s.mu.Unlock(); return s.writes }

// Accounts returns copies of all accounts ordered by code.
func (s *Simulator) Accounts() []Account {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Account, 0, len(s.accounts))
	for _, a := range s.accounts {
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

func (s *Simulator) fail(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "<Error><Message>%s</Message></Error>", xmlEscape(msg))
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (s *Simulator) validate(a *Account) error {
	switch {
	case a.EmployeeNumber == "" || a.Name == "":
		return fmt.Errorf("EmployeeNumber and Name are required")
	case !slices.Contains(s.FunctionCodes, a.FunctionCode):
		return fmt.Errorf("unknown FunctionCode %q", a.FunctionCode)
	}
	base := strings.TrimSuffix(a.EmployeeType, "U")
	if base != "GS" && base != "MW" {
		return fmt.Errorf("unknown EmployeeType %q", a.EmployeeType)
	}
	if strings.HasSuffix(a.EmployeeType, "U") == a.Active {
		return fmt.Errorf("EmployeeType %q does not match Active=%t (U suffix marks leavers)", a.EmployeeType, a.Active)
	}
	return nil
}

// decodeFull reads a whole Account and checks every element is present.
func decodeFull(r io.Reader) (*Account, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, err
	}
	for _, el := range []string{"<EmployeeNumber>", "<Name>", "<Email", "<FunctionCode>", "<EmployeeType>", "<Active>", "<Version>"} {
		if !strings.Contains(string(b), el) && !strings.Contains(string(b), strings.Replace(el, ">", "/>", 1)) {
			return nil, fmt.Errorf("partial object: %s missing (full-object updates only)", strings.Trim(el, "<>"))
		}
	}
	var a Account
	if err := xml.Unmarshal(b, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// ServeHTTP implements http.Handler.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.inflight.Add(1) > 1 {
		s.inflight.Add(-1)
		s.refused.Add(1)
		s.fail(w, http.StatusServiceUnavailable, "one request at a time")
		return
	}
	defer s.inflight.Add(-1)
	if s.Delay > 0 {
		time.Sleep(s.Delay)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	path := strings.Trim(r.URL.Path, "/")
	switch {
	case path == "accounts" && r.Method == http.MethodGet:
		for k := range r.URL.Query() {
			if k != "employeeNumber" {
				s.fail(w, http.StatusBadRequest, "unknown parameter "+k)
				return
			}
		}
		en := r.URL.Query().Get("employeeNumber")
		var l AccountList
		codes := make([]string, 0, len(s.accounts))
		for c := range s.accounts {
			codes = append(codes, c)
		}
		sort.Strings(codes)
		for _, c := range codes {
			if a := s.accounts[c]; en == "" || a.EmployeeNumber == en {
				l.Accounts = append(l.Accounts, *a)
			}
		}
		w.Header().Set("Content-Type", "application/xml")
		_ = xml.NewEncoder(w).Encode(l)
	case path == "accounts" && r.Method == http.MethodPost:
		a, err := decodeFull(r.Body)
		if err != nil {
			s.fail(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := s.validate(a); err != nil {
			s.fail(w, http.StatusBadRequest, err.Error())
			return
		}
		s.seq++
		a.Code = fmt.Sprintf("HIX%05d", s.seq)
		a.Version = 1
		s.accounts[a.Code] = a
		s.writes++
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusCreated)
		_ = xml.NewEncoder(w).Encode(a)
	case strings.HasPrefix(path, "accounts/"):
		code := strings.TrimPrefix(path, "accounts/")
		cur, ok := s.accounts[code]
		if !ok {
			s.fail(w, http.StatusNotFound, "no such account")
			return
		}
		switch r.Method {
		case http.MethodGet:
			w.Header().Set("Content-Type", "application/xml")
			_ = xml.NewEncoder(w).Encode(cur)
		case http.MethodPut:
			a, err := decodeFull(r.Body)
			if err != nil {
				s.fail(w, http.StatusBadRequest, err.Error())
				return
			}
			if a.Code != code || a.EmployeeNumber != cur.EmployeeNumber {
				s.fail(w, http.StatusBadRequest, "Code and EmployeeNumber cannot change")
				return
			}
			if a.Version != cur.Version {
				s.fail(w, http.StatusConflict, "version conflict: GET the account again")
				return
			}
			if err := s.validate(a); err != nil {
				s.fail(w, http.StatusBadRequest, err.Error())
				return
			}
			a.Version++
			s.accounts[code] = a
			s.writes++
			w.WriteHeader(http.StatusNoContent)
		default:
			s.fail(w, http.StatusMethodNotAllowed, "accounts cannot be deleted")
		}
	default:
		s.fail(w, http.StatusNotFound, "no such endpoint")
	}
}
