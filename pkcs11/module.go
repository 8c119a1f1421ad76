//go:build cgo && !nopkcs11

package pkcs11

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/miekg/pkcs11"
)

// module is the private seam around *pkcs11.Ctx (CONVENTIONS 4): exactly the calls this
// package makes. Login, InitPIN and InitToken take []byte PINs (see pinCalls). A fake that
// injects faults implements it in the tests.
type module interface {
	GetInfo() (pkcs11.Info, error)
	GetSlotList(tokenPresent bool) ([]uint, error)
	GetSlotInfo(slotID uint) (pkcs11.SlotInfo, error)
	GetTokenInfo(slotID uint) (pkcs11.TokenInfo, error)
	GetMechanismList(slotID uint) ([]*pkcs11.Mechanism, error)
	OpenSession(slotID uint, flags uint) (pkcs11.SessionHandle, error)
	CloseSession(sh pkcs11.SessionHandle) error
	GetSessionInfo(sh pkcs11.SessionHandle) (pkcs11.SessionInfo, error)
	Login(sh pkcs11.SessionHandle, userType uint, pin []byte) error
	Logout(sh pkcs11.SessionHandle) error
	FindObjectsInit(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) error
	FindObjects(sh pkcs11.SessionHandle, max int) ([]pkcs11.ObjectHandle, bool, error)
	FindObjectsFinal(sh pkcs11.SessionHandle) error
	GetAttributeValue(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, a []*pkcs11.Attribute) ([]*pkcs11.Attribute, error)
	SignInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Sign(sh pkcs11.SessionHandle, message []byte) ([]byte, error)
	// Provisioning (Admin only).
	InitToken(slotID uint, soPIN []byte, label string) error
	InitPIN(sh pkcs11.SessionHandle, pin []byte) error
	GenerateKeyPair(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, public, private []*pkcs11.Attribute) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error)
	CreateObject(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) (pkcs11.ObjectHandle, error)
}

// realModule is a loaded, initialised module: miekg's Ctx plus our []byte PIN calls.
type realModule struct {
	*pkcs11.Ctx
	pins *pinCalls
}

var _ module = (*realModule)(nil)

func (m *realModule) Login(sh pkcs11.SessionHandle, userType uint, pin []byte) error {
	return m.pins.login(sh, userType, pin)
}

func (m *realModule) InitPIN(sh pkcs11.SessionHandle, pin []byte) error {
	return m.pins.initPIN(sh, pin)
}

func (m *realModule) InitToken(slotID uint, soPIN []byte, label string) error {
	return m.pins.initToken(slotID, soPIN, label)
}

// library is one entry of the process-wide module registry (P4): one per resolved path,
// reference counted, finalised when the last user releases it.
type library struct {
	path string
	mod  module
	refs int // guarded by registry.mu

	// tokens shares the per-token state (login session, pool) between Keys of this module.
	tokMu  sync.Mutex
	tokens map[uint]*token // by slot ID
	// shutdown finalises and unloads the module (nil for test libraries).
	shutdown func()
}

var registry struct {
	mu   sync.Mutex
	libs map[string]*library
}

// resolveModule returns the canonical path of a module file.
func resolveModule(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("%w: module path must be absolute (path=%s)", ErrModule, path)
	}
	r, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("%w: (path=%s): %v", ErrModule, path, errors.Unwrap(err))
	}
	st, err := os.Stat(r)
	if err != nil || !st.Mode().IsRegular() {
		return "", fmt.Errorf("%w: not a regular file (path=%s)", ErrModule, path)
	}
	return r, nil
}

// loadModule resolves path and loads (or shares) the module there, without
// an allow-list: for callers that name the module themselves (OpenAdmin,
// Inspect, tests). The caller releases the library.
func loadModule(path string) (*library, error) {
	r, err := resolveModule(path)
	if err != nil {
		return nil, err
	}
	return acquireLibrary(r)
}

// checkAllowed resolves path and checks it against the allow-list (deny by default).
func checkAllowed(path string, allowed []string) (string, error) {
	r, err := resolveModule(path)
	if err != nil {
		return "", err
	}
	for _, a := range allowed {
		if ra, err := resolveModule(a); err == nil && ra == r {
			return r, nil
		}
	}
	return "", fmt.Errorf("%w: (path=%s)", ErrModuleNotAllowed, path)
}

// acquireLibrary returns the registry entry for the resolved path, loading and initialising
// the module on first use.
func acquireLibrary(resolved string) (*library, error) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.libs == nil {
		registry.libs = map[string]*library{}
	}
	if l, ok := registry.libs[resolved]; ok {
		l.refs++
		return l, nil
	}
	ctx := pkcs11.New(resolved)
	if ctx == nil {
		return nil, fmt.Errorf("%w: dlopen failed (path=%s)", ErrModule, resolved)
	}
	if err := ctx.Initialize(); err != nil {
		ctx.Destroy()
		// CKR_CRYPTOKI_ALREADY_INITIALIZED means someone else in this process owns the module; we
		// do not share a context we do not own (P4).
		return nil, fmt.Errorf("%w: C_Initialize (path=%s): %w", ErrModule, resolved, classify(err))
	}
	pins, err := openPINCalls(resolved)
	if err != nil {
		_ = ctx.Finalize()
		ctx.Destroy()
		return nil, err
	}
	l := &library{path: resolved, mod: &realModule{Ctx: ctx, pins: pins}, refs: 1, tokens: map[uint]*token{}}
	l.shutdown = func() {
		_ = ctx.Finalize()
		pins.close()
		ctx.Destroy()
	}
	registry.libs[resolved] = l
	return l, nil
}

// newTestLibrary wraps a module (a fake) in a library outside the registry.
func newTestLibrary(m module) *library {
	return &library{path: "fake", mod: m, refs: 1, tokens: map[uint]*token{}}
}

// release drops one reference; the last one finalises the module.
func (l *library) release() {
	registry.mu.Lock()
	l.refs--
	last := l.refs == 0
	if last && registry.libs[l.path] == l {
		delete(registry.libs, l.path)
	}
	registry.mu.Unlock()
	if last && l.shutdown != nil {
		l.shutdown()
	}
}

// findSlot returns the slot whose token matches the URI's token attributes (token label,
// serial, manufacturer, model, slot-id, slot-description, slot-manufacturer). Exactly one
// token must match.
func findSlot(m module, u *URI) (uint, pkcs11.TokenInfo, error) {
	slots, err := m.GetSlotList(true)
	if err != nil {
		return 0, pkcs11.TokenInfo{}, fmt.Errorf("%w: C_GetSlotList: %w", ErrTokenNotFound, classify(err))
	}
	var found []uint
	var info pkcs11.TokenInfo
	for _, s := range slots {
		if v, ok := u.Path("slot-id"); ok && v != fmt.Sprint(s) {
			continue
		}
		ti, err := m.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if !matchAttr(u, "token", ti.Label) || !matchAttr(u, "serial", ti.SerialNumber) ||
			!matchAttr(u, "manufacturer", ti.ManufacturerID) || !matchAttr(u, "model", ti.Model) {
			continue
		}
		if _, ok1 := u.Path("slot-description"); ok1 || hasPath(u, "slot-manufacturer") {
			si, err := m.GetSlotInfo(s)
			if err != nil || !matchAttr(u, "slot-description", si.SlotDescription) ||
				!matchAttr(u, "slot-manufacturer", si.ManufacturerID) {
				continue
			}
		}
		found = append(found, s)
		info = ti
	}
	switch len(found) {
	case 0:
		return 0, info, fmt.Errorf("%w: (uri=%s)", ErrTokenNotFound, u.Redacted())
	case 1:
		return found[0], info, nil
	}
	return 0, info, fmt.Errorf("%w: %d tokens match (uri=%s)", ErrAmbiguous, len(found), u.Redacted())
}

func hasPath(u *URI, n string) bool { _, ok := u.Path(n); return ok }

func matchAttr(u *URI, name, have string) bool {
	want, ok := u.Path(name)
	return !ok || want == have
}

// slotByLabel finds the initialised token with the given label (Admin).
func slotByLabel(m module, label string) (uint, error) {
	slots, err := m.GetSlotList(true)
	if err != nil {
		return 0, classify(err)
	}
	var found []uint
	for _, s := range slots {
		ti, err := m.GetTokenInfo(s)
		if err == nil && ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 && ti.Label == label {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("%w: (token=%s)", ErrTokenNotFound, label)
	case 1:
		return found[0], nil
	}
	return 0, fmt.Errorf("%w: %d tokens labelled %q", ErrAmbiguous, len(found), label)
}

// hasMechanism reports whether mechs contains m.
func hasMechanism(mechs []*pkcs11.Mechanism, m uint) bool {
	return slices.ContainsFunc(mechs, func(x *pkcs11.Mechanism) bool { return x.Mechanism == m })
}
