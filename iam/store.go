package iam

import (
	"context"
	"time"
)

// Store is iam's persistent state. Its SQLite and PostgreSQL implementations
// live in iam/store. Every method is atomic; implementations are safe for
// concurrent use.
type Store interface {
	// SourcePersons returns what one source contributed (tombstones included).
	SourcePersons(ctx context.Context, source string) ([]Person, error)
	// AllSourcePersons returns every contribution of every source.
	AllSourcePersons(ctx context.Context) ([]Person, error)
	// PersonContributions returns the contributions of one person ID.
	PersonContributions(ctx context.Context, id string) ([]Person, error)
	// SaveSourcePersons upserts persons and tombstones removed IDs in one transaction.
	SaveSourcePersons(ctx context.Context, source string, upsert []Person, removed []string) error
	// SetBlocked records (or with no fields, clears) a person blocked by missing required fields.
	SetBlocked(ctx context.Context, bp BlockedPerson) error
	Blocked(ctx context.Context) ([]BlockedPerson, error)

	SavePendingImport(ctx context.Context, pi PendingImport) error
	PendingImport(ctx context.Context, id string) (PendingImport, error)
	PendingImports(ctx context.Context) ([]PendingImport, error)
	DeletePendingImport(ctx context.Context, id string) error

	AddGrant(ctx context.Context, g Grant) error
	Grants(ctx context.Context) ([]Grant, error)
	RevokeGrant(ctx context.Context, id, by string, at time.Time) error
	AddExclusion(ctx context.Context, x Exclusion) error
	Exclusions(ctx context.Context) ([]Exclusion, error)

	// SetDisabledSince records when an account was disabled; the zero time clears it.
	SetDisabledSince(ctx context.Context, target, ref string, at time.Time) error
	DisabledSince(ctx context.Context) (map[string]time.Time, error)
	// SetFailed records (failed=true) or clears a failed action ID.
	SetFailed(ctx context.Context, actionID string, failed bool, msg string) error
	Failed(ctx context.Context) (map[string]bool, error)

	SaveDeviations(ctx context.Context, ds []Deviation) error
	Deviations(ctx context.Context) ([]Deviation, error)
	AddResolution(ctx context.Context, r Resolution) error
	Resolutions(ctx context.Context) (map[string]Resolution, error)

	SaveCampaign(ctx context.Context, c Campaign) error
	Campaign(ctx context.Context, id string) (Campaign, error)
	Campaigns(ctx context.Context) ([]Campaign, error)

	Audit(ctx context.Context, evs ...AuditEvent) error
	AuditLog(ctx context.Context, limit int) ([]AuditEvent, error)

	Close() error
}

// BlockedPerson is a person whose source record was not applied because a
// required field is empty. Only that person is held back.
type BlockedPerson struct {
	Source  string    `json:"source"`
	ID      string    `json:"id"`
	Missing []string  `json:"missing"`
	At      time.Time `json:"at"`
}

// PendingImport is a source import held back by a threshold until an
// administrator approves it.
type PendingImport struct {
	ID      string    `json:"id"`
	Source  string    `json:"source"`
	At      time.Time `json:"at"`
	Reason  string    `json:"reason"`
	Removed []string  `json:"removed"`
	Persons []Person  `json:"persons"`
}
