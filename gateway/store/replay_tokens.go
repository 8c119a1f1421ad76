package store

import "github.com/aortagw/aortagw/tokens"

// The store is the replay cache package tokens asks for, shared by replicas.
var _ tokens.ReplayCache = (*sqlStore)(nil)

// isTokensReplay reports whether target is package tokens' ErrReplay, so
// that the store's replay error satisfies errors.Is(err, tokens.ErrReplay).
func isTokensReplay(target error) bool { return target == tokens.ErrReplay }

// replayStoreError marks a database failure inside Use as tokens.ErrReplayStore
// (the validator fails closed on it) while keeping the cause.
type replayStoreError struct{ err error }

func (e *replayStoreError) Error() string { return "store: replay use: " + e.err.Error() }
func (e *replayStoreError) Unwrap() []error {
	return []error{tokens.ErrReplayStore, e.err}
}
