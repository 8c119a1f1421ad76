package tokens

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// ReplayCache records (Issuer, ID) pairs of single-use tokens.
type ReplayCache interface {
	// Use records (issuer, id) until `until`; it returns an error wrapping
	// ErrReplay when the pair was already recorded and has not expired, and an
	// error wrapping ErrReplayStore when it cannot decide (fail closed).
	Use(ctx context.Context, issuer, id string, until time.Time) error
}

// MemoryReplayCache is a bounded, expiring in-memory ReplayCache, safe for
// concurrent use. When full of unexpired entries it refuses new ones
// (ErrReplayStore) rather than forgetting old ones.
type MemoryReplayCache struct {
	now func() time.Time
	max int

	mu      sync.Mutex
	entries map[[2]string]time.Time
}

var _ ReplayCache = (*MemoryReplayCache)(nil)

// NewMemoryReplayCache returns a cache holding at most max entries (default
// 1,000,000 when max <= 0); now is the clock (default time.Now).
func NewMemoryReplayCache(max int, now func() time.Time) *MemoryReplayCache {
	if max <= 0 {
		max = 1_000_000
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryReplayCache{now: now, max: max, entries: make(map[[2]string]time.Time)}
}

// Use implements ReplayCache.
func (m *MemoryReplayCache) Use(_ context.Context, issuer, id string, until time.Time) error {
	now := m.now()
	k := [2]string{issuer, id}
	m.mu.Lock()
	defer m.mu.Unlock()
	if exp, ok := m.entries[k]; ok && now.Before(exp) {
		return fmt.Errorf("%w: (issuer=%q, id=%q)", ErrReplay, issuer, id)
	}
	if len(m.entries) >= m.max {
		for key, exp := range m.entries {
			if !now.Before(exp) {
				delete(m.entries, key)
			}
		}
		if len(m.entries) >= m.max {
			return fmt.Errorf("%w: replay cache full (max=%d)", ErrReplayStore, m.max)
		}
	}
	m.entries[k] = until
	return nil
}

// Len returns the number of recorded entries (expired ones included until swept).
func (m *MemoryReplayCache) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

// FileReplayCache is a ReplayCache in a small JSON-lines file, for the
// command-line verifier (`token verify --replay-db`). Every Use takes an
// exclusive flock on the file, so several processes can share it; expired
// entries are dropped when the file is rewritten. Not meant for high volume.
type FileReplayCache struct {
	path string
	now  func() time.Time
	mu   sync.Mutex
}

var _ ReplayCache = (*FileReplayCache)(nil)

// NewFileReplayCache returns a cache stored at path (created with mode 0600).
func NewFileReplayCache(path string, now func() time.Time) *FileReplayCache {
	if now == nil {
		now = time.Now
	}
	return &FileReplayCache{path: path, now: now}
}

type replayRecord struct {
	Issuer string    `json:"issuer"`
	ID     string    `json:"id"`
	Until  time.Time `json:"until"`
}

// Use implements ReplayCache.
func (f *FileReplayCache) Use(_ context.Context, issuer, id string, until time.Time) (err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	file, err := os.OpenFile(f.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrReplayStore, err)
	}
	defer func() {
		if cerr := file.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("%w: %v", ErrReplayStore, cerr)
		}
	}()
	if err := syscall.Flock(int(file.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("%w: lock: %v", ErrReplayStore, err)
	}
	defer func() { _ = syscall.Flock(int(file.Fd()), syscall.LOCK_UN) }()
	now := f.now()
	var keep []replayRecord
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		var r replayRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("%w: corrupt replay file: %v", ErrReplayStore, err)
		}
		if !now.Before(r.Until) {
			continue
		}
		if r.Issuer == issuer && r.ID == id {
			return fmt.Errorf("%w: (issuer=%q, id=%q)", ErrReplay, issuer, id)
		}
		keep = append(keep, r)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrReplayStore, err)
	}
	keep = append(keep, replayRecord{Issuer: issuer, ID: id, Until: until.UTC()})
	if err := file.Truncate(0); err != nil {
		return fmt.Errorf("%w: %v", ErrReplayStore, err)
	}
	if _, err := file.Seek(0, 0); err != nil {
		return fmt.Errorf("%w: %v", ErrReplayStore, err)
	}
	w := bufio.NewWriter(file)
	enc := json.NewEncoder(w)
	for _, r := range keep {
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("%w: %v", ErrReplayStore, err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("%w: %v", ErrReplayStore, err)
	}
	if err := file.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("%w: %v", ErrReplayStore, err)
	}
	return nil
}
