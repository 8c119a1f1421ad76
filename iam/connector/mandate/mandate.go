// Package mandate is the target connector for the gateway's mandate
// authority (iam.MandateAuthority, implemented by the gateway store).
//
// An "account" here is a caregiver's standing as mandate giver and
// mandated actor, keyed by UZI number. Disable revokes every mandate the
// person gave and blocks them as actor (the leaver fast path); Enable lifts
// a block that iam itself placed (a re-joiner); Create only registers the
// actor: it never lifts a block somebody else placed. There is nothing to
// delete (NoDelete) and there are no permissions. Because the authority
// cannot list its actors, the connector keeps its IST in a Ledger (the iam
// store implements it).
//
// Safe for concurrent use when the Ledger and the authority are. Dry run
// reads the ledger and skips the authority calls and the ledger write.
package mandate

import (
	"context"
	"fmt"
	"time"

	"github.com/aortagw/aortagw/iam"
)

// Actor is what the ledger remembers of one UZI number.
type Actor struct {
	UZI       string    `json:"uzi"`
	PersonID  string    `json:"personId"`
	Blocked   bool      `json:"blocked"`
	Revoked   int       `json:"revoked"` // mandates revoked at the last block
	UpdatedAt time.Time `json:"updatedAt"`
}

// Ledger persists the actors the connector manages.
type Ledger interface {
	MandateActors(ctx context.Context) ([]Actor, error)
	MandateActor(ctx context.Context, uzi string) (Actor, bool, error)
	PutMandateActor(ctx context.Context, a Actor) error
}

// Connector is the mandate-authority target.
type Connector struct {
	name   string
	auth   iam.MandateAuthority
	ledger Ledger
	now    func() time.Time
}

var (
	_ iam.Connector     = (*Connector)(nil)
	_ iam.AccountLookup = (*Connector)(nil)
)

// New builds the connector.
func New(name string, auth iam.MandateAuthority, ledger Ledger, now func() time.Time) (*Connector, error) {
	if name == "" || auth == nil || ledger == nil || now == nil {
		return nil, fmt.Errorf("%w: mandate connector needs name, authority, ledger and clock", iam.ErrInvalid)
	}
	return &Connector{name: name, auth: auth, ledger: ledger, now: now}, nil
}

// Name implements iam.Connector.
func (c *Connector) Name() string { return c.name }

// Capabilities implements iam.Connector.
func (c *Connector) Capabilities() iam.Capabilities {
	return iam.Capabilities{NoDelete: true, Concurrency: 8}
}

func (c *Connector) account(a Actor) iam.Account {
	return iam.Account{Target: c.name, Ref: a.UZI, Key: a.UZI, Enabled: !a.Blocked}
}

// ImportAll implements iam.Connector.
func (c *Connector) ImportAll(ctx context.Context) ([]iam.Account, error) {
	as, err := c.ledger.MandateActors(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]iam.Account, len(as))
	for i, a := range as {
		out[i] = c.account(a)
	}
	return out, nil
}

// Lookup implements iam.AccountLookup.
func (c *Connector) Lookup(ctx context.Context, key string) ([]iam.Account, error) {
	a, ok, err := c.ledger.MandateActor(ctx, key)
	if err != nil || !ok {
		return nil, err
	}
	return []iam.Account{c.account(a)}, nil
}

// ListPermissions implements iam.Connector: none.
func (c *Connector) ListPermissions(context.Context) ([]string, error) { return nil, nil }

func uziOf(req iam.AccountRequest) (string, error) {
	u := req.Ref
	if u == "" {
		u = req.Key
	}
	if len(u) != 9 {
		return "", fmt.Errorf("%w: mandate target needs a 9-digit UZI number (value=%q)", iam.ErrInvalid, u)
	}
	for _, r := range u {
		if r < '0' || r > '9' {
			return "", fmt.Errorf("%w: mandate target needs a 9-digit UZI number (value=%q)", iam.ErrInvalid, u)
		}
	}
	return u, nil
}

func personID(req iam.AccountRequest) string {
	if req.Person != nil {
		return req.Person.ID
	}
	return ""
}

// CreateOrCorrelate implements iam.Connector: registers the actor.
func (c *Connector) CreateOrCorrelate(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	uzi, err := uziOf(req)
	if err != nil {
		return iam.Result{}, err
	}
	_, ok, err := c.ledger.MandateActor(ctx, uzi)
	if err != nil {
		return iam.Result{}, err
	}
	if ok {
		return iam.Result{Ref: uzi, Correlated: true}, nil
	}
	res := iam.Result{Ref: uzi, Audit: []string{"registered actor " + uzi}}
	if req.DryRun {
		return res, nil
	}
	return res, c.ledger.PutMandateActor(ctx, Actor{UZI: uzi, PersonID: personID(req), UpdatedAt: c.now()})
}

// Update implements iam.Connector: nothing to update.
func (c *Connector) Update(_ context.Context, req iam.AccountRequest) (iam.Result, error) {
	return iam.Result{Ref: req.Ref, NoChange: true}, nil
}

// Disable implements iam.Connector: revoke every mandate the person gave and
// block them as actor. Both calls are idempotent on the gateway side, so a
// retry after a partial failure is safe.
func (c *Connector) Disable(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	uzi, err := uziOf(req)
	if err != nil {
		return iam.Result{}, err
	}
	a, ok, err := c.ledger.MandateActor(ctx, uzi)
	if err != nil {
		return iam.Result{}, err
	}
	if ok && a.Blocked {
		return iam.Result{Ref: uzi, NoChange: true}, nil
	}
	reason := "iam: " + req.Reason
	res := iam.Result{Ref: uzi, Audit: []string{"revoke mandates and block actor " + uzi}}
	if req.DryRun {
		return res, nil
	}
	n, err := c.auth.RevokeMandatesOf(ctx, uzi, reason)
	if err != nil {
		return iam.Result{}, fmt.Errorf("%w: revoke mandates (uzi=%s): %v", iam.ErrTransient, uzi, err)
	}
	if err := c.auth.BlockActor(ctx, uzi, reason); err != nil {
		return iam.Result{}, fmt.Errorf("%w: block actor (uzi=%s): %v", iam.ErrTransient, uzi, err)
	}
	res.Audit = []string{fmt.Sprintf("revoked %d mandates, blocked actor %s", n, uzi)}
	if !ok {
		a = Actor{UZI: uzi, PersonID: personID(req)}
	}
	a.Blocked, a.Revoked, a.UpdatedAt = true, n, c.now()
	return res, c.ledger.PutMandateActor(ctx, a)
}

// Enable implements iam.Connector: lift the block iam placed.
func (c *Connector) Enable(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	uzi, err := uziOf(req)
	if err != nil {
		return iam.Result{}, err
	}
	a, ok, err := c.ledger.MandateActor(ctx, uzi)
	if err != nil {
		return iam.Result{}, err
	}
	if ok && !a.Blocked {
		return iam.Result{Ref: uzi, NoChange: true}, nil
	}
	res := iam.Result{Ref: uzi, Audit: []string{"unblock actor " + uzi}}
	if req.DryRun {
		return res, nil
	}
	if err := c.auth.UnblockActor(ctx, uzi, "iam: "+req.Reason); err != nil {
		return iam.Result{}, fmt.Errorf("%w: unblock actor (uzi=%s): %v", iam.ErrTransient, uzi, err)
	}
	if !ok {
		a = Actor{UZI: uzi, PersonID: personID(req)}
	}
	a.Blocked, a.UpdatedAt = false, c.now()
	return res, c.ledger.PutMandateActor(ctx, a)
}

// Delete implements iam.Connector: not supported (the block stays).
func (c *Connector) Delete(context.Context, iam.AccountRequest) (iam.Result, error) {
	return iam.Result{}, fmt.Errorf("%w: delete (target=%s)", iam.ErrUnsupported, c.name)
}

// Grant implements iam.Connector: the authority has no permissions.
func (c *Connector) Grant(context.Context, iam.AccountRequest, string) (iam.Result, error) {
	return iam.Result{}, fmt.Errorf("%w: grant (target=%s)", iam.ErrUnsupported, c.name)
}

// Revoke implements iam.Connector: the authority has no permissions.
func (c *Connector) Revoke(context.Context, iam.AccountRequest, string) (iam.Result, error) {
	return iam.Result{}, fmt.Errorf("%w: revoke (target=%s)", iam.ErrUnsupported, c.name)
}
