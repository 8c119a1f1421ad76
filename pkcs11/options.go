package pkcs11

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configures Open and OpenForPurpose. The zero value is usable but allows no module:
// AllowedModules must name the module the URI's module-path points at.
type Options struct {
	// AllowedModules lists the PKCS#11 modules that may be loaded (absolute paths; symlinks are
	// resolved on both sides). Deny by default: an empty list allows nothing.
	AllowedModules []string
	// ModulePath is used when the URI has no module-path query attribute. It must also be allowed.
	ModulePath string
	// AllowPINValue permits pin-value in URIs. Insecure (the PIN sits in config); tests only.
	AllowPINValue bool
	// Registerer receives the pool and signing metrics. Nil means no metrics.
	Registerer prometheus.Registerer
	// Logger receives operational events (never a PIN). Nil means slog.DiscardHandler.
	Logger *slog.Logger
	// OpTimeout bounds every signing operation, including the wait for a session (G8).
	// Zero means 10s. SignContext additionally honours the caller's context.
	OpTimeout time.Duration
	// PoolSize caps the number of sessions per token; the token's MaxSessionCount caps it further.
	// Zero means 2*GOMAXPROCS (at least 2).
	PoolSize int
	// Audit, when set, is called after every signature attempt (successful or not).
	Audit func(ctx context.Context, ev AuditEvent)
	// Actor extracts the acting person or system from a request context for Audit and the
	// audit log line. Nil means no actor ("" in the event).
	Actor func(ctx context.Context) string
	// RecoveryBackoff is the first wait between recovery attempts of a broken token; it doubles
	// up to MaxRecoveryBackoff. Zero means 200ms and 30s.
	RecoveryBackoff, MaxRecoveryBackoff time.Duration
}

// AuditEvent describes one signature attempt. It never carries a PIN or the signed data.
type AuditEvent struct {
	KeyURI    string        // redacted URI of the key
	Actor     string        // from Options.Actor, "" when absent
	Mechanism string        // e.g. "CKM_RSA_PKCS"
	Duration  time.Duration // wall time including the wait for a session
	Err       error         // nil on success
}

func (o *Options) opTimeout() time.Duration {
	if o.OpTimeout > 0 {
		return o.OpTimeout
	}
	return 10 * time.Second
}

func (o *Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}
