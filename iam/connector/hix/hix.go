// Package hix is a target connector for a HiX-like XML account API, and
// its strict simulator.
//
// The API knows accounts with groups and login groups (permissions are
// named "group:<name>" and "login:<name>"), a HiX function code (mapped from
// the person's function label by configuration; an unmapped label is an
// error, never a guess) and an employee type: "GS" for untrained staff,
// "MW" for regular staff, each with a "U" suffix once the account is
// disabled (a leaver). Every change is a full-object update: GET the
// account, change it, PUT the whole object back with its version. Accounts
// cannot be deleted (NoDelete) and the API takes one request at a time
// (Concurrency 1; the connector also serialises its own calls).
//
// Dry run performs the GET and builds the new object, and skips the PUT or
// POST.
package hix

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aortagw/aortagw/iam"
)

// ErrHiX is returned for an unexpected answer of the HiX API.
var ErrHiX = errors.New("iam/hix: unexpected response")

// Account is the HiX account object, always sent whole.
type Account struct {
	XMLName        xml.Name `xml:"Account"`
	Code           string   `xml:"Code"`
	Version        int      `xml:"Version"`
	EmployeeNumber string   `xml:"EmployeeNumber"`
	Name           string   `xml:"Name"`
	Email          string   `xml:"Email"`
	FunctionCode   string   `xml:"FunctionCode"`
	EmployeeType   string   `xml:"EmployeeType"`
	Active         bool     `xml:"Active"`
	Groups         []string `xml:"Groups>Group"`
	LoginGroups    []string `xml:"LoginGroups>LoginGroup"`
}

// AccountList is the answer to a list request.
type AccountList struct {
	XMLName  xml.Name  `xml:"Accounts"`
	Accounts []Account `xml:"Account"`
}

// Config configures the connector.
type Config struct {
	Name       string
	BaseURL    string
	HTTPClient *http.Client
	// Functions maps function labels (as HR writes them) to HiX function codes.
	Functions map[string]string
}

// Connector is the HiX target.
type Connector struct {
	cfg     Config
	reverse map[string]string
	mu      sync.Mutex // HiX takes one request at a time
}

var (
	_ iam.Connector     = (*Connector)(nil)
	_ iam.AccountLookup = (*Connector)(nil)
)

// New validates the configuration.
func New(cfg Config) (*Connector, error) {
	if cfg.Name == "" || cfg.BaseURL == "" || len(cfg.Functions) == 0 {
		return nil, fmt.Errorf("%w: hix connector needs name, baseURL and a function map", iam.ErrInvalid)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	rev := map[string]string{}
	for label, code := range cfg.Functions {
		rev[code] = label
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	return &Connector{cfg: cfg, reverse: rev}, nil
}

// Name implements iam.Connector.
func (c *Connector) Name() string { return c.cfg.Name }

// Capabilities implements iam.Connector: no delete, one at a time.
func (c *Connector) Capabilities() iam.Capabilities {
	return iam.Capabilities{NoDelete: true, Concurrency: 1}
}

func (c *Connector) do(ctx context.Context, method, path string, in any, out any) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var body io.Reader
	if in != nil {
		b, err := xml.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.cfg.BaseURL+path, body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/xml")
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: hix %s %s: %v", iam.ErrTransient, method, path, err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, fmt.Errorf("%w: hix read: %v", iam.ErrTransient, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return resp.StatusCode, nil
	case resp.StatusCode == http.StatusConflict || resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests:
		return resp.StatusCode, fmt.Errorf("%w: hix %s %s (status=%d body=%q)", iam.ErrTransient, method, path, resp.StatusCode, trunc(rb))
	case resp.StatusCode >= 300:
		return resp.StatusCode, fmt.Errorf("%w: hix %s %s (status=%d body=%q)", ErrHiX, method, path, resp.StatusCode, trunc(rb))
	}
	if out != nil {
		if err := xml.Unmarshal(rb, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%w: decode %s: %v", ErrHiX, path, err)
		}
	}
	return resp.StatusCode, nil
}

func trunc(b []byte) string {
	if len(b) > 300 {
		b = b[:300]
	}
	return string(b)
}

func (c *Connector) account(a *Account) iam.Account {
	fn := c.reverse[a.FunctionCode]
	if fn == "" {
		fn = a.FunctionCode
	}
	perms := make([]string, 0, len(a.Groups)+len(a.LoginGroups))
	for _, g := range a.Groups {
		perms = append(perms, "group:"+g)
	}
	for _, g := range a.LoginGroups {
		perms = append(perms, "login:"+g)
	}
	sort.Strings(perms)
	return iam.Account{Target: c.cfg.Name, Ref: a.Code, Key: a.EmployeeNumber, Enabled: a.Active, Permissions: perms,
		Attributes: map[string]string{"displayName": a.Name, "email": a.Email, "function": fn}}
}

// ImportAll implements iam.Connector.
func (c *Connector) ImportAll(ctx context.Context) ([]iam.Account, error) {
	var l AccountList
	if _, err := c.do(ctx, http.MethodGet, "/accounts", nil, &l); err != nil {
		return nil, err
	}
	out := make([]iam.Account, len(l.Accounts))
	for i := range l.Accounts {
		out[i] = c.account(&l.Accounts[i])
	}
	return out, nil
}

func (c *Connector) byEmployee(ctx context.Context, key string) ([]Account, error) {
	var l AccountList
	_, err := c.do(ctx, http.MethodGet, "/accounts?employeeNumber="+url.QueryEscape(key), nil, &l)
	return l.Accounts, err
}

// Lookup implements iam.AccountLookup.
func (c *Connector) Lookup(ctx context.Context, key string) ([]iam.Account, error) {
	as, err := c.byEmployee(ctx, key)
	if err != nil {
		return nil, err
	}
	out := make([]iam.Account, len(as))
	for i := range as {
		out[i] = c.account(&as[i])
	}
	return out, nil
}

// ListPermissions implements iam.Connector: the groups and login groups in use.
func (c *Connector) ListPermissions(ctx context.Context) ([]string, error) {
	accs, err := c.ImportAll(ctx)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, a := range accs {
		for _, p := range a.Permissions {
			set[p] = true
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

// EmployeeType returns GS (untrained) or MW (regular), with the U suffix for
// a disabled account.
func EmployeeType(p *iam.Person, active bool) string {
	t := "MW"
	if p != nil && p.Trained != nil && !*p.Trained {
		t = "GS"
	}
	if !active {
		t += "U"
	}
	return t
}

func (c *Connector) functionCode(label string) (string, error) {
	code, ok := c.cfg.Functions[label]
	if !ok {
		return "", fmt.Errorf("%w: no hix function code for function label (label=%q)", iam.ErrInvalid, label)
	}
	return code, nil
}

// CreateOrCorrelate implements iam.Connector.
func (c *Connector) CreateOrCorrelate(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	if req.Key == "" {
		return iam.Result{}, fmt.Errorf("%w: hix create needs an employee number", iam.ErrInvalid)
	}
	as, err := c.byEmployee(ctx, req.Key)
	if err != nil {
		return iam.Result{}, err
	}
	switch len(as) {
	case 0:
	case 1:
		return iam.Result{Ref: as[0].Code, Correlated: true, Audit: []string{"correlated " + as[0].Code}}, nil
	default:
		return iam.Result{}, fmt.Errorf("%w: (target=%s employeeNumber=%s count=%d)", iam.ErrMultipleFound, c.cfg.Name, req.Key, len(as))
	}
	fc, err := c.functionCode(req.Attributes["function"])
	if err != nil {
		return iam.Result{}, err
	}
	a := Account{EmployeeNumber: req.Key, Name: req.Attributes["displayName"], Email: req.Attributes["email"], FunctionCode: fc,
		EmployeeType: EmployeeType(req.Person, req.Enabled), Active: req.Enabled}
	if req.DryRun {
		return iam.Result{Ref: "(new)", Audit: []string{"POST /accounts " + req.Key}}, nil
	}
	var created Account
	if _, err := c.do(ctx, http.MethodPost, "/accounts", a, &created); err != nil {
		return iam.Result{}, err
	}
	return iam.Result{Ref: created.Code, Audit: []string{"POST /accounts -> " + created.Code}}, nil
}

// modify is the full-object update: GET, change, PUT the whole account.
func (c *Connector) modify(ctx context.Context, req iam.AccountRequest, what string, change func(a *Account) error) (iam.Result, error) {
	var a Account
	st, err := c.do(ctx, http.MethodGet, "/accounts/"+url.PathEscape(req.Ref), nil, &a)
	if err != nil {
		return iam.Result{}, err
	}
	if st == http.StatusNotFound {
		return iam.Result{}, fmt.Errorf("%w: hix account (code=%s)", iam.ErrNotFound, req.Ref)
	}
	before := a
	before.Groups = slices.Clone(a.Groups)
	before.LoginGroups = slices.Clone(a.LoginGroups)
	if err := change(&a); err != nil {
		return iam.Result{}, err
	}
	if a.Name == before.Name && a.Email == before.Email && a.FunctionCode == before.FunctionCode && a.EmployeeType == before.EmployeeType &&
		a.Active == before.Active && slices.Equal(a.Groups, before.Groups) && slices.Equal(a.LoginGroups, before.LoginGroups) {
		return iam.Result{Ref: req.Ref, NoChange: true}, nil
	}
	res := iam.Result{Ref: req.Ref, Audit: []string{"PUT /accounts/" + req.Ref + " " + what}}
	if req.DryRun {
		return res, nil
	}
	_, err = c.do(ctx, http.MethodPut, "/accounts/"+url.PathEscape(req.Ref), a, nil)
	return res, err
}

// Update implements iam.Connector.
func (c *Connector) Update(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	return c.modify(ctx, req, "update", func(a *Account) error {
		if v, ok := req.Attributes["displayName"]; ok {
			a.Name = v
		}
		if v, ok := req.Attributes["email"]; ok {
			a.Email = v
		}
		if v, ok := req.Attributes["function"]; ok {
			fc, err := c.functionCode(v)
			if err != nil {
				return err
			}
			a.FunctionCode = fc
		}
		if req.Person != nil {
			a.EmployeeType = EmployeeType(req.Person, a.Active)
		}
		return nil
	})
}

func (c *Connector) setActive(ctx context.Context, req iam.AccountRequest, active bool) (iam.Result, error) {
	return c.modify(ctx, req, fmt.Sprintf("active=%t", active), func(a *Account) error {
		a.Active = active
		base := strings.TrimSuffix(a.EmployeeType, "U")
		if req.Person != nil {
			base = strings.TrimSuffix(EmployeeType(req.Person, true), "U")
		}
		if !active {
			base += "U"
		}
		a.EmployeeType = base
		return nil
	})
}

// Enable implements iam.Connector.
func (c *Connector) Enable(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	return c.setActive(ctx, req, true)
}

// Disable implements iam.Connector: inactive with the U employee type.
func (c *Connector) Disable(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	return c.setActive(ctx, req, false)
}

// Delete implements iam.Connector: HiX accounts cannot be deleted.
func (c *Connector) Delete(context.Context, iam.AccountRequest) (iam.Result, error) {
	return iam.Result{}, fmt.Errorf("%w: delete (target=%s)", iam.ErrUnsupported, c.cfg.Name)
}

func splitPerm(p string) (kind, name string, err error) {
	kind, name, ok := strings.Cut(p, ":")
	if !ok || name == "" || (kind != "group" && kind != "login") {
		return "", "", fmt.Errorf("%w: hix permission must be group:<name> or login:<name> (value=%q)", iam.ErrInvalid, p)
	}
	return kind, name, nil
}

// Grant implements iam.Connector.
func (c *Connector) Grant(ctx context.Context, req iam.AccountRequest, permission string) (iam.Result, error) {
	kind, name, err := splitPerm(permission)
	if err != nil {
		return iam.Result{}, err
	}
	return c.modify(ctx, req, "grant "+permission, func(a *Account) error {
		l := &a.Groups
		if kind == "login" {
			l = &a.LoginGroups
		}
		if !slices.Contains(*l, name) {
			*l = append(*l, name)
			sort.Strings(*l)
		}
		return nil
	})
}

// Revoke implements iam.Connector.
func (c *Connector) Revoke(ctx context.Context, req iam.AccountRequest, permission string) (iam.Result, error) {
	kind, name, err := splitPerm(permission)
	if err != nil {
		return iam.Result{}, err
	}
	return c.modify(ctx, req, "revoke "+permission, func(a *Account) error {
		l := &a.Groups
		if kind == "login" {
			l = &a.LoginGroups
		}
		*l = slices.DeleteFunc(*l, func(s string) bool { return s == name })
		return nil
	})
}
