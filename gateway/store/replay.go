package store

import (
	"context"
	"fmt"
	"time"
)

// replayError is what Use returns for a replayed token. It matches both
// store.ErrReplay and tokens.ErrReplay with errors.Is.
type replayError struct{ issuer, id string }

func (e *replayError) Error() string {
	return fmt.Sprintf("store: token already used (issuer=%s id=%s)", e.issuer, e.id)
}

func (e *replayError) Is(target error) bool { return target == ErrReplay || isTokensReplay(target) }

// Use records (issuer, id) until `until` with one atomic insert-if-absent on
// the (issuer, id) primary key: across all replicas exactly one Use of a pair
// succeeds; every other gets an error matching ErrReplay (and
// tokens.ErrReplay). A database failure gives an error matching
// tokens.ErrReplayStore, so the validator fails closed. An entry stays until
// PurgeReplay removes it after `until`; a token presented after its
// NotOnOrAfter is refused by the validator anyway, so purging never reopens a
// usable token.
func (s *sqlStore) Use(ctx context.Context, issuer, id string, until time.Time) error {
	if issuer == "" || id == "" {
		return fmt.Errorf("%w: replay needs issuer and id", ErrInvalid)
	}
	n, err := s.b.write().exec(ctx, `INSERT INTO replay (issuer, id, until) VALUES ($1, $2, $3)
		ON CONFLICT (issuer, id) DO NOTHING`, issuer, id, s.d.ts(until))
	if err != nil {
		return &replayStoreError{err: err}
	}
	if n == 0 {
		return &replayError{issuer: issuer, id: id}
	}
	return nil
}

// PurgeReplay deletes replay entries whose `until` has passed.
func (s *sqlStore) PurgeReplay(ctx context.Context) (int64, error) {
	n, err := s.b.write().exec(ctx, `DELETE FROM replay WHERE until < $1`, s.d.ts(s.opts.Now()))
	if err != nil {
		return 0, fmt.Errorf("store: purge replay: %w", err)
	}
	return n, nil
}
