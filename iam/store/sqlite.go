package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/aortagw/aortagw/iam"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// SQLite is the SQLite-backed store. The database runs in WAL mode with
// synchronous=FULL and one connection per process, so what a method reported
// as done survives a crash; several processes on one host may share the file
// (busy_timeout 10 s).
type SQLite struct {
	sqlStore
}

// Open opens (and creates) the SQLite database file at path ("sqlite:" prefix
// allowed) and applies the migrations.
func Open(ctx context.Context, path string) (*SQLite, error) {
	path = strings.TrimPrefix(path, "sqlite:")
	if path == "" {
		return nil, fmt.Errorf("%w: empty store path", iam.ErrInvalid)
	}
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("iam/store: open (path=%s): %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer; SQLite serialises writes anyway
	// A write statement first takes the database's write lock, so a second
	// process migrating at the same moment waits (busy_timeout) and then
	// sees the first one's schema_migrations rows.
	lock := func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM schema_migrations WHERE version < 0`)
		return err
	}
	if err := migrate(ctx, db, "sqlite", lock, time.Now); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("%w (path=%s)", err, path)
	}
	return &SQLite{sqlStore{db: db, backend: "sqlite"}}, nil
}
