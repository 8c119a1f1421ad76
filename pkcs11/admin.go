//go:build cgo && !nopkcs11

package pkcs11

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"sync"

	"github.com/miekg/pkcs11"
)

// Admin provisions tokens (test PKI, SoftHSM): initialise a token, generate a key pair inside
// it, import a certificate. The gateway never uses it. Admin shares the process-wide module
// registry with Open, so a test can provision and then sign through the same module context.
// Methods are serialised by an internal lock; Close is idempotent.
type Admin struct {
	mu     sync.Mutex
	lib    *library
	closed bool
}

// OpenAdmin loads (or shares) the module at modulePath for provisioning. No allow-list
// applies: the caller names the module explicitly (tests, `aortagw pki`).
func OpenAdmin(modulePath string) (*Admin, error) {
	lib, err := loadModule(modulePath)
	if err != nil {
		return nil, err
	}
	return &Admin{lib: lib}, nil
}

// Close releases the module (finalised when its last user closes). It is idempotent.
func (a *Admin) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	a.lib.release()
	return nil
}

func (a *Admin) lock() (module, error) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil, ErrClosed
	}
	return a.lib.mod, nil
}

// InitToken initialises the first free (uninitialised) slot as a token labelled label, sets
// the SO PIN and the user PIN. The PINs are not kept; the caller wipes its slices.
func (a *Admin) InitToken(label string, soPIN, userPIN []byte) error {
	m, err := a.lock()
	if err != nil {
		return err
	}
	defer a.mu.Unlock()
	if label == "" || len(label) > 32 {
		return fmt.Errorf("%w: token label must be 1..32 bytes (label=%q)", ErrUnsupported, label)
	}
	if len(soPIN) == 0 || len(userPIN) == 0 {
		return fmt.Errorf("%w: empty pin", ErrPINSource)
	}
	if _, err := slotByLabel(m, label); err == nil {
		return fmt.Errorf("%w: (token=%s)", ErrTokenExists, label)
	} else if !errors.Is(err, ErrTokenNotFound) {
		return err
	}
	slots, err := m.GetSlotList(true)
	if err != nil {
		return opErr("C_GetSlotList", err)
	}
	free, found := uint(0), false
	for _, s := range slots {
		ti, err := m.GetTokenInfo(s)
		if err == nil && ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			free, found = s, true
			break
		}
	}
	if !found {
		return ErrNoFreeSlot
	}
	if err := m.InitToken(free, soPIN, label); err != nil {
		return fmt.Errorf("init token (token=%s): %w", label, opErr("C_InitToken", err))
	}
	// SoftHSM moves an initialised token to a new slot ID: look it up again by label.
	slot, err := slotByLabel(m, label)
	if err != nil {
		return err
	}
	sh, err := m.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return opErr("C_OpenSession", err)
	}
	defer func() { _ = m.CloseSession(sh) }()
	if err := m.Login(sh, pkcs11.CKU_SO, soPIN); err != nil {
		return fmt.Errorf("so login (token=%s): %w", label, opErr("C_Login", err))
	}
	defer func() { _ = m.Logout(sh) }()
	if err := m.InitPIN(sh, userPIN); err != nil {
		return fmt.Errorf("init user pin (token=%s): %w", label, opErr("C_InitPIN", err))
	}
	return nil
}

// userSession opens a read-write session on the token labelled label and logs the user in.
func userSession(m module, label string, userPIN []byte) (pkcs11.SessionHandle, func(), error) {
	slot, err := slotByLabel(m, label)
	if err != nil {
		return 0, nil, err
	}
	sh, err := m.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return 0, nil, opErr("C_OpenSession", err)
	}
	if err := m.Login(sh, pkcs11.CKU_USER, userPIN); err != nil {
		if c, ok := rv(err); !ok || c != pkcs11.CKR_USER_ALREADY_LOGGED_IN {
			_ = m.CloseSession(sh)
			if isPINError(err) {
				return 0, nil, fmt.Errorf("%w: (token=%s): %w", ErrPIN, label, opErr("C_Login", err))
			}
			return 0, nil, fmt.Errorf("login (token=%s): %w", label, opErr("C_Login", err))
		}
	}
	// No C_Logout: login state belongs to the application and token, and a Key of this process
	// may be using the same token. Closing the session logs out only when it is the last one.
	return sh, func() { _ = m.CloseSession(sh) }, nil
}

// GenerateRSAKey generates an RSA key pair of the given size inside the token labelled
// tokenLabel. The private key is CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE,
// CKA_SIGN, and CKA_ALWAYS_AUTHENTICATE when asked. Both halves carry id and label. It returns
// the public key.
func (a *Admin) GenerateRSAKey(tokenLabel string, userPIN []byte, id []byte, label string, bits int, alwaysAuthenticate bool) (crypto.PublicKey, error) {
	m, err := a.lock()
	if err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	if bits < 2048 || bits > 8192 {
		return nil, fmt.Errorf("%w: rsa key size (bits=%d)", ErrUnsupported, bits)
	}
	if len(id) == 0 {
		return nil, fmt.Errorf("%w: empty CKA_ID", ErrUnsupported)
	}
	sh, done, err := userSession(m, tokenLabel, userPIN)
	if err != nil {
		return nil, err
	}
	defer done()
	pub := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, bits),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	priv := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_ALWAYS_AUTHENTICATE, alwaysAuthenticate),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	pubH, _, err := m.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}, pub, priv)
	if err != nil {
		return nil, fmt.Errorf("generate rsa key (token=%s label=%s): %w", tokenLabel, label, opErr("C_GenerateKeyPair", err))
	}
	return readRSAPublic(m, sh, pubH)
}

func readRSAPublic(m module, sh pkcs11.SessionHandle, o pkcs11.ObjectHandle) (*rsa.PublicKey, error) {
	attrs, err := m.GetAttributeValue(sh, o, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil),
	})
	if err != nil {
		return nil, opErr("C_GetAttributeValue", err)
	}
	n := new(big.Int).SetBytes(attrs[0].Value)
	e := new(big.Int).SetBytes(attrs[1].Value)
	if n.Sign() == 0 || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
		return nil, fmt.Errorf("%w: malformed rsa public key on token", ErrUnsupported)
	}
	return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
}

// ImportCertificate stores cert on the token labelled tokenLabel as a CKO_CERTIFICATE of type
// CKC_X_509 with CKA_ID id (normally the id of its key pair), CKA_LABEL, CKA_SUBJECT,
// CKA_ISSUER, CKA_SERIAL_NUMBER (DER INTEGER) and CKA_VALUE.
func (a *Admin) ImportCertificate(tokenLabel string, userPIN []byte, id []byte, label string, cert *x509.Certificate) error {
	m, err := a.lock()
	if err != nil {
		return err
	}
	defer a.mu.Unlock()
	if cert == nil || len(id) == 0 {
		return fmt.Errorf("%w: certificate and id are required", ErrUnsupported)
	}
	serial, err := derInteger(cert.SerialNumber)
	if err != nil {
		return err
	}
	sh, done, err := userSession(m, tokenLabel, userPIN)
	if err != nil {
		return err
	}
	defer done()
	_, err = m.CreateObject(sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE),
		pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_TYPE, pkcs11.CKC_X_509),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_SUBJECT, cert.RawSubject),
		pkcs11.NewAttribute(pkcs11.CKA_ISSUER, cert.RawIssuer),
		pkcs11.NewAttribute(pkcs11.CKA_SERIAL_NUMBER, serial),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, cert.Raw),
	})
	if err != nil {
		return fmt.Errorf("import certificate (token=%s label=%s): %w", tokenLabel, label, opErr("C_CreateObject", err))
	}
	return nil
}
