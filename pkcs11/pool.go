//go:build cgo && !nopkcs11

package pkcs11

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/miekg/pkcs11"
)

// token is the shared per-token state: the persistent logged-in session (anchor), the bounded
// session pool and the recovery state machine. It is shared by every Key on the token
// (reference counted under library.tokMu).
//
// Invariant: the generation (gen) changes only inside recover, which holds every slot of sem;
// so a goroutine holding one slot sees a stable generation, and a stale session handle is
// never closed after its number could have been reused.
type token struct {
	lib      *library
	slot     uint   // current slot; changes only in recover (all slots held)
	key      uint   // the slot at creation: the key in library.tokens
	label    string // CKA token label, for logs and metrics
	serial   string
	uri      *URI // PIN source of the first opener
	allowPIN bool
	mechs    []*pkcs11.Mechanism
	size     int
	sem      chan struct{}
	recMu    chan struct{} // serialises recovery; a channel so waiting honours contexts
	m        *tokenMetrics
	log      *slog.Logger

	backoff, maxBackoff time.Duration

	loginMu sync.Mutex // serialises C_Login (user and context-specific) and anchor use

	mu         sync.Mutex // guards the fields below
	refs       int        // guarded by lib.tokMu, not mu
	idle       []pkcs11.SessionHandle
	anchor     pkcs11.SessionHandle
	hasAnchor  bool
	useAnchor  bool // false for tokens that allow a single session (smartcards)
	gen        uint64
	broken     error // cause while the token is unusable; nil when healthy
	pinErr     error // permanent: the PIN was refused, never retried
	closed     bool
	nextTry    time.Time
	curBackoff time.Duration
}

// acquireToken returns the shared token state for the slot, creating it (one login attempt)
// on first use.
func acquireToken(ctx context.Context, lib *library, slot uint, ti pkcs11.TokenInfo, u *URI, opts Options, m *metrics) (*token, error) {
	lib.tokMu.Lock()
	defer lib.tokMu.Unlock()
	if t, ok := lib.tokens[slot]; ok {
		t.mu.Lock()
		pe := t.pinErr
		t.mu.Unlock()
		if pe != nil {
			return nil, pe
		}
		t.refs++
		return t, nil
	}
	mechs, err := lib.mod.GetMechanismList(slot)
	if err != nil {
		return nil, fmt.Errorf("mechanisms (token=%s): %w", ti.Label, opErr("C_GetMechanismList", err))
	}
	size := opts.PoolSize
	if size <= 0 {
		size = max(2, 2*runtime.GOMAXPROCS(0))
	}
	useAnchor := true
	if mx := ti.MaxSessionCount; mx != 0 && mx != pkcs11.CK_UNAVAILABLE_INFORMATION {
		if mx == 1 {
			size, useAnchor = 1, false // the one session is both pool and login holder
		} else {
			size = min(size, int(mx)-1)
		}
	}
	t := &token{
		lib: lib, slot: slot, key: slot, label: ti.Label, serial: ti.SerialNumber, uri: u,
		allowPIN: opts.AllowPINValue, mechs: mechs, size: size,
		sem: make(chan struct{}, size), recMu: make(chan struct{}, 1),
		log:     opts.logger().With("token", ti.Label),
		backoff: opts.RecoveryBackoff, maxBackoff: opts.MaxRecoveryBackoff,
		refs: 1, useAnchor: useAnchor, gen: 1,
	}
	if t.backoff <= 0 {
		t.backoff = 200 * time.Millisecond
	}
	if t.maxBackoff <= 0 {
		t.maxBackoff = 30 * time.Second
	}
	t.m = m.forToken(ti.Label)
	t.m.capacity.Set(float64(size))
	if err := t.start(); err != nil {
		return nil, err
	}
	lib.tokens[slot] = t
	return t, nil
}

// start opens the first session and logs in (exactly one attempt).
func (t *token) start() error {
	sh, err := t.lib.mod.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		return fmt.Errorf("open session (token=%s): %w", t.label, opErr("C_OpenSession", err))
	}
	if err := t.ensureLogin(sh); err != nil {
		_ = t.lib.mod.CloseSession(sh)
		return err
	}
	if t.useAnchor {
		t.anchor, t.hasAnchor = sh, true
	} else {
		t.idle = append(t.idle, sh)
	}
	return nil
}

// ensureLogin logs the user in unless the session already has user functions. It attempts
// C_Login at most once per call and never after a PIN error (P6).
func (t *token) ensureLogin(sh pkcs11.SessionHandle) error {
	t.loginMu.Lock()
	defer t.loginMu.Unlock()
	t.mu.Lock()
	pe := t.pinErr
	t.mu.Unlock()
	if pe != nil {
		return pe
	}
	si, err := t.lib.mod.GetSessionInfo(sh)
	if err != nil {
		return fmt.Errorf("session info (token=%s): %w", t.label, opErr("C_GetSessionInfo", err))
	}
	if si.State == pkcs11.CKS_RO_USER_FUNCTIONS || si.State == pkcs11.CKS_RW_USER_FUNCTIONS {
		return nil
	}
	return t.login(sh, pkcs11.CKU_USER)
}

// login performs one C_Login with a freshly read PIN that is wiped afterwards. Callers hold
// loginMu. A refused PIN is recorded permanently.
func (t *token) login(sh pkcs11.SessionHandle, userType uint) error {
	pin, err := t.uri.readPIN(t.allowPIN)
	if err != nil {
		return err
	}
	err = t.lib.mod.Login(sh, userType, pin)
	wipe(pin)
	t.m.logins.Inc()
	if err == nil {
		return nil
	}
	if c, ok := rv(err); ok && c == pkcs11.CKR_USER_ALREADY_LOGGED_IN && userType == pkcs11.CKU_USER {
		return nil
	}
	if isPINError(err) {
		pe := fmt.Errorf("%w: (token=%s): %w", ErrPIN, t.label, opErr("C_Login", err))
		t.mu.Lock()
		t.pinErr = pe
		t.mu.Unlock()
		t.m.errors(err).Inc()
		t.log.Error("pkcs11 pin rejected; token disabled until reopened (not retried)", "rv", codeLabel(err))
		return pe
	}
	return fmt.Errorf("login (token=%s): %w", t.label, opErr("C_Login", err))
}

// session is a borrowed pool session.
type session struct {
	h   pkcs11.SessionHandle
	gen uint64
}

// get borrows a session, waiting at most until ctx ends (ErrTokenBusy).
func (t *token) get(ctx context.Context) (session, error) {
	for {
		if err := t.ready(ctx); err != nil {
			return session{}, err
		}
		select {
		case t.sem <- struct{}{}:
		default:
			t.m.waits.Inc()
			select {
			case t.sem <- struct{}{}:
			case <-ctx.Done():
				return session{}, fmt.Errorf("%w: (token=%s size=%d): %w", ErrTokenBusy, t.label, t.size, ctx.Err())
			}
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			<-t.sem
			return session{}, ErrClosed
		}
		if t.broken != nil || t.pinErr != nil {
			t.mu.Unlock()
			<-t.sem
			continue // ready decides: recover, wait for backoff, or fail
		}
		gen := t.gen
		if n := len(t.idle); n > 0 {
			h := t.idle[n-1]
			t.idle = t.idle[:n-1]
			t.mu.Unlock()
			t.m.inUse.Inc()
			return session{h: h, gen: gen}, nil
		}
		t.mu.Unlock()
		h, err := t.lib.mod.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION)
		if err == nil && !t.useAnchor {
			if err = t.ensureLogin(h); err != nil {
				_ = t.lib.mod.CloseSession(h)
			}
		}
		if err != nil {
			err = opErr("C_OpenSession", err)
			t.m.errors(err).Inc()
			if isFatal(err) {
				t.markBroken(err)
			}
			<-t.sem
			return session{}, fmt.Errorf("open session (token=%s): %w", t.label, err)
		}
		t.m.inUse.Inc()
		return session{h: h, gen: gen}, nil
	}
}

// put returns a session. opErr is the error of the operation that used it: any error discards
// the session (P5: an operation may still be active on it); a fatal one also marks the token
// broken (P1).
func (t *token) put(s session, opErr error) {
	defer func() { <-t.sem }()
	t.m.inUse.Dec()
	if opErr == nil {
		t.mu.Lock()
		if !t.closed && t.broken == nil && s.gen == t.gen {
			t.idle = append(t.idle, s.h)
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()
	} else if isFatal(opErr) {
		t.markBroken(opErr)
	}
	_ = t.lib.mod.CloseSession(s.h)
	t.m.evictions.Inc()
}

// takeSessions removes the idle sessions and the anchor from the token and
// returns their handles, for the caller to close.
func (t *token) takeSessions() []pkcs11.SessionHandle {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.idle
	t.idle = nil
	if t.hasAnchor {
		old = append(old, t.anchor)
		t.hasAnchor = false
	}
	return old
}

// markBroken records a fatal error: the token refuses work until recover succeeds.
func (t *token) markBroken(cause error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.broken != nil || t.closed {
		return
	}
	t.broken = cause
	t.nextTry = time.Time{} // first recovery attempt right away
	t.log.Warn("pkcs11 token broken; signing refused until recovered", "rv", codeLabel(cause))
}

// ready returns nil when the token can hand out sessions, recovering it when due.
func (t *token) ready(ctx context.Context) error {
	t.mu.Lock()
	switch {
	case t.closed:
		t.mu.Unlock()
		return ErrClosed
	case t.pinErr != nil:
		err := t.pinErr
		t.mu.Unlock()
		return err
	case t.broken == nil:
		t.mu.Unlock()
		return nil
	}
	if time.Now().Before(t.nextTry) {
		cause := t.broken
		t.mu.Unlock()
		return fmt.Errorf("%w: (token=%s): %w", ErrTokenUnavailable, t.label, cause)
	}
	t.mu.Unlock()
	return t.recover(ctx)
}

// recover re-opens the token after a fatal error: under one lock, after every in-flight
// operation returned its session, it closes all sessions, finds the slot again, opens a new
// session and logs in once. Failures back off exponentially.
func (t *token) recover(ctx context.Context) error {
	select {
	case t.recMu <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%w: (token=%s) recovery in progress: %w", ErrTokenUnavailable, t.label, ctx.Err())
	}
	defer func() { <-t.recMu }()
	t.mu.Lock()
	if t.broken == nil || t.closed || t.pinErr != nil {
		t.mu.Unlock()
		return nil // someone else finished; get re-checks
	}
	if time.Now().Before(t.nextTry) {
		cause := t.broken
		t.mu.Unlock()
		return fmt.Errorf("%w: (token=%s): %w", ErrTokenUnavailable, t.label, cause)
	}
	t.mu.Unlock()

	// Drain: hold every pool slot so no operation runs while the sessions are replaced.
	held := 0
	defer func() {
		for range held {
			<-t.sem
		}
	}()
	for held < t.size {
		select {
		case t.sem <- struct{}{}:
			held++
		case <-ctx.Done():
			return fmt.Errorf("%w: (token=%s) waiting for in-flight operations: %w", ErrTokenUnavailable, t.label, ctx.Err())
		}
	}

	old := t.takeSessions()
	for _, h := range old {
		_ = t.lib.mod.CloseSession(h)
		t.m.evictions.Inc()
	}

	err := t.reopen()
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		if t.pinErr != nil {
			return t.pinErr
		}
		t.curBackoff = min(max(t.backoff, 2*t.curBackoff), t.maxBackoff)
		t.nextTry = time.Now().Add(t.curBackoff)
		t.broken = err
		t.log.Warn("pkcs11 token recovery failed", "rv", codeLabel(err), "retry_in", t.curBackoff)
		return fmt.Errorf("%w: (token=%s): %w", ErrTokenUnavailable, t.label, err)
	}
	t.gen++
	t.broken = nil
	t.curBackoff = 0
	t.m.relogins.Inc()
	t.log.Info("pkcs11 token recovered")
	return nil
}

// reopen finds the token again (its slot may have changed), opens and logs in a session.
func (t *token) reopen() error {
	slots, err := t.lib.mod.GetSlotList(true)
	if err != nil {
		return opErr("C_GetSlotList", err)
	}
	found := false
	for _, s := range slots {
		ti, err := t.lib.mod.GetTokenInfo(s)
		if err == nil && ti.Label == t.label && ti.SerialNumber == t.serial {
			t.slot, found = s, true
			break
		}
	}
	if !found {
		return &CodeError{Op: "find token", Code: pkcs11.CKR_TOKEN_NOT_PRESENT, Name: "CKR_TOKEN_NOT_PRESENT"}
	}
	return t.start()
}

// health checks the persistent session with C_GetSessionInfo; the state must be a user state.
func (t *token) health(ctx context.Context) error {
	if err := t.ready(ctx); err != nil {
		return err
	}
	t.mu.Lock()
	h, ok := t.anchor, t.hasAnchor
	t.mu.Unlock()
	if !ok {
		s, err := t.get(ctx)
		if err != nil {
			return err
		}
		err = t.checkSession(s.h)
		t.put(s, err)
		return err
	}
	t.loginMu.Lock()
	err := t.checkSession(h)
	t.loginMu.Unlock()
	if err != nil && isFatal(err) {
		t.markBroken(err)
	}
	return err
}

func (t *token) checkSession(h pkcs11.SessionHandle) error {
	si, err := t.lib.mod.GetSessionInfo(h)
	if err != nil {
		return fmt.Errorf("health (token=%s): %w", t.label, opErr("C_GetSessionInfo", err))
	}
	if si.State != pkcs11.CKS_RO_USER_FUNCTIONS && si.State != pkcs11.CKS_RW_USER_FUNCTIONS {
		return fmt.Errorf("health (token=%s): %w", t.label,
			&CodeError{Op: "C_GetSessionInfo", Code: pkcs11.CKR_USER_NOT_LOGGED_IN, Name: "CKR_USER_NOT_LOGGED_IN"})
	}
	return nil
}

// release drops one Key's reference; the last one waits for in-flight operations, closes all
// sessions (which logs the token out) and releases the module.
func (t *token) release() {
	t.lib.tokMu.Lock()
	t.refs--
	last := t.refs == 0
	if last && t.lib.tokens[t.key] == t {
		delete(t.lib.tokens, t.key)
	}
	t.lib.tokMu.Unlock()
	if !last {
		return
	}
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	// Wait for every in-flight operation (they hold slots); no new ones start (closed).
	for range t.size {
		t.sem <- struct{}{}
	}
	old := t.takeSessions()
	for _, h := range old {
		_ = t.lib.mod.CloseSession(h)
	}
	for range t.size {
		<-t.sem
	}
	t.m.capacity.Set(0)
}
