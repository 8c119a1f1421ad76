//go:build cgo && !nopkcs11

package pkcs11

import (
	"sync"
	"sync/atomic"

	"github.com/miekg/pkcs11"
)

// faultModule wraps any module (the soft fake or real SoftHSM) and injects the faults of
// security.md section 5: token removal, HSM restart (every session handle becomes invalid and
// the login state is gone), a Sign that blocks, and it counts C_Login calls.
type faultModule struct {
	module
	mu      sync.Mutex
	removed bool
	live    map[pkcs11.SessionHandle]bool
	dead    map[pkcs11.SessionHandle]bool
	// signHook runs at the start of every C_Sign (after C_SignInit); it may inject a fault.
	signHook func(f *faultModule) error
	// gate, when non-nil, makes C_Sign wait until it can receive (or it is closed).
	gate    chan struct{}
	blocked atomic.Int64

	userLogins, ctxLogins atomic.Int64
}

func newFaultModule(inner module) *faultModule {
	return &faultModule{module: inner, live: map[pkcs11.SessionHandle]bool{}, dead: map[pkcs11.SessionHandle]bool{}}
}

// kill closes every session in the inner module and makes its handle invalid, as a restart
// of the HSM (or a card pulled from the reader) does. Callers hold f.mu.
func (f *faultModule) kill() {
	for h := range f.live {
		_ = f.module.CloseSession(h)
		f.dead[h] = true
	}
	clear(f.live)
}

func (f *faultModule) remove() { f.mu.Lock(); f.removed = true; f.kill(); f.mu.Unlock() }
func (f *faultModule) insert() { f.mu.Lock(); f.removed = false; f.mu.Unlock() }
func (f *faultModule) restart() {
	f.mu.Lock()
	f.kill()
	f.mu.Unlock()
}
func (f *faultModule) setSignHook(h func(*faultModule) error) {
	f.mu.Lock()
	f.signHook = h
	f.mu.Unlock()
}
func (f *faultModule) liveSessions() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.live) }

func (f *faultModule) check(sh pkcs11.SessionHandle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removed {
		return pkcs11.Error(pkcs11.CKR_DEVICE_REMOVED)
	}
	if f.dead[sh] {
		return pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID)
	}
	return nil
}

func (f *faultModule) GetSlotList(present bool) ([]uint, error) {
	f.mu.Lock()
	removed := f.removed
	f.mu.Unlock()
	if removed {
		return nil, nil
	}
	return f.module.GetSlotList(present)
}

func (f *faultModule) GetTokenInfo(slot uint) (pkcs11.TokenInfo, error) {
	f.mu.Lock()
	removed := f.removed
	f.mu.Unlock()
	if removed {
		return pkcs11.TokenInfo{}, pkcs11.Error(pkcs11.CKR_TOKEN_NOT_PRESENT)
	}
	return f.module.GetTokenInfo(slot)
}

func (f *faultModule) OpenSession(slot, flags uint) (pkcs11.SessionHandle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removed {
		return 0, pkcs11.Error(pkcs11.CKR_TOKEN_NOT_PRESENT)
	}
	h, err := f.module.OpenSession(slot, flags)
	if err == nil {
		delete(f.dead, h) // the module may reuse a number
		f.live[h] = true
	}
	return h, err
}

func (f *faultModule) CloseSession(sh pkcs11.SessionHandle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dead[sh] {
		delete(f.dead, sh)
		return pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID)
	}
	if !f.live[sh] {
		return pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID)
	}
	delete(f.live, sh)
	return f.module.CloseSession(sh)
}

func (f *faultModule) GetSessionInfo(sh pkcs11.SessionHandle) (pkcs11.SessionInfo, error) {
	if err := f.check(sh); err != nil {
		return pkcs11.SessionInfo{}, err
	}
	return f.module.GetSessionInfo(sh)
}

func (f *faultModule) Login(sh pkcs11.SessionHandle, userType uint, pin []byte) error {
	if userType == pkcs11.CKU_CONTEXT_SPECIFIC {
		f.ctxLogins.Add(1)
	} else {
		f.userLogins.Add(1)
	}
	if err := f.check(sh); err != nil {
		return err
	}
	return f.module.Login(sh, userType, pin)
}

func (f *faultModule) FindObjectsInit(sh pkcs11.SessionHandle, t []*pkcs11.Attribute) error {
	if err := f.check(sh); err != nil {
		return err
	}
	return f.module.FindObjectsInit(sh, t)
}

func (f *faultModule) FindObjects(sh pkcs11.SessionHandle, max int) ([]pkcs11.ObjectHandle, bool, error) {
	if err := f.check(sh); err != nil {
		return nil, false, err
	}
	return f.module.FindObjects(sh, max)
}

func (f *faultModule) FindObjectsFinal(sh pkcs11.SessionHandle) error {
	if err := f.check(sh); err != nil {
		return err
	}
	return f.module.FindObjectsFinal(sh)
}

func (f *faultModule) GetAttributeValue(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, a []*pkcs11.Attribute) ([]*pkcs11.Attribute, error) {
	if err := f.check(sh); err != nil {
		return nil, err
	}
	return f.module.GetAttributeValue(sh, o, a)
}

func (f *faultModule) SignInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error {
	if err := f.check(sh); err != nil {
		return err
	}
	return f.module.SignInit(sh, m, o)
}

func (f *faultModule) Sign(sh pkcs11.SessionHandle, msg []byte) ([]byte, error) {
	f.mu.Lock()
	hook, gate := f.signHook, f.gate
	f.mu.Unlock()
	if gate != nil {
		f.blocked.Add(1)
		<-gate
		f.blocked.Add(-1)
	}
	if hook != nil {
		if err := hook(f); err != nil {
			return nil, err
		}
	}
	if err := f.check(sh); err != nil {
		return nil, err
	}
	return f.module.Sign(sh, msg)
}
