package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations
var migrationFS embed.FS

// migration is one numbered schema change.
type migration struct {
	version int
	name    string
	sql     string
	sum     string
}

// advisoryLockKey is the PostgreSQL advisory lock iam's migrations run under
// ("iamstore" in ASCII).
const advisoryLockKey int64 = 0x69616d73746f7265

// migrations returns the embedded migrations of a backend in version order.
func migrations(backend string) ([]migration, error) {
	dir := path.Join("migrations", backend)
	ents, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, fmt.Errorf("iam/store: migrations (backend=%s): %w", backend, err)
	}
	var out []migration
	for _, e := range ents {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("iam/store: bad migration name (file=%s)", name)
		}
		b, err := migrationFS.ReadFile(path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("iam/store: read migration (file=%s): %w", name, err)
		}
		h := sha256.Sum256(b)
		out = append(out, migration{version: v, name: strings.TrimSuffix(name, ".sql"), sql: string(b), sum: hex.EncodeToString(h[:])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := range out {
		if out[i].version != i+1 {
			return nil, fmt.Errorf("iam/store: migrations not numbered 1..n (backend=%s file=%s)", backend, out[i].name)
		}
	}
	return out, nil
}

// migrate applies the missing migrations in one transaction. lock runs first
// inside the transaction and must make concurrent migrators wait.
func migrate(ctx context.Context, db *sql.DB, backend string, lock func(context.Context, *sql.Tx) error, now func() time.Time) error {
	ms, err := migrations(backend)
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, sha256 TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		// two PostgreSQL replicas may race on the very first CREATE TABLE IF
		// NOT EXISTS (a unique violation on pg_type); the locked read below
		// is what counts, so retry once.
		if _, err2 := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, sha256 TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err2 != nil {
			return fmt.Errorf("iam/store: create schema_migrations (backend=%s): %w", backend, err)
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("iam/store: begin migration: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := lock(ctx, tx); err != nil {
		return fmt.Errorf("iam/store: migration lock (backend=%s): %w", backend, err)
	}
	applied := map[int]string{}
	rows, err := tx.QueryContext(ctx, `SELECT version, sha256 FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("iam/store: read schema_migrations: %w", err)
	}
	for rows.Next() {
		var v int
		var sum string
		if err := rows.Scan(&v, &sum); err != nil {
			rows.Close()
			return fmt.Errorf("iam/store: scan schema_migrations: %w", err)
		}
		applied[v] = sum
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("iam/store: rows schema_migrations: %w", err)
	}
	for v := range applied {
		if v > len(ms) {
			return fmt.Errorf("%w: database has migration %d, this binary knows up to %d (backend=%s); run a newer aortagw", ErrSchema, v, len(ms), backend)
		}
	}
	for _, m := range ms {
		if sum, ok := applied[m.version]; ok {
			if sum != m.sum {
				return fmt.Errorf("%w: applied migration %s differs from this binary's (backend=%s)", ErrSchema, m.name, backend)
			}
			continue
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("iam/store: apply migration (backend=%s migration=%s): %w", backend, m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, sha256, applied_at) VALUES ($1, $2, $3, $4)`,
			m.version, m.name, m.sum, now().UTC().UnixMicro()); err != nil {
			return fmt.Errorf("iam/store: record migration (backend=%s migration=%s): %w", backend, m.name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("iam/store: commit migrations (backend=%s): %w", backend, err)
	}
	return nil
}

// SchemaVersion returns the highest applied migration.
func (s *sqlStore) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, wrap(err, "schema version")
	}
	return int(v.Int64), nil
}
