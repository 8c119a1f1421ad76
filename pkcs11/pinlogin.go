//go:build cgo && !nopkcs11

package pkcs11

/*
#cgo linux LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

// The PIN-taking entry points of the CK_FUNCTION_LIST (PKCS#11 v2.40 order) with CK_ULONG ==
// unsigned long (Linux). Only the prefix up to C_Login is declared; nothing else is touched.
typedef unsigned long agw_ulong;
typedef agw_ulong (*agw_fn_initToken)(agw_ulong slot, unsigned char *pin, agw_ulong pinLen, unsigned char *label);
typedef agw_ulong (*agw_fn_initPIN)(agw_ulong session, unsigned char *pin, agw_ulong pinLen);
typedef agw_ulong (*agw_fn_login)(agw_ulong session, agw_ulong userType, unsigned char *pin, agw_ulong pinLen);
typedef struct {
	struct { unsigned char major, minor; } version;
	void *f[9];              // C_Initialize .. C_GetMechanismInfo
	agw_fn_initToken initToken;
	agw_fn_initPIN initPIN;
	void *g[7];              // C_SetPIN .. C_SetOperationState
	agw_fn_login login;
} agw_fnlist;
typedef agw_ulong (*agw_fn_getlist)(agw_fnlist **);

static void *agw_open(const char *path, agw_fnlist **list) {
	void *h = dlopen(path, RTLD_LAZY | RTLD_LOCAL);
	if (h == NULL) return NULL;
	agw_fn_getlist gl = (agw_fn_getlist)dlsym(h, "C_GetFunctionList");
	if (gl == NULL || gl(list) != 0 || *list == NULL) { dlclose(h); return NULL; }
	return h;
}
static void agw_close(void *h) { if (h) dlclose(h); }

// Each call copies the PIN into C memory it owns, and wipes that copy before freeing it.
static unsigned char *agw_dup(const void *pin, size_t n) {
	unsigned char *p = malloc(n ? n : 1);
	if (p && n) memcpy(p, pin, n);
	return p;
}
static void agw_free(unsigned char *p, size_t n) { if (p) { explicit_bzero(p, n); free(p); } }

static agw_ulong agw_login(agw_fnlist *l, agw_ulong sh, agw_ulong ut, const void *pin, size_t n) {
	unsigned char *p = agw_dup(pin, n);
	if (!p) return 2; // CKR_HOST_MEMORY
	agw_ulong rv = l->login(sh, ut, p, n);
	agw_free(p, n);
	return rv;
}
static agw_ulong agw_initpin(agw_fnlist *l, agw_ulong sh, const void *pin, size_t n) {
	unsigned char *p = agw_dup(pin, n);
	if (!p) return 2;
	agw_ulong rv = l->initPIN(sh, p, n);
	agw_free(p, n);
	return rv;
}
static agw_ulong agw_inittoken(agw_fnlist *l, agw_ulong slot, const void *pin, size_t n, const void *label) {
	unsigned char *p = agw_dup(pin, n);
	if (!p) return 2;
	agw_ulong rv = l->initToken(slot, p, n, (unsigned char *)label);
	agw_free(p, n);
	return rv;
}
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/miekg/pkcs11"
)

// pinCalls calls the three PIN-taking functions of a module with []byte PINs, because
// miekg/pkcs11 takes a Go string (immutable, cannot be wiped) and does not wipe its C copy.
// It dlopens the same path as miekg (the loader shares the handle, so the function list is the
// one miekg initialised) and calls through the module's CK_FUNCTION_LIST. The Go-side []byte
// is wiped by the caller; the C copy is wiped here (explicit_bzero).
type pinCalls struct {
	handle unsafe.Pointer
	list   *C.agw_fnlist
}

func openPINCalls(path string) (*pinCalls, error) {
	cs := C.CString(path)
	defer C.free(unsafe.Pointer(cs))
	var l *C.agw_fnlist
	h := C.agw_open(cs, &l)
	if h == nil {
		return nil, fmt.Errorf("%w: no C_GetFunctionList (path=%s)", ErrModule, path)
	}
	return &pinCalls{handle: h, list: l}, nil
}

func (p *pinCalls) close() {
	if p != nil && p.handle != nil {
		C.agw_close(p.handle)
		p.handle = nil
	}
}

func pinPtr(pin []byte) unsafe.Pointer {
	if len(pin) == 0 {
		return nil
	}
	return unsafe.Pointer(&pin[0])
}

func rvErr(rv C.agw_ulong) error {
	if rv == 0 {
		return nil
	}
	return pkcs11.Error(uint(rv))
}

func (p *pinCalls) login(sh pkcs11.SessionHandle, userType uint, pin []byte) error {
	return rvErr(C.agw_login(p.list, C.agw_ulong(sh), C.agw_ulong(userType), pinPtr(pin), C.size_t(len(pin))))
}

func (p *pinCalls) initPIN(sh pkcs11.SessionHandle, pin []byte) error {
	return rvErr(C.agw_initpin(p.list, C.agw_ulong(sh), pinPtr(pin), C.size_t(len(pin))))
}

func (p *pinCalls) initToken(slot uint, soPIN []byte, label string) error {
	var lbl [32]byte
	for i := range lbl {
		lbl[i] = ' '
	}
	copy(lbl[:], label)
	return rvErr(C.agw_inittoken(p.list, C.agw_ulong(slot), pinPtr(soPIN), C.size_t(len(soPIN)), unsafe.Pointer(&lbl[0])))
}
