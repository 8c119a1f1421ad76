package iam

import (
	"context"
	"time"
)

// Capabilities are what a target can do and how hard it may be driven.
type Capabilities struct {
	NoDelete    bool // accounts can only be disabled (HiX)
	NoDisable   bool // accounts cannot be disabled
	Concurrency int  // maximum concurrent calls; 0 means 4
}

// Account is one account in a target's IST, with the standard attribute
// names the engine uses (see StandardAttributes).
type Account struct {
	Target      string            `json:"target"`
	Ref         string            `json:"ref"` // the target's own reference (DN, SCIM id, HiX code, UZI)
	Key         string            `json:"key"` // correlation value read from the account
	Enabled     bool              `json:"enabled"`
	Permissions []string          `json:"permissions,omitempty"`
	Attributes  map[string]string `json:"attributes,omitempty"`
}

// AccountRequest is the input to every write operation of a connector.
type AccountRequest struct {
	Ref        string            // known account reference ("" on create)
	Key        string            // correlation value
	Person     *Person           // the person (nil for an unmanaged account fix)
	Attributes map[string]string // desired standard attributes
	Enabled    bool              // desired state on create
	Origin     Origin
	Reason     string
	// DryRun makes the connector run all its code, reads included, and
	// skip only the final write call.
	DryRun bool
}

// Result is what a write operation returns.
type Result struct {
	Ref        string   // account reference (set by CreateOrCorrelate)
	Correlated bool     // an existing account was linked instead of created
	NoChange   bool     // the target already was in the wanted state (idempotent)
	Audit      []string // human-readable lines for the audit log
}

// Connector is the one contract every target implements. Every write is
// idempotent: asking for a state the target already has succeeds with
// NoChange. Every write honours AccountRequest.DryRun right up to the final
// write call. An error wrapping ErrTransient is retried with backoff.
type Connector interface {
	Name() string
	Capabilities() Capabilities
	// ImportAll reads every account (with permissions) the target holds.
	ImportAll(ctx context.Context) ([]Account, error)
	// ListPermissions returns the grantable permissions.
	ListPermissions(ctx context.Context) ([]string, error)
	// CreateOrCorrelate links the account whose correlation value is
	// req.Key or creates one; more than one match returns ErrMultipleFound.
	CreateOrCorrelate(ctx context.Context, req AccountRequest) (Result, error)
	Update(ctx context.Context, req AccountRequest) (Result, error)
	Enable(ctx context.Context, req AccountRequest) (Result, error)
	Disable(ctx context.Context, req AccountRequest) (Result, error)
	Delete(ctx context.Context, req AccountRequest) (Result, error)
	Grant(ctx context.Context, req AccountRequest, permission string) (Result, error)
	Revoke(ctx context.Context, req AccountRequest, permission string) (Result, error)
}

// AccountLookup is an optional capability: read the accounts of one
// correlation value without importing everything (used for event-driven
// propagation of one person).
type AccountLookup interface {
	Lookup(ctx context.Context, key string) ([]Account, error)
}

// MandateAuthority is the gateway's mandate authority. The gateway store
// implements it; iam never imports the gateway.
type MandateAuthority interface {
	// RevokeMandatesOf revokes every unrevoked mandate given by the UZI number.
	RevokeMandatesOf(ctx context.Context, uzi, reason string) (int, error)
	// BlockActor stops the UZI number from acting as a mandated actor.
	BlockActor(ctx context.Context, uzi, reason string) error
	// UnblockActor lifts a block (a re-joiner).
	UnblockActor(ctx context.Context, uzi, reason string) error
}

// StandardAttributes are the attribute names the engine computes for a
// person's account; connectors map them to their own schema.
var StandardAttributes = []string{"givenName", "familyName", "displayName", "email", "employeeNumber", "uzi", "function", "department", "location", "agb", "big"}

// AttributesFor computes the standard attributes of a person's account from
// the person and the contract selected by the rules.
func AttributesFor(p *Person, c Contract) map[string]string {
	m := make(map[string]string, len(StandardAttributes))
	for _, k := range StandardAttributes {
		m[k], _ = attributeOf(p, &c, k)
	}
	return m
}

func attributeOf(p *Person, c *Contract, k string) (string, bool) {
	switch k {
	case "givenName":
		return p.GivenName, true
	case "familyName":
		return p.FamilyName, true
	case "displayName":
		return p.Name(), true
	case "email":
		return p.Email, true
	case "employeeNumber":
		return p.EmployeeNumber, true
	case "uzi":
		return p.UZI, true
	case "function":
		return c.Function, true
	case "department":
		return c.Department, true
	case "location":
		return c.Location, true
	case "agb":
		return p.AGB, true
	case "big":
		return p.BIG, true
	}
	return "", false
}

// AuditEvent is one audit line: who did what, why, with which origin.
type AuditEvent struct {
	At       time.Time `json:"at"`
	Actor    string    `json:"actor"` // admin user, "engine", "source:<name>"
	Action   string    `json:"action"`
	PersonID string    `json:"personId,omitempty"`
	Target   string    `json:"target,omitempty"`
	Ref      string    `json:"ref,omitempty"`
	Origin   string    `json:"origin,omitempty"`
	Detail   string    `json:"detail,omitempty"`
	DryRun   bool      `json:"dryRun,omitempty"`
	Outcome  string    `json:"outcome"` // ok, nochange, failed, blocked
}
