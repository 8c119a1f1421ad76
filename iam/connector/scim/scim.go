// Package scim is a SCIM 2.0 (RFC 7643/7644) client target connector.
//
// Accounts are /Users with userName = the correlation value and externalId
// = the person ID; permissions are /Groups (by displayName) whose members
// are changed with PATCH. Writes use the shapes Entra ID sends (PATCH with
// "Operations", op "Replace"/"Add"/"Remove", path "active" or a value map,
// members[value eq "id"] for removal), so a target that works with Entra
// works with us. Updates read the resource first and send its ETag in
// If-Match; a 412 re-reads and retries once. 429 and 503 are retried after
// Retry-After (capped by MaxRetryAfter, beyond which the error is
// iam.ErrTransient for the engine's own backoff).
//
// Safe for concurrent use. Dry run performs every read and builds every
// request body, and skips only the final POST/PATCH/DELETE.
package scim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aortagw/aortagw/iam"
)

// Schema URNs.
const (
	SchemaUser       = "urn:ietf:params:scim:schemas:core:2.0:User"
	SchemaGroup      = "urn:ietf:params:scim:schemas:core:2.0:Group"
	SchemaEnterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	SchemaPatch      = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	SchemaList       = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
)

// ErrSCIM is returned for an unexpected SCIM response.
var ErrSCIM = errors.New("iam/scim: unexpected response")

// Config configures the client.
type Config struct {
	Name          string
	BaseURL       string // e.g. https://app.example/scim/v2
	Token         string // bearer token
	HTTPClient    *http.Client
	Concurrency   int
	MaxRetryAfter time.Duration // default 30s
	PageSize      int           // default 100
}

// Connector is the SCIM client target.
type Connector struct {
	cfg Config
}

var (
	_ iam.Connector     = (*Connector)(nil)
	_ iam.AccountLookup = (*Connector)(nil)
)

// New validates the configuration.
func New(cfg Config) (*Connector, error) {
	if cfg.Name == "" || cfg.BaseURL == "" {
		return nil, fmt.Errorf("%w: scim connector needs name and baseURL", iam.ErrInvalid)
	}
	if _, err := url.Parse(cfg.BaseURL); err != nil {
		return nil, fmt.Errorf("%w: scim baseURL: %v", iam.ErrInvalid, err)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = 30 * time.Second
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 100
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	return &Connector{cfg: cfg}, nil
}

// Name implements iam.Connector.
func (c *Connector) Name() string { return c.cfg.Name }

// Capabilities implements iam.Connector.
func (c *Connector) Capabilities() iam.Capabilities {
	n := c.cfg.Concurrency
	if n <= 0 {
		n = 4
	}
	return iam.Capabilities{Concurrency: n}
}

// User is the part of a SCIM User the connector reads and writes.
type User struct {
	Schemas    []string `json:"schemas,omitempty"`
	ID         string   `json:"id,omitempty"`
	ExternalID string   `json:"externalId,omitempty"`
	UserName   string   `json:"userName"`
	Name       *struct {
		GivenName  string `json:"givenName,omitempty"`
		FamilyName string `json:"familyName,omitempty"`
	} `json:"name,omitempty"`
	DisplayName string  `json:"displayName,omitempty"`
	Emails      []Email `json:"emails,omitempty"`
	Active      *bool   `json:"active,omitempty"`
	Enterprise  *struct {
		EmployeeNumber string `json:"employeeNumber,omitempty"`
		Department     string `json:"department,omitempty"`
	} `json:"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User,omitempty"`
	Groups []Ref `json:"groups,omitempty"`
	Meta   *Meta `json:"meta,omitempty"`
}

// Email is a SCIM multi-valued e-mail.
type Email struct {
	Value   string `json:"value"`
	Type    string `json:"type,omitempty"`
	Primary bool   `json:"primary,omitempty"`
}

// Ref is a SCIM reference (group member, user group).
type Ref struct {
	Value   string `json:"value"`
	Display string `json:"display,omitempty"`
}

// Meta is SCIM resource metadata.
type Meta struct {
	ResourceType string `json:"resourceType,omitempty"`
	Version      string `json:"version,omitempty"`
}

// Group is a SCIM Group.
type Group struct {
	Schemas     []string `json:"schemas,omitempty"`
	ID          string   `json:"id,omitempty"`
	DisplayName string   `json:"displayName"`
	Members     []Ref    `json:"members,omitempty"`
	Meta        *Meta    `json:"meta,omitempty"`
}

// PatchOp is a SCIM PATCH request body.
type PatchOp struct {
	Schemas    []string    `json:"schemas"`
	Operations []Operation `json:"Operations"`
}

// Operation is one PATCH operation.
type Operation struct {
	Op    string `json:"op"`
	Path  string `json:"path,omitempty"`
	Value any    `json:"value,omitempty"`
}

type listResponse[T any] struct {
	Schemas      []string `json:"schemas"`
	TotalResults int      `json:"totalResults"`
	StartIndex   int      `json:"startIndex"`
	ItemsPerPage int      `json:"itemsPerPage"`
	Resources    []T      `json:"Resources"`
}

type httpError struct {
	status int
	body   string
}

func (e *httpError) Error() string {
	return fmt.Sprintf("%v (status=%d body=%q)", ErrSCIM, e.status, e.body)
}
func (e *httpError) Unwrap() error {
	if e.status >= 500 || e.status == http.StatusTooManyRequests {
		return iam.ErrTransient
	}
	return ErrSCIM
}

// do sends one request, honouring 429/503 Retry-After, and decodes the JSON
// answer into out (when not nil). It returns the response's ETag.
func (c *Connector) do(ctx context.Context, method, path string, ifMatch string, in, out any) (string, error) {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return "", err
		}
	}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, c.cfg.BaseURL+path, bytes.NewReader(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("Accept", "application/scim+json")
		if in != nil {
			req.Header.Set("Content-Type", "application/scim+json")
		}
		if c.cfg.Token != "" {
			req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
		}
		if ifMatch != "" {
			req.Header.Set("If-Match", ifMatch)
		}
		resp, err := c.cfg.HTTPClient.Do(req)
		if err != nil {
			return "", fmt.Errorf("%w: scim %s %s: %v", iam.ErrTransient, method, path, err)
		}
		rb, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		resp.Body.Close()
		if err != nil {
			return "", fmt.Errorf("%w: scim read body: %v", iam.ErrTransient, err)
		}
		if (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) && attempt < 5 {
			wait := retryAfter(resp.Header.Get("Retry-After"))
			if wait > c.cfg.MaxRetryAfter {
				return "", fmt.Errorf("%w: scim throttled for %s (path=%s)", iam.ErrTransient, wait, path)
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return "", ctx.Err()
			case <-t.C:
			}
			continue
		}
		if resp.StatusCode >= 300 {
			return "", &httpError{status: resp.StatusCode, body: truncate(string(rb), 300)}
		}
		if out != nil && len(rb) > 0 {
			if err := json.Unmarshal(rb, out); err != nil {
				return "", fmt.Errorf("%w: decode %s %s: %v", ErrSCIM, method, path, err)
			}
		}
		return resp.Header.Get("ETag"), nil
	}
}

func retryAfter(v string) time.Duration {
	if v == "" {
		return time.Second
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return time.Second
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func statusOf(err error) int {
	var he *httpError
	if errors.As(err, &he) {
		return he.status
	}
	return 0
}

func eqFilter(attr, v string) string {
	return attr + ` eq "` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

func (c *Connector) findUsers(ctx context.Context, userName string) ([]User, error) {
	var lr listResponse[User]
	_, err := c.do(ctx, http.MethodGet, "/Users?filter="+url.QueryEscape(eqFilter("userName", userName)), "", nil, &lr)
	return lr.Resources, err
}

func (c *Connector) findGroup(ctx context.Context, name string) (*Group, error) {
	var lr listResponse[Group]
	if _, err := c.do(ctx, http.MethodGet, "/Groups?filter="+url.QueryEscape(eqFilter("displayName", name)), "", nil, &lr); err != nil {
		return nil, err
	}
	switch len(lr.Resources) {
	case 0:
		return nil, nil
	case 1:
		return &lr.Resources[0], nil
	}
	return nil, fmt.Errorf("%w: groups named %q", iam.ErrMultipleFound, name)
}

func listAll[T any](ctx context.Context, c *Connector, path string) ([]T, error) {
	var out []T
	start := 1
	for {
		var lr listResponse[T]
		if _, err := c.do(ctx, http.MethodGet, fmt.Sprintf("%s?startIndex=%d&count=%d", path, start, c.cfg.PageSize), "", nil, &lr); err != nil {
			return nil, err
		}
		out = append(out, lr.Resources...)
		if len(lr.Resources) == 0 || start+len(lr.Resources) > lr.TotalResults {
			return out, nil
		}
		start += len(lr.Resources)
	}
}

func (c *Connector) account(u *User, groups map[string][]string) iam.Account {
	a := iam.Account{Target: c.cfg.Name, Ref: u.ID, Key: u.UserName, Enabled: u.Active == nil || *u.Active, Attributes: map[string]string{
		"givenName": "", "familyName": "", "displayName": u.DisplayName, "email": "", "department": ""}}
	if u.Name != nil {
		a.Attributes["givenName"], a.Attributes["familyName"] = u.Name.GivenName, u.Name.FamilyName
	}
	for _, e := range u.Emails {
		if e.Primary || e.Type == "work" || a.Attributes["email"] == "" {
			a.Attributes["email"] = e.Value
		}
	}
	if u.Enterprise != nil {
		a.Attributes["department"] = u.Enterprise.Department
	}
	a.Permissions = groups[u.ID]
	sort.Strings(a.Permissions)
	return a
}

// ImportAll implements iam.Connector: pages through /Users and /Groups.
func (c *Connector) ImportAll(ctx context.Context) ([]iam.Account, error) {
	users, err := listAll[User](ctx, c, "/Users")
	if err != nil {
		return nil, err
	}
	groups, err := listAll[Group](ctx, c, "/Groups")
	if err != nil {
		return nil, err
	}
	byMember := map[string][]string{}
	for _, g := range groups {
		for _, m := range g.Members {
			byMember[m.Value] = append(byMember[m.Value], g.DisplayName)
		}
	}
	out := make([]iam.Account, len(users))
	for i := range users {
		out[i] = c.account(&users[i], byMember)
	}
	return out, nil
}

// Lookup implements iam.AccountLookup.
func (c *Connector) Lookup(ctx context.Context, key string) ([]iam.Account, error) {
	us, err := c.findUsers(ctx, key)
	if err != nil {
		return nil, err
	}
	out := make([]iam.Account, 0, len(us))
	for i := range us {
		byMember := map[string][]string{}
		for _, g := range us[i].Groups {
			byMember[us[i].ID] = append(byMember[us[i].ID], g.Display)
		}
		out = append(out, c.account(&us[i], byMember))
	}
	return out, nil
}

// ListPermissions implements iam.Connector.
func (c *Connector) ListPermissions(ctx context.Context) ([]string, error) {
	gs, err := listAll[Group](ctx, c, "/Groups")
	if err != nil {
		return nil, err
	}
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.DisplayName
	}
	sort.Strings(out)
	return out, nil
}

func userFrom(req iam.AccountRequest) *User {
	u := &User{Schemas: []string{SchemaUser, SchemaEnterprise}, UserName: req.Key, DisplayName: req.Attributes["displayName"]}
	if req.Person != nil {
		u.ExternalID = req.Person.ID
	}
	u.Name = &struct {
		GivenName  string `json:"givenName,omitempty"`
		FamilyName string `json:"familyName,omitempty"`
	}{req.Attributes["givenName"], req.Attributes["familyName"]}
	if e := req.Attributes["email"]; e != "" {
		u.Emails = []Email{{Value: e, Type: "work", Primary: true}}
	}
	active := req.Enabled
	u.Active = &active
	u.Enterprise = &struct {
		EmployeeNumber string `json:"employeeNumber,omitempty"`
		Department     string `json:"department,omitempty"`
	}{req.Attributes["employeeNumber"], req.Attributes["department"]}
	return u
}

// CreateOrCorrelate implements iam.Connector.
func (c *Connector) CreateOrCorrelate(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	if req.Key == "" {
		return iam.Result{}, fmt.Errorf("%w: scim create needs a correlation value", iam.ErrInvalid)
	}
	us, err := c.findUsers(ctx, req.Key)
	if err != nil {
		return iam.Result{}, err
	}
	switch len(us) {
	case 0:
	case 1:
		return iam.Result{Ref: us[0].ID, Correlated: true, Audit: []string{"correlated /Users/" + us[0].ID}}, nil
	default:
		return iam.Result{}, fmt.Errorf("%w: (target=%s userName=%s count=%d)", iam.ErrMultipleFound, c.cfg.Name, req.Key, len(us))
	}
	u := userFrom(req)
	if req.DryRun {
		return iam.Result{Ref: "(new)", Audit: []string{"POST /Users userName=" + req.Key}}, nil
	}
	var created User
	if _, err := c.do(ctx, http.MethodPost, "/Users", "", u, &created); err != nil {
		if statusOf(err) == http.StatusConflict { // created concurrently: correlate
			us, ferr := c.findUsers(ctx, req.Key)
			if ferr == nil && len(us) == 1 {
				return iam.Result{Ref: us[0].ID, Correlated: true}, nil
			}
		}
		return iam.Result{}, err
	}
	if created.ID == "" {
		return iam.Result{}, fmt.Errorf("%w: created user without id", ErrSCIM)
	}
	return iam.Result{Ref: created.ID, Audit: []string{"POST /Users -> " + created.ID}}, nil
}

// patchUser reads the user for its ETag, lets build decide the operations
// (none = no change) and sends the PATCH with If-Match; a 412 re-reads once.
func (c *Connector) patchUser(ctx context.Context, req iam.AccountRequest, build func(u *User) []Operation) (iam.Result, error) {
	path := "/Users/" + url.PathEscape(req.Ref)
	for attempt := 0; attempt < 2; attempt++ {
		var u User
		etag, err := c.do(ctx, http.MethodGet, path, "", nil, &u)
		if err != nil {
			return iam.Result{}, err
		}
		ops := build(&u)
		if len(ops) == 0 {
			return iam.Result{Ref: req.Ref, NoChange: true}, nil
		}
		desc := make([]string, len(ops))
		for i, o := range ops {
			desc[i] = o.Op + " " + o.Path
		}
		res := iam.Result{Ref: req.Ref, Audit: []string{"PATCH " + path + " " + strings.Join(desc, ", ")}}
		if req.DryRun {
			return res, nil
		}
		_, err = c.do(ctx, http.MethodPatch, path, etag, PatchOp{Schemas: []string{SchemaPatch}, Operations: ops}, nil)
		if statusOf(err) == http.StatusPreconditionFailed {
			continue // changed underneath us: read again
		}
		return res, err
	}
	return iam.Result{}, fmt.Errorf("%w: scim resource keeps changing (path=%s)", iam.ErrTransient, path)
}

// Update implements iam.Connector.
func (c *Connector) Update(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	return c.patchUser(ctx, req, func(u *User) []Operation {
		have := c.account(u, nil).Attributes
		val := map[string]any{}
		for k, scimPath := range map[string]string{"givenName": "name.givenName", "familyName": "name.familyName", "displayName": "displayName",
			"department": SchemaEnterprise + ":department"} {
			if want, ok := req.Attributes[k]; ok && want != have[k] {
				val[scimPath] = want
			}
		}
		var ops []Operation
		if len(val) > 0 {
			ops = append(ops, Operation{Op: "Replace", Value: val}) // Entra: no path, a value map
		}
		if want, ok := req.Attributes["email"]; ok && want != have["email"] {
			ops = append(ops, Operation{Op: "Replace", Path: `emails[type eq "work"].value`, Value: want})
		}
		return ops
	})
}

func (c *Connector) setActive(ctx context.Context, req iam.AccountRequest, active bool) (iam.Result, error) {
	return c.patchUser(ctx, req, func(u *User) []Operation {
		if (u.Active == nil || *u.Active) == active {
			return nil
		}
		return []Operation{{Op: "Replace", Path: "active", Value: active}}
	})
}

// Enable implements iam.Connector.
func (c *Connector) Enable(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	return c.setActive(ctx, req, true)
}

// Disable implements iam.Connector (PATCH active=false, as Entra does).
func (c *Connector) Disable(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	return c.setActive(ctx, req, false)
}

// Delete implements iam.Connector.
func (c *Connector) Delete(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	path := "/Users/" + url.PathEscape(req.Ref)
	if _, err := c.do(ctx, http.MethodGet, path, "", nil, nil); err != nil {
		if statusOf(err) == http.StatusNotFound {
			return iam.Result{Ref: req.Ref, NoChange: true}, nil
		}
		return iam.Result{}, err
	}
	res := iam.Result{Ref: req.Ref, Audit: []string{"DELETE " + path}}
	if req.DryRun {
		return res, nil
	}
	_, err := c.do(ctx, http.MethodDelete, path, "", nil, nil)
	if statusOf(err) == http.StatusNotFound {
		return iam.Result{Ref: req.Ref, NoChange: true}, nil
	}
	return res, err
}

// Grant implements iam.Connector: PATCH the group's members (creating the group when absent).
func (c *Connector) Grant(ctx context.Context, req iam.AccountRequest, permission string) (iam.Result, error) {
	g, err := c.findGroup(ctx, permission)
	if err != nil {
		return iam.Result{}, err
	}
	if g == nil {
		res := iam.Result{Ref: req.Ref, Audit: []string{"POST /Groups " + permission + " with member"}}
		if req.DryRun {
			return res, nil
		}
		_, err := c.do(ctx, http.MethodPost, "/Groups", "", Group{Schemas: []string{SchemaGroup}, DisplayName: permission, Members: []Ref{{Value: req.Ref}}}, nil)
		if statusOf(err) != http.StatusConflict {
			return res, err
		}
		// Created concurrently (another replica or an administrator): add
		// the member to the group that now exists.
		if g, err = c.findGroup(ctx, permission); err != nil {
			return iam.Result{}, err
		}
		if g == nil {
			return iam.Result{}, fmt.Errorf("scim: group conflicted on create but is not found (group=%s)", permission)
		}
	}
	for _, m := range g.Members {
		if m.Value == req.Ref {
			return iam.Result{Ref: req.Ref, NoChange: true}, nil
		}
	}
	res := iam.Result{Ref: req.Ref, Audit: []string{"PATCH /Groups/" + g.ID + " Add members"}}
	if req.DryRun {
		return res, nil
	}
	_, err = c.do(ctx, http.MethodPatch, "/Groups/"+url.PathEscape(g.ID), "", PatchOp{Schemas: []string{SchemaPatch},
		Operations: []Operation{{Op: "Add", Path: "members", Value: []Ref{{Value: req.Ref}}}}}, nil)
	return res, err
}

// Revoke implements iam.Connector: PATCH Remove members[value eq "id"].
func (c *Connector) Revoke(ctx context.Context, req iam.AccountRequest, permission string) (iam.Result, error) {
	g, err := c.findGroup(ctx, permission)
	if err != nil {
		return iam.Result{}, err
	}
	member := false
	if g != nil {
		for _, m := range g.Members {
			member = member || m.Value == req.Ref
		}
	}
	if !member {
		return iam.Result{Ref: req.Ref, NoChange: true}, nil
	}
	res := iam.Result{Ref: req.Ref, Audit: []string{"PATCH /Groups/" + g.ID + " Remove member"}}
	if req.DryRun {
		return res, nil
	}
	_, err = c.do(ctx, http.MethodPatch, "/Groups/"+url.PathEscape(g.ID), "", PatchOp{Schemas: []string{SchemaPatch},
		Operations: []Operation{{Op: "Remove", Path: "members[value eq \"" + req.Ref + "\"]"}}}, nil)
	return res, err
}
