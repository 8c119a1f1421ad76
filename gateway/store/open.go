package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

//go:embed migrations
var migrationsFS embed.FS

// migrationLockKey is the pg_advisory_xact_lock key that serialises migrations
// of replicas starting at once ("aortagw1" as an int64).
const migrationLockKey int64 = 0x616f727461677731

func openSQLite(ctx context.Context, path string, opts Options) (backend, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("%w: sqlite path must be a plain file path (path=%q)", ErrBadDSN, path)
	}
	if dir := filepath.Dir(path); dir != "" {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("store: sqlite directory (dir=%s): %w", dir, err)
		}
	}
	// The file holds BSNs: create it owner-only (SQLite gives the -wal and
	// -shm files the database file's permissions).
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		_ = f.Close()
	} else if !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("store: create sqlite file (path=%s): %w", path, err)
	}
	busy := strconv.FormatInt(opts.BusyTimeout.Milliseconds(), 10)
	// journal_mode=WAL: readers never block the writer and vice versa.
	// synchronous=FULL: in WAL mode every commit fsyncs the WAL, so a commit
	// that returned survives power loss, not only a process crash (NORMAL
	// would survive SIGKILL too, but could lose the last commits on power
	// loss: not acceptable for an audit log). foreign_keys=on enforces the
	// mandate_actors reference. _txlock=immediate makes every transaction
	// take the write lock at BEGIN, so two processes never deadlock upgrading
	// read locks.
	common := url.Values{}
	common.Add("_pragma", "busy_timeout("+busy+")")
	common.Add("_pragma", "journal_mode(WAL)")
	common.Add("_pragma", "synchronous(FULL)")
	common.Add("_pragma", "foreign_keys(1)")
	wq := url.Values{}
	for k, v := range common {
		wq[k] = append([]string(nil), v...)
	}
	wq.Set("_txlock", "immediate")
	writer, err := sql.Open("sqlite", "file:"+path+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite (path=%s): %w", path, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	if err := writer.PingContext(ctx); err != nil {
		_ = writer.Close()
		return nil, fmt.Errorf("store: open sqlite (path=%s): %w", path, err)
	}
	rq := url.Values{}
	for k, v := range common {
		rq[k] = append([]string(nil), v...)
	}
	rq.Add("_pragma", "query_only(1)")
	reader, err := sql.Open("sqlite", "file:"+path+"?"+rq.Encode())
	if err != nil {
		_ = writer.Close()
		return nil, fmt.Errorf("store: open sqlite (path=%s): %w", path, err)
	}
	n := opts.MaxConns
	if n <= 0 {
		n = 4
	}
	reader.SetMaxOpenConns(n)
	reader.SetMaxIdleConns(n)
	return &sqliteBackend{writer: writer, reader: reader}, nil
}

func openPostgres(ctx context.Context, dsn string, opts Options) (backend, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx errors can echo the DSN including its password: do not wrap.
		return nil, fmt.Errorf("%w: cannot parse postgres dsn (dsn=%s)", ErrBadDSN, redactURL(dsn))
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = int32(min(opts.MaxConns, 1<<16)) // #nosec G115 -- bounded above
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: open postgres (dsn=%s): %w", redactURL(dsn), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: connect postgres (dsn=%s): %w", redactURL(dsn), err)
	}
	return &pgBackend{pool: pool}, nil
}

// redactURL removes the password from a URL's userinfo and its password=
// query parameter.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<unparsable>"
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "REDACTED")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the dialect's embedded migrations in version order.
// Files are named NNNN_name.sql; the number is the version.
func migrations(d dialect) ([]migration, error) {
	dir := "migrations/" + d.String()
	entries, err := fs.ReadDir(migrationsFS, dir)
	if err != nil {
		return nil, fmt.Errorf("store: read migrations: %w", err)
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("store: bad migration file name (name=%s)", name)
		}
		b, err := fs.ReadFile(migrationsFS, dir+"/"+name)
		if err != nil {
			return nil, fmt.Errorf("store: read migration (name=%s): %w", name, err)
		}
		out = append(out, migration{version: v, name: strings.TrimSuffix(name, ".sql"), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("store: migrations not numbered 1..n (name=%s)", m.name)
		}
	}
	return out, nil
}

// migrate applies pending migrations in one transaction. On PostgreSQL the
// transaction first takes a transaction-scoped advisory lock, so replicas that
// start together apply each migration once; the others wait, then find
// nothing to do. On SQLite the IMMEDIATE transaction holds the write lock.
func migrate(ctx context.Context, b backend, now func() time.Time) error {
	ms, err := migrations(b.dialect())
	if err != nil {
		return err
	}
	return b.tx(ctx, func(q querier) error {
		if b.dialect() == dialectPostgres {
			if _, err := q.exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLockKey); err != nil {
				return fmt.Errorf("store: migration lock: %w", err)
			}
		}
		if _, err := q.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER PRIMARY KEY,
			name TEXT NOT NULL,
			applied_at TEXT NOT NULL)`); err != nil {
			return fmt.Errorf("store: create schema_migrations: %w", err)
		}
		var current int
		if err := q.queryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&current); err != nil {
			return fmt.Errorf("store: read schema version: %w", err)
		}
		if current > len(ms) {
			return fmt.Errorf("%w (database=%d binary=%d)", ErrSchemaTooNew, current, len(ms))
		}
		for _, m := range ms[current:] {
			if _, err := q.exec(ctx, m.sql); err != nil {
				return fmt.Errorf("store: apply migration (name=%s): %w", m.name, err)
			}
			if _, err := q.exec(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
				m.version, m.name, now().UTC().Format(time.RFC3339Nano)); err != nil {
				return fmt.Errorf("store: record migration (name=%s): %w", m.name, err)
			}
		}
		return nil
	})
}

// sqlStore implements Store over either backend.
type sqlStore struct {
	b         backend
	d         dialect
	opts      Options
	log       *slog.Logger
	metrics   *storeMetrics
	closeOnce sync.Once

	appendCh chan *appendReq // to the appender goroutine (group commit)
	quit     chan struct{}   // closed by Close
	wg       sync.WaitGroup  // the appender
}

var _ Store = (*sqlStore)(nil)

func (s *sqlStore) Backend() string { return s.d.String() }

func (s *sqlStore) Ping(ctx context.Context) error {
	var one int
	if err := s.b.read().queryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

func (s *sqlStore) Close() error {
	s.closeOnce.Do(func() {
		close(s.quit)
		s.wg.Wait()
		if s.metrics != nil && s.opts.Registerer != nil {
			s.metrics.unregister(s.opts.Registerer)
		}
		s.b.close()
	})
	return nil
}
