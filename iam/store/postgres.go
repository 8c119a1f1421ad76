package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/aortagw/aortagw/iam"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Postgres is the PostgreSQL-backed store for deployments with several
// replicas. It uses a pool of up to 8 connections (pgx through
// database/sql); every method is one statement or one transaction at READ
// COMMITTED, and the upserts make concurrent writers safe.
type Postgres struct {
	sqlStore
}

// OpenPostgres connects to the database at url (postgres://...), checks the
// connection and applies the migrations under an advisory lock.
func OpenPostgres(ctx context.Context, url string) (*Postgres, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("%w: postgres dsn (dsn=%s)", iam.ErrInvalid, Redact(url))
	}
	db := sql.OpenDB(stdlib.GetConnector(*cfg))
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("iam/store: connect postgres (dsn=%s): %w", Redact(url), err)
	}
	lock := func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, advisoryLockKey)
		return err
	}
	if err := migrate(ctx, db, "postgres", lock, time.Now); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("%w (dsn=%s)", err, Redact(url))
	}
	return &Postgres{sqlStore{db: db, backend: "postgres"}}, nil
}
