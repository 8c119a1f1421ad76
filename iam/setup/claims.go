package setup

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/iam/store"
)

// claimTTL bounds a lease that its holder never released (a crashed
// replica): after it another replica may apply the action.
const claimTTL = 2 * time.Minute

// replicaID names this process among the replicas sharing one store.
func replicaID() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), uuid.NewString())
}

// claimed wraps a connector so that every real write (not a dry run) first
// claims the action's idempotency key in the shared store. When another
// replica holds the claim the write is not made and an error wrapping
// iam.ErrTransient and store.ErrClaimed is returned: the engine backs off
// and retries, and by then the other replica has applied the action, so the
// (idempotent) connector reports NoChange. Reads pass through unchanged.
type claimed struct {
	iam.Connector
	claims store.ActionClaimer
	owner  string
	now    func() time.Time
}

// guard wraps c, keeping the optional capabilities (AccountLookup,
// DueReporter, Confirmer) that the engine discovers by type assertion.
func guard(c iam.Connector, claims store.ActionClaimer, owner string, now func() time.Time) iam.Connector {
	g := &claimed{Connector: c, claims: claims, owner: owner, now: now}
	lu, isLU := c.(iam.AccountLookup)
	dr, isDR := c.(iam.DueReporter)
	cf, isCF := c.(iam.Confirmer)
	switch {
	case isLU && isDR && isCF:
		return struct {
			*claimed
			iam.AccountLookup
			iam.DueReporter
			iam.Confirmer
		}{g, lu, dr, cf}
	case isLU && isDR:
		return struct {
			*claimed
			iam.AccountLookup
			iam.DueReporter
		}{g, lu, dr}
	case isLU && isCF:
		return struct {
			*claimed
			iam.AccountLookup
			iam.Confirmer
		}{g, lu, cf}
	case isDR && isCF:
		return struct {
			*claimed
			iam.DueReporter
			iam.Confirmer
		}{g, dr, cf}
	case isLU:
		return struct {
			*claimed
			iam.AccountLookup
		}{g, lu}
	case isDR:
		return struct {
			*claimed
			iam.DueReporter
		}{g, dr}
	case isCF:
		return struct {
			*claimed
			iam.Confirmer
		}{g, cf}
	}
	return g
}

// actionKey is the action's idempotency key, shaped like iam.Action.ID.
func actionKey(t iam.ActionType, target string, req iam.AccountRequest, perm string) string {
	pid := ""
	if req.Person != nil {
		pid = req.Person.ID
	}
	return string(t) + "|" + target + "|" + pid + "|" + req.Ref + "|" + perm
}

func (g *claimed) write(ctx context.Context, t iam.ActionType, req iam.AccountRequest, perm string, call func() (iam.Result, error)) (iam.Result, error) {
	if req.DryRun {
		return call() // a preview writes nothing, not even a claim
	}
	key := actionKey(t, g.Name(), req, perm)
	now := g.now()
	ok, err := g.claims.ClaimAction(ctx, key, g.owner, now, now.Add(claimTTL))
	if err != nil {
		return iam.Result{}, fmt.Errorf("%w: %w", iam.ErrTransient, err)
	}
	if !ok {
		return iam.Result{}, fmt.Errorf("%w: %w (action=%s)", iam.ErrTransient, store.ErrClaimed, key)
	}
	defer func() {
		// release even when ctx ended: the lease must not outlive the call
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = g.claims.ReleaseAction(rctx, key, g.owner)
	}()
	return call()
}

// CreateOrCorrelate implements iam.Connector.
func (g *claimed) CreateOrCorrelate(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	return g.write(ctx, iam.ActCreate, req, "", func() (iam.Result, error) { return g.Connector.CreateOrCorrelate(ctx, req) })
}

// Update implements iam.Connector.
func (g *claimed) Update(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	return g.write(ctx, iam.ActUpdate, req, "", func() (iam.Result, error) { return g.Connector.Update(ctx, req) })
}

// Enable implements iam.Connector.
func (g *claimed) Enable(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	return g.write(ctx, iam.ActEnable, req, "", func() (iam.Result, error) { return g.Connector.Enable(ctx, req) })
}

// Disable implements iam.Connector.
func (g *claimed) Disable(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	return g.write(ctx, iam.ActDisable, req, "", func() (iam.Result, error) { return g.Connector.Disable(ctx, req) })
}

// Delete implements iam.Connector.
func (g *claimed) Delete(ctx context.Context, req iam.AccountRequest) (iam.Result, error) {
	return g.write(ctx, iam.ActDelete, req, "", func() (iam.Result, error) { return g.Connector.Delete(ctx, req) })
}

// Grant implements iam.Connector.
func (g *claimed) Grant(ctx context.Context, req iam.AccountRequest, permission string) (iam.Result, error) {
	return g.write(ctx, iam.ActGrant, req, permission, func() (iam.Result, error) { return g.Connector.Grant(ctx, req, permission) })
}

// Revoke implements iam.Connector.
func (g *claimed) Revoke(ctx context.Context, req iam.AccountRequest, permission string) (iam.Result, error) {
	return g.write(ctx, iam.ActRevoke, req, permission, func() (iam.Result, error) { return g.Connector.Revoke(ctx, req, permission) })
}
