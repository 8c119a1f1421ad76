// Package scimtest is a strict in-process SCIM 2.0 server for iam's tests:
// bearer authentication, filters limited to `userName eq "…"` (Users) and
// `displayName eq "…"` (Groups), strict paging parameters, ETags with
// If-Match (412 on mismatch, 428 when required and missing), Entra-style
// PATCH (op in any case, path or value map, members add/remove with a value
// filter, "True"/"False" strings), and 429 with Retry-After on a schedule,
// counting clients that come back too early.
package scimtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aortagw/aortagw/iam/connector/scim"
)

// Server is the SCIM service provider. Use it as an http.Handler.
type Server struct {
	Token          string
	RequireIfMatch bool
	// ThrottleEvery makes every Nth request answer 429 with Retry-After: 1.
	ThrottleEvery int
	// ChangeAfterGet makes the next N user GETs be followed by a concurrent
	// change (version bump), so a PATCH with that ETag gets 412.
	ChangeAfterGet int
	// PreconditionFailed counts 412 answers.
	PreconditionFailed int

	mu         sync.Mutex
	seq        int
	requests   int
	notBefore  time.Time
	violations int
	users      map[string]*entry[scim.User]
	groups     map[string]*entry[scim.Group]
	Writes     int // successful POST/PATCH/DELETE
}

type entry[T any] struct {
	v       T
	version int
}

// New creates an empty server.
func New(token string) *Server {
	return &Server{Token: token, users: map[string]*entry[scim.User]{}, groups: map[string]*entry[scim.Group]{}}
}

// Violations counts requests that ignored a Retry-After.
func (s *Server) Violations() int { s.mu.Lock(); defer s.mu.Unlock(); return s.violations }

// Users returns a copy of all users.
func (s *Server) Users() []scim.User {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []scim.User
	for _, e := range s.users {
		out = append(out, e.v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UserName < out[j].UserName })
	return out
}

// Group returns a copy of the group named name.
func (s *Server) Group(name string) (scim.Group, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.groups {
		if e.v.DisplayName == name {
			return e.v, true
		}
	}
	return scim.Group{}, false
}

// WriteCount returns the number of successful writes.
func (s *Server) WriteCount() int { s.mu.Lock(); defer s.mu.Unlock(); return s.Writes }

func scimErr(w http.ResponseWriter, status int, scimType, detail string) {
	w.Header().Set("Content-Type", "application/scim+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:Error"},
		"status": strconv.Itoa(status), "scimType": scimType, "detail": detail})
}

func write(w http.ResponseWriter, status int, etag string, v any) {
	w.Header().Set("Content-Type", "application/scim+json")
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

func etag(v int) string { return fmt.Sprintf(`W/"%d"`, v) }

var filterRe = regexp.MustCompile(`^(\w+) eq "((?:[^"\\]|\\.)*)"$`)
var memberFilterRe = regexp.MustCompile(`^members\[value eq "([^"]+)"\]$`)

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+s.Token {
		scimErr(w, http.StatusUnauthorized, "", "bearer token required")
		return
	}
	now := time.Now()
	if now.Before(s.notBefore) {
		s.violations++
		w.Header().Set("Retry-After", "1")
		scimErr(w, http.StatusTooManyRequests, "", "retry-after ignored")
		return
	}
	s.requests++
	if s.ThrottleEvery > 0 && s.requests%s.ThrottleEvery == 0 {
		s.notBefore = now.Add(time.Second)
		w.Header().Set("Retry-After", "1")
		scimErr(w, http.StatusTooManyRequests, "", "slow down")
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(r.Body, 1<<20))
	}
	if len(body) > 0 && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/scim+json") && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		scimErr(w, http.StatusUnsupportedMediaType, "", "content type")
		return
	}
	switch {
	case len(parts) == 1 && parts[0] == "Users" && r.Method == http.MethodGet:
		s.listUsers(w, r)
	case len(parts) == 1 && parts[0] == "Users" && r.Method == http.MethodPost:
		s.createUser(w, body)
	case len(parts) == 2 && parts[0] == "Users":
		e, ok := s.users[parts[1]]
		if !ok {
			scimErr(w, http.StatusNotFound, "", "no such user")
			return
		}
		switch r.Method {
		case http.MethodGet:
			write(w, http.StatusOK, etag(e.version), e.v)
			if s.ChangeAfterGet > 0 {
				s.ChangeAfterGet--
				e.version++
			}
		case http.MethodDelete:
			delete(s.users, parts[1])
			for _, g := range s.groups {
				g.v.Members = removeMember(g.v.Members, parts[1])
			}
			s.Writes++
			w.WriteHeader(http.StatusNoContent)
		case http.MethodPatch:
			if im := r.Header.Get("If-Match"); im != "" && im != etag(e.version) {
				s.PreconditionFailed++
				scimErr(w, http.StatusPreconditionFailed, "", "etag mismatch")
				return
			} else if im == "" && s.RequireIfMatch {
				scimErr(w, http.StatusPreconditionRequired, "", "If-Match required")
				return
			}
			s.patchUser(w, e, body)
		default:
			scimErr(w, http.StatusMethodNotAllowed, "", "method")
		}
	case len(parts) == 1 && parts[0] == "Groups" && r.Method == http.MethodGet:
		s.listGroups(w, r)
	case len(parts) == 1 && parts[0] == "Groups" && r.Method == http.MethodPost:
		var g scim.Group
		if err := strictDecode(body, &g); err != nil || g.DisplayName == "" {
			scimErr(w, http.StatusBadRequest, "invalidSyntax", "group")
			return
		}
		for _, o := range s.groups {
			if o.v.DisplayName == g.DisplayName {
				scimErr(w, http.StatusConflict, "uniqueness", "displayName taken")
				return
			}
		}
		s.seq++
		g.ID = fmt.Sprintf("g%d", s.seq)
		g.Meta = &scim.Meta{ResourceType: "Group", Version: etag(1)}
		s.groups[g.ID] = &entry[scim.Group]{v: g, version: 1}
		s.Writes++
		write(w, http.StatusCreated, etag(1), g)
	case len(parts) == 2 && parts[0] == "Groups" && r.Method == http.MethodPatch:
		e, ok := s.groups[parts[1]]
		if !ok {
			scimErr(w, http.StatusNotFound, "", "no such group")
			return
		}
		s.patchGroup(w, e, body)
	default:
		scimErr(w, http.StatusNotFound, "", "no such endpoint")
	}
}

func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func paging(r *http.Request, allowed ...string) (start, count int, filter string, err error) {
	q := r.URL.Query()
	for k := range q {
		if k != "startIndex" && k != "count" && k != "filter" {
			return 0, 0, "", fmt.Errorf("unknown parameter %s", k)
		}
	}
	start, count = 1, 100
	if v := q.Get("startIndex"); v != "" {
		if start, err = strconv.Atoi(v); err != nil || start < 1 {
			return 0, 0, "", fmt.Errorf("startIndex")
		}
	}
	if v := q.Get("count"); v != "" {
		if count, err = strconv.Atoi(v); err != nil || count < 0 || count > 100 {
			return 0, 0, "", fmt.Errorf("count")
		}
	}
	if f := q.Get("filter"); f != "" {
		m := filterRe.FindStringSubmatch(f)
		if m == nil || !strings.EqualFold(m[1], allowed[0]) {
			return 0, 0, "", fmt.Errorf("unsupported filter %q", f)
		}
		filter = strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(m[2])
	}
	return start, count, filter, nil
}

func page[T any](all []T, start, count int) map[string]any {
	total := len(all)
	from := min(start-1, total)
	to := min(from+count, total)
	return map[string]any{"schemas": []string{scim.SchemaList}, "totalResults": total, "startIndex": start, "itemsPerPage": to - from, "Resources": all[from:to]}
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	start, count, filter, err := paging(r, "userName")
	if err != nil {
		scimErr(w, http.StatusBadRequest, "invalidFilter", err.Error())
		return
	}
	var all []scim.User
	for _, e := range s.users {
		if filter == "" || strings.EqualFold(e.v.UserName, filter) { // userName is caseExact=false
			u := e.v
			u.Groups = nil
			for _, g := range s.groups {
				for _, m := range g.v.Members {
					if m.Value == u.ID {
						u.Groups = append(u.Groups, scim.Ref{Value: g.v.ID, Display: g.v.DisplayName})
					}
				}
			}
			all = append(all, u)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	write(w, http.StatusOK, "", page(all, start, count))
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) {
	start, count, filter, err := paging(r, "displayName")
	if err != nil {
		scimErr(w, http.StatusBadRequest, "invalidFilter", err.Error())
		return
	}
	var all []scim.Group
	for _, e := range s.groups {
		if filter == "" || e.v.DisplayName == filter {
			all = append(all, e.v)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	write(w, http.StatusOK, "", page(all, start, count))
}

func (s *Server) createUser(w http.ResponseWriter, body []byte) {
	var u scim.User
	if err := strictDecode(body, &u); err != nil || u.UserName == "" {
		scimErr(w, http.StatusBadRequest, "invalidSyntax", fmt.Sprintf("user: %v", err))
		return
	}
	for _, e := range s.users {
		if strings.EqualFold(e.v.UserName, u.UserName) {
			scimErr(w, http.StatusConflict, "uniqueness", "userName taken")
			return
		}
	}
	s.seq++
	u.ID = fmt.Sprintf("u%d", s.seq)
	u.Meta = &scim.Meta{ResourceType: "User", Version: etag(1)}
	s.users[u.ID] = &entry[scim.User]{v: u, version: 1}
	s.Writes++
	write(w, http.StatusCreated, etag(1), u)
}

func asBool(v any) (bool, bool) {
	switch b := v.(type) {
	case bool:
		return b, true
	case string: // Entra sends "True"/"False"
		switch strings.ToLower(b) {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	}
	return false, false
}

func (s *Server) patchUser(w http.ResponseWriter, e *entry[scim.User], body []byte) {
	var p struct {
		Schemas    []string `json:"schemas"`
		Operations []struct {
			Op    string          `json:"op"`
			Path  string          `json:"path"`
			Value json.RawMessage `json:"value"`
		} `json:"Operations"`
	}
	if err := strictDecode(body, &p); err != nil || len(p.Schemas) != 1 || p.Schemas[0] != scim.SchemaPatch || len(p.Operations) == 0 {
		scimErr(w, http.StatusBadRequest, "invalidSyntax", "patch body")
		return
	}
	u := e.v
	if u.Name == nil {
		u.Name = &struct {
			GivenName  string `json:"givenName,omitempty"`
			FamilyName string `json:"familyName,omitempty"`
		}{}
	}
	set := func(path string, v any) bool {
		str, _ := v.(string)
		switch path {
		case "active":
			b, ok := asBool(v)
			if !ok {
				return false
			}
			u.Active = &b
		case "displayName":
			u.DisplayName = str
		case "name.givenName":
			u.Name.GivenName = str
		case "name.familyName":
			u.Name.FamilyName = str
		case scim.SchemaEnterprise + ":department":
			if u.Enterprise == nil {
				u.Enterprise = &struct {
					EmployeeNumber string `json:"employeeNumber,omitempty"`
					Department     string `json:"department,omitempty"`
				}{}
			}
			u.Enterprise.Department = str
		case `emails[type eq "work"].value`:
			u.Emails = []scim.Email{{Value: str, Type: "work", Primary: true}}
		default:
			return false
		}
		return true
	}
	for _, op := range p.Operations {
		switch strings.ToLower(op.Op) {
		case "replace", "add":
		default:
			scimErr(w, http.StatusBadRequest, "invalidSyntax", "op "+op.Op)
			return
		}
		var v any
		if err := json.Unmarshal(op.Value, &v); err != nil {
			scimErr(w, http.StatusBadRequest, "invalidValue", "value")
			return
		}
		if op.Path == "" {
			m, ok := v.(map[string]any)
			if !ok {
				scimErr(w, http.StatusBadRequest, "invalidValue", "value map expected without path")
				return
			}
			for k, mv := range m {
				if !set(k, mv) {
					scimErr(w, http.StatusBadRequest, "invalidPath", k)
					return
				}
			}
			continue
		}
		if !set(op.Path, v) {
			scimErr(w, http.StatusBadRequest, "invalidPath", op.Path)
			return
		}
	}
	e.v = u
	e.version++
	e.v.Meta = &scim.Meta{ResourceType: "User", Version: etag(e.version)}
	s.Writes++
	write(w, http.StatusOK, etag(e.version), e.v)
}

func removeMember(ms []scim.Ref, id string) []scim.Ref {
	out := ms[:0]
	for _, m := range ms {
		if m.Value != id {
			out = append(out, m)
		}
	}
	return out
}

func (s *Server) patchGroup(w http.ResponseWriter, e *entry[scim.Group], body []byte) {
	var raw struct {
		Schemas    []string `json:"schemas"`
		Operations []struct {
			Op    string          `json:"op"`
			Path  string          `json:"path"`
			Value json.RawMessage `json:"value"`
		} `json:"Operations"`
	}
	if err := strictDecode(body, &raw); err != nil || len(raw.Operations) == 0 {
		scimErr(w, http.StatusBadRequest, "invalidSyntax", "patch body")
		return
	}
	for _, op := range raw.Operations {
		switch o := strings.ToLower(op.Op); {
		case o == "add" && op.Path == "members":
			var refs []scim.Ref
			if err := json.Unmarshal(op.Value, &refs); err != nil {
				scimErr(w, http.StatusBadRequest, "invalidValue", "members")
				return
			}
			for _, ref := range refs {
				if _, ok := s.users[ref.Value]; !ok {
					scimErr(w, http.StatusBadRequest, "invalidValue", "unknown member "+ref.Value)
					return
				}
				dup := false
				for _, m := range e.v.Members {
					dup = dup || m.Value == ref.Value
				}
				if !dup {
					e.v.Members = append(e.v.Members, scim.Ref{Value: ref.Value})
				}
			}
		case o == "remove" && memberFilterRe.MatchString(op.Path):
			e.v.Members = removeMember(e.v.Members, memberFilterRe.FindStringSubmatch(op.Path)[1])
		case o == "remove" && op.Path == "members":
			var refs []scim.Ref
			if err := json.Unmarshal(op.Value, &refs); err != nil {
				scimErr(w, http.StatusBadRequest, "invalidValue", "members")
				return
			}
			for _, ref := range refs {
				e.v.Members = removeMember(e.v.Members, ref.Value)
			}
		default:
			scimErr(w, http.StatusBadRequest, "invalidPath", op.Op+" "+op.Path)
			return
		}
	}
	e.version++
	s.Writes++
	w.WriteHeader(http.StatusNoContent)
}
