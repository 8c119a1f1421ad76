// Package pkcs11 gives the rest of aortagw a crypto.Signer (plus its certificate chain) for a
// key on a UZI smartcard or an HSM, through a thin layer over github.com/miekg/pkcs11. No
// miekg/pkcs11 type is exported.
//
// # Keys and URIs
//
// Keys are named by strict RFC 7512 URIs (see URI), for example
//
//	pkcs11:token=UZI-server;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/aortagw/hsm.pin
//
// Modules load only from Options.AllowedModules. The PIN comes from a file (mode checked, one
// trailing newline trimmed), lives in a []byte and is wiped after each login; pin-value is
// refused unless Options.AllowPINValue is set. The file is re-read for every login, so the PIN
// is not kept in memory between logins.
//
// # Modules, sessions and concurrency
//
// One module context exists per resolved module path per process; it is reference counted
// and C_Finalize'd when the last Key or Admin using it is closed. Per token there is one
// persistent logged-in session (never closed while the token is healthy, so the login state
// survives) plus a bounded pool of sessions sized min(Options.PoolSize, MaxSessionCount-1).
// Each signature borrows one session; waiting for it honours the caller's context and
// Options.OpTimeout and fails with ErrTokenBusy. A Key is safe for concurrent use by many
// goroutines. Keys opened on the same token share the token's sessions.
//
// Cached: the module context, the token's slot, the mechanism list (read once per token), the
// key's CKA_ID, the public key and the certificates. Object handles are cached per token
// generation and re-found by CKA_ID after every recovery.
//
// # Failure and recovery
//
// Return codes are classified with errors.As on the typed pkcs11.Error, never by string.
// On CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, CKR_DEVICE_ERROR, CKR_SESSION_HANDLE_INVALID,
// CKR_SESSION_CLOSED, CKR_USER_NOT_LOGGED_IN or CKR_OBJECT_HANDLE_INVALID the session is
// dropped and the token is marked broken: signing fails closed with ErrTokenUnavailable until a
// recovery (under one lock, with exponential backoff, after the in-flight operations have
// drained) has re-opened the sessions, logged in again and found the keys again by CKA_ID. Any
// other failure after C_SignInit discards that session only. A rejected PIN
// (CKR_PIN_INCORRECT, CKR_PIN_LOCKED, ...) is never retried: exactly one C_Login is attempted
// and the token stays unhealthy (ErrPIN) until the Key is reopened.
//
// Keys with CKA_ALWAYS_AUTHENTICATE get C_Login(CKU_CONTEXT_SPECIFIC) between C_SignInit and
// C_Sign, serialised per key.
//
// # Lifecycle
//
// Open does the I/O (module load, login, key lookup) and returns a ready Key. Close is
// idempotent: it stops new signatures (ErrClosed), waits for the ones in flight, closes the
// sessions when the last Key of the token goes and releases the module. Builds without cgo
// (or with the nopkcs11 tag) compile a stub whose functions all return ErrNoCgo; the URI
// parser works in every build.
//
// Linux only (miekg/pkcs11 assumes CK_ULONG == Go uint).
package pkcs11
