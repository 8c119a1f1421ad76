// Package authoritytest is a real, SQL-backed mandate authority for iam's
// tests and benchmarks, used while (or where) the gateway store is not at
// hand: mandates and blocked actors in SQLite tables, with the semantics the
// gateway store documents (RevokeMandatesOf revokes the giver's unrevoked
// mandates; a blocked actor finds no mandate). It is not an in-memory fake:
// every call is a committed SQL transaction that a second connection sees.
package authoritytest

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	_ "modernc.org/sqlite" // driver "sqlite"
)

// Authority implements iam.MandateAuthority on SQLite.
type Authority struct {
	db  *sql.DB
	now func() time.Time
}

// Open creates the tables in the database file at path.
func Open(ctx context.Context, path string, now func() time.Time) (*Authority, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	_, err = db.ExecContext(ctx, `
CREATE TABLE IF NOT EXISTS mandates (id TEXT PRIMARY KEY, giver TEXT NOT NULL, mandated TEXT NOT NULL, revoked_at INTEGER, reason TEXT);
CREATE INDEX IF NOT EXISTS mandates_giver ON mandates(giver);
CREATE TABLE IF NOT EXISTS blocked_actors (uzi TEXT PRIMARY KEY, reason TEXT NOT NULL, at INTEGER NOT NULL);`)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return &Authority{db: db, now: now}, nil
}

// Close closes the database.
func (a *Authority) Close() error { return a.db.Close() }

// AddMandate stores an unrevoked mandate from giver to mandated.
func (a *Authority) AddMandate(ctx context.Context, id, giver, mandated string) error {
	_, err := a.db.ExecContext(ctx, `INSERT INTO mandates (id, giver, mandated) VALUES ($1, $2, $3)`, id, giver, mandated)
	return err
}

// RevokeMandatesOf implements iam.MandateAuthority.
func (a *Authority) RevokeMandatesOf(ctx context.Context, uzi, reason string) (int, error) {
	res, err := a.db.ExecContext(ctx, `UPDATE mandates SET revoked_at = $1, reason = $2 WHERE giver = $3 AND revoked_at IS NULL`,
		a.now().UnixMicro(), reason, uzi)
	if err != nil {
		return 0, fmt.Errorf("authoritytest: revoke: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// BlockActor implements iam.MandateAuthority.
func (a *Authority) BlockActor(ctx context.Context, uzi, reason string) error {
	_, err := a.db.ExecContext(ctx, `INSERT INTO blocked_actors (uzi, reason, at) VALUES ($1, $2, $3) ON CONFLICT (uzi) DO NOTHING`, uzi, reason, a.now().UnixMicro())
	return err
}

// UnblockActor implements iam.MandateAuthority.
func (a *Authority) UnblockActor(ctx context.Context, uzi, reason string) error {
	_, err := a.db.ExecContext(ctx, `DELETE FROM blocked_actors WHERE uzi = $1`, uzi)
	return err
}

// ValidMandates counts the mandates the gateway would still honour for a
// giver: unrevoked, and neither giver nor mandated actor blocked.
func (a *Authority) ValidMandates(ctx context.Context, giver string) (int, error) {
	var n int
	err := a.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM mandates m WHERE m.giver = $1 AND m.revoked_at IS NULL
		AND NOT EXISTS (SELECT 1 FROM blocked_actors b WHERE b.uzi = m.giver OR b.uzi = m.mandated)`, giver).Scan(&n)
	return n, err
}

// Blocked reports whether the UZI number is blocked.
func (a *Authority) Blocked(ctx context.Context, uzi string) (bool, error) {
	var n int
	err := a.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM blocked_actors WHERE uzi = $1`, uzi).Scan(&n)
	return n > 0, err
}
