// Package store is the gateway's durable state: enrolment and mandate tokens
// (kept as the signed bytes), blocked actors, the replay cache shared by all
// replicas, the hash-chained audit log and the trigger queue.
//
// Two implementations sit behind the one Store interface: embedded SQLite
// (modernc.org/sqlite, WAL, synchronous=FULL; the default, for one node) and
// PostgreSQL (pgx pool; for several replicas against one database). Open
// picks one from the DSN. Both apply the embedded, versioned migrations at
// Open, in one transaction, under a lock so that replicas starting at the same
// moment cannot apply a migration twice.
//
// Concurrency contract: a Store is safe for concurrent use by many goroutines,
// and several processes (replicas, or the CLI next to a running server) may
// use one database at the same time. Every method is one database transaction
// (or one statement) and is atomic across all replicas sharing the database:
//   - Use (replay) is an insert-if-absent on a unique key: of any number of
//     concurrent calls for one (issuer, id) exactly one succeeds.
//   - Revoke, RevokeMandatesOf, BlockActor and UnblockActor take effect for
//     every replica on commit: FindEnrolment and FindMandate read the database
//     on every call; nothing is cached.
//   - Append serialises on the chain head (SELECT ... FOR UPDATE on
//     PostgreSQL, the single write lock on SQLite), so concurrent appends from
//     all replicas form one linear chain.
//   - Claim hands a due job to exactly one worker (FOR UPDATE SKIP LOCKED on
//     PostgreSQL); every later transition of the job is fenced by the claim
//     token, so a worker whose lease was taken over cannot act on the job.
//
// A method returns only after its transaction committed durably (SQLite
// synchronous=FULL; PostgreSQL with its own synchronous_commit setting, on by
// default), so whatever a caller saw succeed survives a crash of the process.
// Open starts one goroutine (the audit appender, for group commit); Close
// stops it and closes the connections; calls in flight when Close runs fail
// (Append with ErrClosed).
// The store never validates tokens: callers verify them with package tokens
// and hand over the verified claims together with the raw signed bytes.
package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Sentinel errors. Match them with errors.Is.
var (
	// ErrNotFound means no row matched (no valid enrolment, no covering mandate, no such job).
	ErrNotFound = errors.New("store: not found")
	// ErrReplay means the (issuer, id) pair was used before.
	ErrReplay = errors.New("store: token already used (replay)")
	// ErrActorBlocked means the mandate giver or the mandated actor is blocked.
	ErrActorBlocked = errors.New("store: actor blocked")
	// ErrDuplicate means a token with this ID is already registered with different bytes.
	ErrDuplicate = errors.New("store: token id already registered with other content")
	// ErrInvalid means the caller passed an unusable value; nothing was changed.
	ErrInvalid = errors.New("store: invalid input")
	// ErrChainBroken means VerifyChain found the audit chain altered.
	ErrChainBroken = errors.New("store: audit chain broken")
	// ErrLeaseLost means the job is no longer claimed under the given claim token.
	ErrLeaseLost = errors.New("store: job lease lost")
	// ErrNoJob means no job is due.
	ErrNoJob = errors.New("store: no job due")
	// ErrBadDSN means the DSN is not sqlite:PATH or postgres://...
	ErrBadDSN = errors.New("store: unsupported dsn")
	// ErrSchemaTooNew means the database was migrated by a newer aortagw.
	ErrSchemaTooNew = errors.New("store: database schema is newer than this binary")
	// ErrClosed means the Store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrBadExport means an audit export failed verification.
	ErrBadExport = errors.New("store: audit export invalid")
)

// Store is the gateway's durable state. See the package comment for its
// concurrency contract: safe for concurrent use, every method atomic across
// replicas, no caching.
type Store interface {
	TokenStore
	ReplayCache
	AuditLog
	Queue
	// Ping checks that the database answers (for /readyz).
	Ping(ctx context.Context) error
	// Backend names the implementation: "sqlite" or "postgres".
	Backend() string
	// Close releases the connections. It is idempotent.
	Close() error
}

// TokenStore keeps enrolment and mandate tokens and the blocked actors.
type TokenStore interface {
	// RegisterEnrolment stores a verified enrolment token. Registering the same
	// ID with the same bytes again is a no-op; other bytes give ErrDuplicate.
	RegisterEnrolment(ctx context.Context, e Enrolment) error
	// RegisterMandate stores a verified mandate token (same rules).
	RegisterMandate(ctx context.Context, m Mandate) error
	// FindEnrolment returns the newest enrolment for (ura, bsn) that is valid at
	// `at` and not revoked, or ErrNotFound.
	FindEnrolment(ctx context.Context, ura, bsn string, at time.Time) (*Enrolment, error)
	// FindMandate returns the newest unrevoked mandate that covers q at q.At,
	// ErrActorBlocked when the giver or the actor is blocked, else ErrNotFound.
	FindMandate(ctx context.Context, q MandateQuery) (*Mandate, error)
	// GetToken returns one enrolment or mandate by ID (revoked ones included).
	GetToken(ctx context.Context, id string) (*TokenInfo, error)
	// ListTokens lists tokens matching f, newest first.
	ListTokens(ctx context.Context, f ListFilter) ([]TokenInfo, error)
	// Revoke revokes an enrolment or mandate by ID. Revoking twice keeps the first revocation.
	Revoke(ctx context.Context, id, reason, by string) error
	// Expiring lists unrevoked tokens, still valid now, whose validity ends
	// within `within`: enrolments at NotOnOrAfter (at most 1.5 years after
	// issue), mandates at the earlier of NotOnOrAfter and the card's NotAfter.
	Expiring(ctx context.Context, within time.Duration) ([]TokenInfo, error)
	// RevokeMandatesOf revokes every unrevoked mandate given by the UZI number
	// and returns how many it revoked (iam.MandateAuthority).
	RevokeMandatesOf(ctx context.Context, uzi, reason string) (int, error)
	// BlockActor blocks a UZI number: no mandate is found for it, as giver or as
	// mandated actor, until UnblockActor. Blocking twice is a no-op.
	BlockActor(ctx context.Context, uzi, reason string) error
	// UnblockActor lifts a block (a re-joiner). Unblocking an unblocked actor is a no-op.
	UnblockActor(ctx context.Context, uzi, reason string) error
	// ActorBlocked reports whether the UZI number is blocked.
	ActorBlocked(ctx context.Context, uzi string) (bool, error)
}

// ReplayCache is the replay cache of tokens.ReplayCache, shared by replicas.
type ReplayCache interface {
	// Use records (issuer, id) until `until`; a second Use of the same pair
	// returns an error matching ErrReplay (and tokens.ErrReplay).
	Use(ctx context.Context, issuer, id string, until time.Time) error
	// PurgeReplay deletes entries whose `until` lies before now; run it periodically.
	PurgeReplay(ctx context.Context) (int64, error)
}

// Options configures a Store. The zero value is usable.
type Options struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
	// NewID generates job IDs and claim tokens (default 128 random bits, hex).
	NewID func() string
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the store's metrics when not nil.
	Registerer prometheus.Registerer
	// Retry is the trigger queue's backoff policy (defaults: 30s base, 1h cap, 8 attempts).
	Retry RetryPolicy
	// MaxConns caps the PostgreSQL pool (default pgx's: max(4, NumCPU)) and the
	// SQLite read pool (default 4).
	MaxConns int
	// BusyTimeout is how long a SQLite writer waits for another process's
	// write lock (default 10s).
	BusyTimeout time.Duration
}

// RetryPolicy is the trigger queue's exponential backoff: attempt n waits
// Base*2^(n-1), at most Max; after MaxAttempts failed attempts the job is dead.
type RetryPolicy struct {
	Base        time.Duration
	Max         time.Duration
	MaxAttempts int
}

func (o *Options) defaults() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.NewID == nil {
		o.NewID = randomID
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Retry.Base <= 0 {
		o.Retry.Base = 30 * time.Second
	}
	if o.Retry.Max <= 0 {
		o.Retry.Max = time.Hour
	}
	if o.Retry.MaxAttempts <= 0 {
		o.Retry.MaxAttempts = 8
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 10 * time.Second
	}
}

func randomID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("store: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// Open opens (and migrates) the store named by dsn:
//
//	sqlite:/var/lib/aortagw/aortagw.db    (also sqlite:relative/path.db)
//	postgres://user@host:5432/db?sslmode=verify-full   (postgresql:// too)
//
// Open does I/O: it connects, pings and applies pending migrations.
func Open(ctx context.Context, dsn string, opts Options) (Store, error) {
	opts.defaults()
	var (
		b   backend
		err error
	)
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		b, err = openSQLite(ctx, strings.TrimPrefix(dsn, "sqlite:"), opts)
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		b, err = openPostgres(ctx, dsn, opts)
	default:
		return nil, fmt.Errorf("%w (want sqlite:PATH or postgres://...)", ErrBadDSN)
	}
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, b, opts.Now); err != nil {
		b.close()
		return nil, err
	}
	if err := b.prepareHot(ctx, hotSQL(b.dialect())); err != nil {
		b.close()
		return nil, err
	}
	s := &sqlStore{b: b, d: b.dialect(), opts: opts, log: opts.Logger.With("component", "store", "backend", b.dialect().String())}
	if err := s.registerMetrics(opts.Registerer); err != nil {
		b.close()
		return nil, err
	}
	s.appendCh = make(chan *appendReq)
	s.quit = make(chan struct{})
	s.wg.Add(1)
	go s.appender()
	return s, nil
}

// RedactDSN returns dsn with any password removed, for logs and errors.
func RedactDSN(dsn string) string {
	if strings.HasPrefix(dsn, "sqlite:") {
		return dsn
	}
	return redactURL(dsn)
}
