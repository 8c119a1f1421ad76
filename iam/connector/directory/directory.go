// Package directory is the national-directory (HSA-like) deregistration
// target and its strict simulator.
//
// A registration is a practitioner role keyed by UZI number. A leaver is
// deregistered (the role is ended, never deleted: NoDelete); a re-joiner
// is registered again. Each active registration must be confirmed every
// quarter: Due lists the registrations whose last confirmation is older
// than ConfirmEvery (default 91 days), and ConfirmEmployment (called by
// the engine when a manager confirms an employment in an attestation
// campaign) records a fresh confirmation.
//
// The API is JSON over HTTP: GET/PUT /roles/{uzi}, GET /roles,
// POST /roles/{uzi}/end, POST /roles/{uzi}/confirm. Safe for concurrent
// use. Dry run performs the GET and skips the write.
package directory

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aortagw/aortagw/iam"
)

// ErrDirectory is returned for an unexpected directory answer.
var ErrDirectory = errors.New("iam/directory: unexpected response")

// Role is a practitioner role registration.
type Role struct {
	UZI          string    `json:"uzi"`
	Name         string    `json:"name"`
	Function     string    `json:"function"`
	Organisation string    `json:"organisation"`
	Active       bool      `json:"active"`
	ConfirmedAt  time.Time `json:"confirmedAt,omitzero"`
	EndedAt      time.Time `json:"endedAt,omitzero"`
}

// Config configures the connector.
type Config struct {
	Name         string
	BaseURL      string
	Organisation string // URA of the care provider
	HTTPClient   *http.Client
	ConfirmEvery time.Duration
}

// Connector is the directory target.
type Connector struct{ cfg Config }

var (
	_ iam.Connector     = (*Connector)(nil)
	_ iam.AccountLookup = (*Connector)(nil)
	_ iam.DueReporter   = (*Connector)(nil)
	_ iam.Confirmer     = (*Connector)(nil)
)

// New validates the configuration.
func New(cfg Config) (*Connector, error) {
	if cfg.Name == "" || cfg.BaseURL == "" || cfg.Organisation == "" {
		return nil, fmt.Errorf("%w: directory connector needs name, baseURL and organisation", iam.ErrInvalid)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.ConfirmEvery <= 0 {
		cfg.ConfirmEvery = 91 * 24 * time.Hour
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	return &Connector{cfg: cfg}, nil
}

// Name implements iam.Connector.
func (c *Connector) Name() string { return c.cfg.Name }

// Capabilities implements iam.Connector.
func (c *Connector) Capabilities() iam.Capabilities {
	return iam.Capabilities{NoDelete: true, Concurrency: 4}
}

func (c *Connector) do(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.cfg.BaseURL+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: directory %s %s: %v", iam.ErrTransient, method, path, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode == http.StatusNotFound {
		return resp.StatusCode, nil
	}
	if resp.StatusCode >= 500 {
		return resp.StatusCode, fmt.Errorf("%w: directory %s %s (status=%d)", iam.ErrTransient, method, path, resp.StatusCode)
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%w: %s %s (status=%d body=%q)", ErrDirectory, method, path, resp.StatusCode, string(rb))
	}
	if out != nil && len(rb) > 0 {
		if err := json.Unmarshal(rb, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%w: decode: %v", ErrDirectory, err)
		}
	}
	return resp.StatusCode, nil
}

func (c *Connector) account(r *Role) iam.Account {
	return iam.Account{Target: c.cfg.Name, Ref: r.UZI, Key: r.UZI, Enabled: r.Active}
}

// ImportAll implements iam.Connector.
func (c *Connector) ImportAll(ctx context.Context) ([]iam.Account, error) {
	var rs []Role
	if _, err := c.do(ctx, http.MethodGet, "/roles", nil, &rs); err != nil {
		return nil, err
	}
	out := make([]iam.Account, len(rs))
	for i := range rs {
		out[i] = c.account(&rs[i])
	}
	return out, nil
}

func (c *Connector) get(ctx context.Context, uzi string) (*Role, error) {
	var r Role
	st, err := c.do(ctx, http.MethodGet, "/roles/"+url.PathEscape(uzi), nil, &r)
	if err != nil || st == http.StatusNotFound {
		return nil, err
	}
	return &r, nil
}

// Lookup implements iam.AccountLookup.
func (c *Connector) Lookup(ctx context.Context, key string) ([]iam.Account, error) {
	r, err := c.get(ctx, key)
	if err != nil || r == nil {
		return nil, err
	}
	return []iam.Account{c.account(r)}, nil
}

// ListPermissions implements iam.Connector: none.
func (c *Connector) ListPermissions(context.Context) ([]string, error) { return nil, nil }

func (c *Connector) register(ctx context.Context, req iam.AccountRequest, uzi string) (iam.Result, error) {
	r := Role{UZI: uzi, Name: req.Attributes["displayName"], Function: req.Attributes["function"], Organisation: c.cfg.Organisation, Active: true}
	res := iam.Result{Ref: uzi, Audit: []string{"register " + uzi}}
	if req.DryRun {
		return res, nil
	}
	_, err := c.do(ctx, http.MethodPut, "/roles/"+url.PathEscape(uzi), r, nil)
	return res, err
}

// CreateOrCorrelate implements iam.Connector.
func (c *Connector) CreateOrCorrelate(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	r, err := c.get(ctx, req.Key)
	if err != nil {
		return iam.Result{}, err
	}
	if r != nil {
		return iam.Result{Ref: r.UZI, Correlated: true}, nil
	}
	return c.register(ctx, req, req.Key)
}

// Update implements iam.Connector: nothing the engine manages.
func (c *Connector) Update(_ context.Context, req iam.AccountRequest) (iam.Result, error) {
	return iam.Result{Ref: req.Ref, NoChange: true}, nil
}

// Enable implements iam.Connector: register again.
func (c *Connector) Enable(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	r, err := c.get(ctx, req.Ref)
	if err != nil {
		return iam.Result{}, err
	}
	if r != nil && r.Active {
		return iam.Result{Ref: req.Ref, NoChange: true}, nil
	}
	return c.register(ctx, req, req.Ref)
}

// Disable implements iam.Connector: deregister (end the role).
func (c *Connector) Disable(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	r, err := c.get(ctx, req.Ref)
	if err != nil {
		return iam.Result{}, err
	}
	if r == nil || !r.Active {
		return iam.Result{Ref: req.Ref, NoChange: true}, nil
	}
	res := iam.Result{Ref: req.Ref, Audit: []string{"deregister " + req.Ref}}
	if req.DryRun {
		return res, nil
	}
	_, err = c.do(ctx, http.MethodPost, "/roles/"+url.PathEscape(req.Ref)+"/end", map[string]string{"reason": req.Reason}, nil)
	return res, err
}

// Delete implements iam.Connector: not supported, the ended role stays.
func (c *Connector) Delete(context.Context, iam.AccountRequest) (iam.Result, error) {
	return iam.Result{}, fmt.Errorf("%w: delete (target=%s)", iam.ErrUnsupported, c.cfg.Name)
}

// Grant implements iam.Connector: not supported.
func (c *Connector) Grant(context.Context, iam.AccountRequest, string) (iam.Result, error) {
	return iam.Result{}, fmt.Errorf("%w: grant (target=%s)", iam.ErrUnsupported, c.cfg.Name)
}

// Revoke implements iam.Connector: not supported.
func (c *Connector) Revoke(context.Context, iam.AccountRequest, string) (iam.Result, error) {
	return iam.Result{}, fmt.Errorf("%w: revoke (target=%s)", iam.ErrUnsupported, c.cfg.Name)
}

// Due implements iam.DueReporter: active registrations whose confirmation
// is older than ConfirmEvery.
func (c *Connector) Due(ctx context.Context, now time.Time) ([]iam.DueItem, error) {
	var rs []Role
	if _, err := c.do(ctx, http.MethodGet, "/roles", nil, &rs); err != nil {
		return nil, err
	}
	var out []iam.DueItem
	for _, r := range rs {
		due := r.ConfirmedAt.Add(c.cfg.ConfirmEvery)
		if r.Active && !now.Before(due) {
			out = append(out, iam.DueItem{Target: c.cfg.Name, Ref: r.UZI, DueAt: due, What: "quarterly confirmation of employment for " + r.Name})
		}
	}
	return out, nil
}

// ConfirmEmployment implements iam.Confirmer.
func (c *Connector) ConfirmEmployment(ctx context.Context, key string) error {
	st, err := c.do(ctx, http.MethodPost, "/roles/"+url.PathEscape(key)+"/confirm", map[string]string{}, nil)
	if err == nil && st == http.StatusNotFound {
		return nil // not registered here: nothing to confirm
	}
	return err
}
