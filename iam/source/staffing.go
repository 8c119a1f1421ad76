package source

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/aortagw/aortagw/iam"
)

// StaffingShift is one shift as the staffing platform's API returns it.
type StaffingShift struct {
	ShiftID        string    `json:"shiftId"`
	WorkerID       string    `json:"workerId"`
	EmployeeNumber string    `json:"employeeNumber"`
	GivenName      string    `json:"givenName"`
	FamilyName     string    `json:"familyName"`
	Email          string    `json:"email"`
	Start          time.Time `json:"start"`
	End            time.Time `json:"end"`
	Function       string    `json:"function"`
	Department     string    `json:"department"`
	Location       string    `json:"location"`
}

// StaffingPage is one page of GET /shifts.
type StaffingPage struct {
	Items      []StaffingShift `json:"items"`
	Page       int             `json:"page"`
	TotalPages int             `json:"totalPages"`
}

// Staffing is the REST source for a staffing platform (Elanza-like): it
// fetches every shift in the window with OAuth2 client credentials, page by
// page, and turns each worker's shifts into contracts (iam.ShiftContracts).
// A worker without an active or future shift becomes a leaver; a worker no
// longer returned at all is removed from the snapshot (subject to the
// source threshold).
type Staffing struct {
	Name         string
	BaseURL      string
	TokenURL     string
	ClientID     string
	ClientSecret string
	Scopes       []string
	PageSize     int // default 100
	Window       iam.ShiftWindow
	HTTPClient   *http.Client // used for the token and the API (tests: httptest client)
	Now          func() time.Time
	Logger       *slog.Logger
}

// Fetch reads all pages and returns one person per worker.
func (s *Staffing) Fetch(ctx context.Context) ([]iam.Person, error) {
	if s.Name == "" || s.BaseURL == "" || s.TokenURL == "" || s.ClientID == "" || s.ClientSecret == "" || s.Now == nil {
		return nil, fmt.Errorf("%w: staffing source needs name, baseURL, tokenURL, client credentials and clock", iam.ErrInvalid)
	}
	if s.HTTPClient != nil {
		ctx = context.WithValue(ctx, oauth2.HTTPClient, s.HTTPClient)
	}
	cc := &clientcredentials.Config{ClientID: s.ClientID, ClientSecret: s.ClientSecret, TokenURL: s.TokenURL, Scopes: s.Scopes,
		AuthStyle: oauth2.AuthStyleInHeader}
	client := cc.Client(ctx)
	size := s.PageSize
	if size <= 0 {
		size = 100
	}
	now := s.Now()
	from := now.AddDate(0, 0, -s.Window.HistoricalDays).Format(time.DateOnly)
	to := now.AddDate(0, 0, s.Window.FutureDays+1).Format(time.DateOnly)
	var all []StaffingShift
	for page := 1; ; page++ {
		q := url.Values{"from": {from}, "to": {to}, "page": {fmt.Sprint(page)}, "pageSize": {fmt.Sprint(size)}}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(s.BaseURL, "/")+"/shifts?"+q.Encode(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("%w: staffing page %d: %v", iam.ErrTransient, page, err)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: staffing read: %v", iam.ErrTransient, err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%w: staffing page %d (status=%d body=%q)", ErrParse, page, resp.StatusCode, string(b[:min(len(b), 200)]))
		}
		var p StaffingPage
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("%w: staffing page %d: %v", ErrParse, page, err)
		}
		if p.Page != page {
			return nil, fmt.Errorf("%w: staffing returned page %d for %d", ErrParse, p.Page, page)
		}
		all = append(all, p.Items...)
		if page >= p.TotalPages {
			break
		}
		if page > 100000 {
			return nil, fmt.Errorf("%w: staffing paging does not end", ErrParse)
		}
	}
	byWorker := map[string][]StaffingShift{}
	for _, sh := range all {
		if sh.WorkerID == "" || sh.ShiftID == "" || sh.Start.IsZero() || sh.End.Before(sh.Start) {
			return nil, fmt.Errorf("%w: staffing shift (shift=%s worker=%s)", ErrParse, sh.ShiftID, sh.WorkerID)
		}
		byWorker[sh.WorkerID] = append(byWorker[sh.WorkerID], sh)
	}
	out := make([]iam.Person, 0, len(byWorker))
	for id, shs := range byWorker {
		f := shs[0]
		p := iam.Person{ID: id, GivenName: f.GivenName, FamilyName: f.FamilyName, Email: f.Email, EmployeeNumber: f.EmployeeNumber}
		conv := make([]iam.Shift, len(shs))
		for i, sh := range shs {
			conv[i] = iam.Shift{ID: sh.ShiftID, Start: sh.Start, End: sh.End, Function: sh.Function, Department: sh.Department, Location: sh.Location}
		}
		p.Contracts = iam.ShiftContracts(s.Name, conv, now, s.Window)
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Poll fetches and imports now and then every interval until ctx ends.
func (s *Staffing) Poll(ctx context.Context, every time.Duration, imp Importer) error {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	run := func() {
		ps, err := s.Fetch(ctx)
		if err == nil {
			_, err = imp.Import(ctx, s.Name, ps, "source:"+s.Name)
		}
		if err != nil && ctx.Err() == nil {
			log.Error("iam: staffing import failed", "source", s.Name, "err", err)
		}
	}
	run()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			run()
		}
	}
}
