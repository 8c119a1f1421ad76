package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// This file hides the two database drivers behind one tiny interface so that
// every store operation is written once. Both backends take PostgreSQL-style
// $N placeholders (modernc.org/sqlite binds "$N" by ordinal), and the SQL used
// is the common subset of SQLite >= 3.35 and PostgreSQL >= 12 (ON CONFLICT,
// RETURNING); the few statements that differ come from dialect.

// errNoRows is what queryRow's Scan returns when the query selected nothing,
// whatever the driver.
var errNoRows = errors.New("store: no rows")

// querier is what every operation runs its statements on: a pool or a
// transaction of either driver.
type querier interface {
	exec(ctx context.Context, q string, args ...any) (int64, error)
	queryRow(ctx context.Context, q string, args ...any) scanner
	query(ctx context.Context, q string, args ...any) (rowsIter, error)
}

type scanner interface{ Scan(dest ...any) error }

type rowsIter interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// conds builds a WHERE clause with numbered placeholders ($1, $2, ...), the
// form both drivers take.
type conds struct {
	where []string
	args  []any
}

// add appends a condition whose one %d is the placeholder number of v.
func (c *conds) add(cond string, v any) {
	c.where = append(c.where, fmt.Sprintf(cond, c.arg(v)))
}

// raw appends a condition without an argument.
func (c *conds) raw(cond string) { c.where = append(c.where, cond) }

// arg appends v and returns its placeholder number.
func (c *conds) arg(v any) int {
	c.args = append(c.args, v)
	return len(c.args)
}

// sql returns the conditions joined with AND ("1=1" when there are none).
func (c *conds) sql() string {
	if len(c.where) == 0 {
		return "1=1"
	}
	return strings.Join(c.where, " AND ")
}

// collect scans every row with scan, then closes rows.
func collect[T any](rows rowsIter, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// backend is one database: reads go to read, transactions to tx.
type backend interface {
	read() querier
	// tx runs fn in a read-write transaction and commits when fn returns nil.
	// On SQLite the transaction holds the database write lock from its first
	// statement (BEGIN IMMEDIATE), so fn sees no concurrent writer.
	tx(ctx context.Context, fn func(q querier) error) error
	// write runs one statement as its own (autocommit) transaction on the
	// write side: one round trip on PostgreSQL instead of three.
	write() querier
	// prepareHot prepares the per-message read statements (hotSQL) once.
	// It runs after the migrations: SQLite cannot prepare a statement on a
	// table that does not exist yet.
	prepareHot(ctx context.Context, sqls [numHotStmts]string) error
	// hotRow runs one of those statements on the read side, outside any
	// transaction: each is a single statement, so it reads one snapshot.
	hotRow(ctx context.Context, h hotStmt, args ...any) scanner
	close()
	dialect() dialect
}

type dialect int

const (
	dialectSQLite dialect = iota + 1
	dialectPostgres
)

func (d dialect) String() string {
	if d == dialectPostgres {
		return "postgres"
	}
	return "sqlite"
}

// ts converts a time to the column representation: INTEGER unix microseconds
// on SQLite, timestamptz on PostgreSQL (also microseconds). Times are
// truncated to microseconds before they are hashed or compared, so what is
// read back equals what was written.
func (d dialect) ts(t time.Time) any {
	t = t.UTC().Truncate(time.Microsecond)
	if d == dialectPostgres {
		return t
	}
	return t.UnixMicro()
}

// tsScan reads a time column of either backend; NULL gives the zero time.
type tsScan struct{ t *time.Time }

func (s tsScan) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*s.t = time.Time{}
	case int64:
		*s.t = time.UnixMicro(v).UTC()
	case time.Time:
		*s.t = v.UTC()
	default:
		return fmt.Errorf("store: unexpected time column type %T", src)
	}
	return nil
}

func micro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// nullString reads a nullable TEXT column into a string ("" for NULL).
type nullString struct{ s *string }

func (n nullString) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*n.s = ""
	case string:
		*n.s = v
	case []byte:
		*n.s = string(v)
	default:
		return fmt.Errorf("store: unexpected text column type %T", src)
	}
	return nil
}

// --- database/sql (SQLite) ---

type sqlQuerier interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

type sqlQ struct{ q sqlQuerier }

func (s sqlQ) exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := s.q.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s sqlQ) queryRow(ctx context.Context, q string, args ...any) scanner {
	return sqlRow{s.q.QueryRowContext(ctx, q, args...)}
}

func (s sqlQ) query(ctx context.Context, q string, args ...any) (rowsIter, error) {
	rows, err := s.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

type sqlRow struct{ r *sql.Row }

func (r sqlRow) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return errNoRows
	}
	return err
}

type sqlRows struct{ r *sql.Rows }

func (r sqlRows) Next() bool             { return r.r.Next() }
func (r sqlRows) Scan(dest ...any) error { return r.r.Scan(dest...) }
func (r sqlRows) Err() error             { return r.r.Err() }
func (r sqlRows) Close()                 { _ = r.r.Close() }

// sqliteBackend has one writer connection (SQLite allows one writer at a time
// anyway; queueing in Go is cheaper than spinning on SQLITE_BUSY) and a small
// pool of read-only connections that read concurrently thanks to WAL.
//
// The per-message reads are *sql.Stmt prepared once on the reader pool:
// database/sql prepares each on a connection the first time it runs there and
// keeps it (modernc.org/sqlite keeps the compiled statement), so a look-up no
// longer pays sqlite3_prepare_v2 on every call. A Stmt is safe for concurrent
// use.
type sqliteBackend struct {
	writer *sql.DB
	reader *sql.DB
	hot    [numHotStmts]*sql.Stmt
}

func (b *sqliteBackend) read() querier    { return sqlQ{b.reader} }
func (b *sqliteBackend) write() querier   { return sqlQ{b.writer} }
func (b *sqliteBackend) dialect() dialect { return dialectSQLite }

func (b *sqliteBackend) prepareHot(ctx context.Context, sqls [numHotStmts]string) error {
	for i, q := range sqls {
		st, err := b.reader.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("store: prepare statement (n=%d): %w", i, err)
		}
		b.hot[i] = st
	}
	return nil
}

func (b *sqliteBackend) hotRow(ctx context.Context, h hotStmt, args ...any) scanner {
	return sqlRow{b.hot[h].QueryRowContext(ctx, args...)}
}

func (b *sqliteBackend) close() {
	// The statements stay in b.hot: a call racing with Close then gets
	// "statement is closed" rather than a nil dereference.
	for _, st := range b.hot {
		if st != nil {
			_ = st.Close()
		}
	}
	_ = b.reader.Close()
	_ = b.writer.Close()
}

func (b *sqliteBackend) tx(ctx context.Context, fn func(q querier) error) (err error) {
	tx, err := b.writer.BeginTx(ctx, nil) // BEGIN IMMEDIATE via _txlock=immediate
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err = fn(sqlQ{tx}); err != nil {
		return err
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// --- pgx (PostgreSQL) ---

type pgQ struct {
	pool *pgxpool.Pool
	tx   pgx.Tx
}

func (p pgQ) exec(ctx context.Context, q string, args ...any) (int64, error) {
	if p.tx != nil {
		tag, err := p.tx.Exec(ctx, q, args...)
		return tag.RowsAffected(), err
	}
	tag, err := p.pool.Exec(ctx, q, args...)
	return tag.RowsAffected(), err
}

func (p pgQ) queryRow(ctx context.Context, q string, args ...any) scanner {
	if p.tx != nil {
		return pgRow{p.tx.QueryRow(ctx, q, args...)}
	}
	return pgRow{p.pool.QueryRow(ctx, q, args...)}
}

func (p pgQ) query(ctx context.Context, q string, args ...any) (rowsIter, error) {
	var rows pgx.Rows
	var err error
	if p.tx != nil {
		rows, err = p.tx.Query(ctx, q, args...)
	} else {
		rows, err = p.pool.Query(ctx, q, args...)
	}
	if err != nil {
		return nil, err
	}
	return pgRows{rows}, nil
}

type pgRow struct{ r pgx.Row }

func (r pgRow) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return errNoRows
	}
	return err
}

type pgRows struct{ r pgx.Rows }

func (r pgRows) Next() bool             { return r.r.Next() }
func (r pgRows) Scan(dest ...any) error { return r.r.Scan(dest...) }
func (r pgRows) Err() error             { return r.r.Err() }
func (r pgRows) Close()                 { r.r.Close() }

// pgBackend keeps only the text of the per-message reads: pgx's default
// QueryExecModeCacheStatement prepares a statement once per connection, keyed
// by its SQL text, and reuses it (openPostgres leaves that mode alone).
type pgBackend struct {
	pool *pgxpool.Pool
	hot  [numHotStmts]string
}

func (b *pgBackend) read() querier    { return pgQ{pool: b.pool} }
func (b *pgBackend) write() querier   { return pgQ{pool: b.pool} }
func (b *pgBackend) dialect() dialect { return dialectPostgres }
func (b *pgBackend) close()           { b.pool.Close() }

func (b *pgBackend) prepareHot(_ context.Context, sqls [numHotStmts]string) error {
	b.hot = sqls
	return nil
}

func (b *pgBackend) hotRow(ctx context.Context, h hotStmt, args ...any) scanner {
	return pgRow{b.pool.QueryRow(ctx, b.hot[h], args...)}
}

func (b *pgBackend) tx(ctx context.Context, fn func(q querier) error) (err error) {
	tx, err := b.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err = fn(pgQ{tx: tx}); err != nil {
		return err
	}
	if err = tx.Commit(ctx); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}
