// Package store is iam's persistent state: source contributions of persons,
// blocked persons, pending imports, manual grants, exclusions, account
// bookkeeping (disabled-since, failed actions), the last deviation report,
// resolutions, attestation campaigns, the mandate connector's ledger, leases
// on in-flight actions and the audit log.
//
// Two backends implement iam.Store and mandate.Ledger with the same SQL:
// SQLite (modernc.org/sqlite, pure Go; one process or several on one host)
// and PostgreSQL (jackc/pgx/v5; several replicas). OpenDSN picks one by DSN:
// "sqlite:PATH" (or a bare path) and "postgres://..." / "postgresql://...".
//
// Records are stored as JSON bodies keyed by their natural keys; every
// method is one statement or one transaction, and nothing is cached in
// memory, so replicas sharing one database see each other's writes at once.
// A Store is safe for concurrent use.
//
// Schema changes are embedded, numbered migrations (migrations/<backend>/
// NNNN_name.sql) recorded with their SHA-256 in schema_migrations. Open
// applies the missing ones in one transaction; on PostgreSQL under a
// transaction-scoped advisory lock, on SQLite under the database's write
// lock, so replicas starting together apply each migration exactly once. A
// database that has a migration this binary does not know (a newer release
// ran) or whose applied migration text changed is refused (ErrSchema).
//
// Replicas applying the same plan: ClaimAction takes a lease on an action's
// idempotency key (iam.Action.ID) in the action_claims table, whose primary
// key makes the claim atomic on both backends. The holder releases it when
// the connector call returned; a crashed holder's lease expires.
package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/iam/connector/mandate"
)

var (
	// ErrSchema reports a database whose migrations do not match this binary.
	ErrSchema = errors.New("iam/store: schema mismatch")
	// ErrClaimed reports an action that another owner (replica) is applying.
	ErrClaimed = errors.New("iam/store: action claimed by another replica")
)

// ActionClaimer leases in-flight actions so that two replicas never apply the
// same action at the same moment.
type ActionClaimer interface {
	// ClaimAction takes the lease on action for owner until until. It
	// returns false (and no error) while another owner holds an unexpired
	// lease; the same owner may renew its own lease.
	ClaimAction(ctx context.Context, action, owner string, now, until time.Time) (bool, error)
	// ReleaseAction drops owner's lease on action (a no-op when it holds none).
	ReleaseAction(ctx context.Context, action, owner string) error
}

// Store is what both backends offer.
type Store interface {
	iam.Store
	mandate.Ledger
	ActionClaimer
	// Backend is "sqlite" or "postgres".
	Backend() string
}

var (
	_ Store = (*SQLite)(nil)
	_ Store = (*Postgres)(nil)
)

// OpenDSN opens the backend the DSN names and applies the migrations:
// "sqlite:PATH" or a bare file path for SQLite, "postgres://..." or
// "postgresql://..." for PostgreSQL. Errors never contain a password.
func OpenDSN(ctx context.Context, dsn string) (Store, error) {
	switch {
	case dsn == "":
		return nil, fmt.Errorf("%w: empty store dsn", iam.ErrInvalid)
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return OpenPostgres(ctx, dsn)
	case strings.HasPrefix(dsn, "sqlite:"):
		return Open(ctx, strings.TrimPrefix(dsn, "sqlite:"))
	case strings.Contains(dsn, "://"):
		return nil, fmt.Errorf("%w: unknown store scheme (dsn=%s)", iam.ErrInvalid, Redact(dsn))
	default:
		return Open(ctx, dsn)
	}
}

// Redact returns the DSN with any password replaced, for logs and errors.
func Redact(dsn string) string {
	if !strings.Contains(dsn, "://") {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "<unparsable dsn>"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// ClaimAction implements ActionClaimer. The upsert only overwrites an
// expired lease or the owner's own; the primary key serialises concurrent
// claims (PostgreSQL: the second insert waits for the first to commit and
// then re-evaluates the condition; SQLite: one writer at a time).
func (s *sqlStore) ClaimAction(ctx context.Context, action, owner string, now, until time.Time) (bool, error) {
	if action == "" || owner == "" {
		return false, fmt.Errorf("%w: claim needs action and owner", iam.ErrInvalid)
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO action_claims (action, owner, until) VALUES ($1, $2, $3)
		ON CONFLICT (action) DO UPDATE SET owner = excluded.owner, until = excluded.until
		WHERE action_claims.until <= $4 OR action_claims.owner = excluded.owner`,
		action, owner, until.UTC().UnixMicro(), now.UTC().UnixMicro())
	if err != nil {
		return false, wrap(err, fmt.Sprintf("claim action (action=%s)", action))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, wrap(err, "claim rows")
	}
	return n == 1, nil
}

// ReleaseAction implements ActionClaimer.
func (s *sqlStore) ReleaseAction(ctx context.Context, action, owner string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM action_claims WHERE action = $1 AND owner = $2`, action, owner)
	return wrap(err, fmt.Sprintf("release action (action=%s)", action))
}
