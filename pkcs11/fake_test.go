//go:build cgo && !nopkcs11

package pkcs11

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/binary"
	"slices"
	"sync"

	"github.com/miekg/pkcs11"
)

// softModule is a pure-Go PKCS#11 token for the default test backend. It keeps the rules the
// real modules enforce and our code depends on: sessions per slot with a maximum, login state
// per token (lost when the last session closes), one active operation per session,
// CKR_USER_NOT_LOGGED_IN for private objects without login, CKA_ALWAYS_AUTHENTICATE needing a
// context-specific login between C_SignInit and C_Sign, and an operation ending with C_Sign.
type softModule struct {
	mu       sync.Mutex
	tokens   map[uint]*softToken // by slot
	sessions map[pkcs11.SessionHandle]*softSession
	nextH    uint
	mechs    []uint
}

type softToken struct {
	label, serial string
	pin           []byte
	maxSessions   uint
	loggedIn      bool
	objects       map[pkcs11.ObjectHandle]*softObject
}

type softObject struct {
	class      uint
	id         []byte
	label      string
	key        crypto.Signer // private keys
	pub        crypto.PublicKey
	certDER    []byte
	alwaysAuth bool
}

type softSession struct {
	slot      uint
	signing   bool
	signMech  *pkcs11.Mechanism
	signKey   *softObject
	ctxLogin  bool
	findAct   bool
	findQueue []pkcs11.ObjectHandle
}

var _ module = (*softModule)(nil)

func newSoftModule(mechs ...uint) *softModule {
	if len(mechs) == 0 {
		mechs = []uint{pkcs11.CKM_RSA_PKCS, pkcs11.CKM_RSA_PKCS_PSS, pkcs11.CKM_SHA256_RSA_PKCS, pkcs11.CKM_ECDSA}
	}
	return &softModule{tokens: map[uint]*softToken{}, sessions: map[pkcs11.SessionHandle]*softSession{}, nextH: 100, mechs: mechs}
}

func (m *softModule) addToken(slot uint, label string, pin []byte, maxSessions uint) *softToken {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := &softToken{label: label, serial: "SN" + label, pin: bytes.Clone(pin), maxSessions: maxSessions, objects: map[pkcs11.ObjectHandle]*softObject{}}
	m.tokens[slot] = t
	return t
}

func (m *softModule) addObject(slot uint, o *softObject) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextH++
	m.tokens[slot].objects[pkcs11.ObjectHandle(m.nextH)] = o
}

func rvE(c uint) error { return pkcs11.Error(c) }

func (m *softModule) sess(sh pkcs11.SessionHandle) (*softSession, *softToken, error) {
	s, ok := m.sessions[sh]
	if !ok {
		return nil, nil, rvE(pkcs11.CKR_SESSION_HANDLE_INVALID)
	}
	return s, m.tokens[s.slot], nil
}

func (m *softModule) GetInfo() (pkcs11.Info, error) {
	return pkcs11.Info{ManufacturerID: "aortagw", LibraryDescription: "soft test module"}, nil
}

func (m *softModule) GetSlotList(bool) ([]uint, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []uint
	for s := range m.tokens {
		out = append(out, s)
	}
	slices.Sort(out)
	return out, nil
}

func (m *softModule) GetSlotInfo(slot uint) (pkcs11.SlotInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.tokens[slot]; !ok {
		return pkcs11.SlotInfo{}, rvE(pkcs11.CKR_SLOT_ID_INVALID)
	}
	return pkcs11.SlotInfo{SlotDescription: "soft slot", ManufacturerID: "aortagw", Flags: pkcs11.CKF_TOKEN_PRESENT}, nil
}

func (m *softModule) GetTokenInfo(slot uint) (pkcs11.TokenInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[slot]
	if !ok {
		return pkcs11.TokenInfo{}, rvE(pkcs11.CKR_SLOT_ID_INVALID)
	}
	return pkcs11.TokenInfo{Label: t.label, SerialNumber: t.serial, ManufacturerID: "aortagw", Model: "soft",
		Flags:           pkcs11.CKF_TOKEN_INITIALIZED | pkcs11.CKF_LOGIN_REQUIRED | pkcs11.CKF_USER_PIN_INITIALIZED,
		MaxSessionCount: t.maxSessions}, nil
}

func (m *softModule) GetMechanismList(uint) ([]*pkcs11.Mechanism, error) {
	out := make([]*pkcs11.Mechanism, 0, len(m.mechs))
	for _, x := range m.mechs {
		out = append(out, pkcs11.NewMechanism(x, nil))
	}
	return out, nil
}

func (m *softModule) OpenSession(slot uint, _ uint) (pkcs11.SessionHandle, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[slot]
	if !ok {
		return 0, rvE(pkcs11.CKR_SLOT_ID_INVALID)
	}
	n := uint(0)
	for _, s := range m.sessions {
		if s.slot == slot {
			n++
		}
	}
	if t.maxSessions != 0 && n >= t.maxSessions {
		return 0, rvE(pkcs11.CKR_SESSION_COUNT)
	}
	m.nextH++
	h := pkcs11.SessionHandle(m.nextH)
	m.sessions[h] = &softSession{slot: slot}
	return h, nil
}

func (m *softModule) CloseSession(sh pkcs11.SessionHandle) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, t, err := m.sess(sh)
	if err != nil {
		return err
	}
	delete(m.sessions, sh)
	for _, o := range m.sessions {
		if o.slot == s.slot {
			return nil
		}
	}
	t.loggedIn = false // the last session closed: logged out
	return nil
}

func (m *softModule) GetSessionInfo(sh pkcs11.SessionHandle) (pkcs11.SessionInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, t, err := m.sess(sh)
	if err != nil {
		return pkcs11.SessionInfo{}, err
	}
	st := uint(pkcs11.CKS_RO_PUBLIC_SESSION)
	if t.loggedIn {
		st = pkcs11.CKS_RO_USER_FUNCTIONS
	}
	return pkcs11.SessionInfo{SlotID: s.slot, State: st, Flags: pkcs11.CKF_SERIAL_SESSION}, nil
}

func (m *softModule) Login(sh pkcs11.SessionHandle, userType uint, pin []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, t, err := m.sess(sh)
	if err != nil {
		return err
	}
	switch userType {
	case pkcs11.CKU_USER:
		if t.loggedIn {
			return rvE(pkcs11.CKR_USER_ALREADY_LOGGED_IN)
		}
		if !bytes.Equal(pin, t.pin) {
			return rvE(pkcs11.CKR_PIN_INCORRECT)
		}
		t.loggedIn = true
	case pkcs11.CKU_CONTEXT_SPECIFIC:
		if !s.signing {
			return rvE(pkcs11.CKR_OPERATION_NOT_INITIALIZED)
		}
		if !bytes.Equal(pin, t.pin) {
			return rvE(pkcs11.CKR_PIN_INCORRECT)
		}
		s.ctxLogin = true
	default:
		return rvE(pkcs11.CKR_USER_TYPE_INVALID)
	}
	return nil
}

func (m *softModule) Logout(sh pkcs11.SessionHandle) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, t, err := m.sess(sh)
	if err != nil {
		return err
	}
	t.loggedIn = false
	return nil
}

func attrVal(tmpl []*pkcs11.Attribute, typ uint) ([]byte, bool) {
	for _, a := range tmpl {
		if a.Type == typ {
			return a.Value, true
		}
	}
	return nil, false
}

func (m *softModule) FindObjectsInit(sh pkcs11.SessionHandle, tmpl []*pkcs11.Attribute) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, t, err := m.sess(sh)
	if err != nil {
		return err
	}
	if s.findAct || s.signing {
		return rvE(pkcs11.CKR_OPERATION_ACTIVE)
	}
	s.findAct, s.findQueue = true, nil
	var hs []pkcs11.ObjectHandle
	for h := range t.objects {
		hs = append(hs, h)
	}
	slices.Sort(hs)
	for _, h := range hs {
		o := t.objects[h]
		if o.class == pkcs11.CKO_PRIVATE_KEY && !t.loggedIn {
			continue
		}
		if v, ok := attrVal(tmpl, pkcs11.CKA_CLASS); ok && attrUint(&pkcs11.Attribute{Value: v}) != o.class {
			continue
		}
		if v, ok := attrVal(tmpl, pkcs11.CKA_ID); ok && !bytes.Equal(v, o.id) {
			continue
		}
		if v, ok := attrVal(tmpl, pkcs11.CKA_LABEL); ok && string(v) != o.label {
			continue
		}
		s.findQueue = append(s.findQueue, h)
	}
	return nil
}

func (m *softModule) FindObjects(sh pkcs11.SessionHandle, max int) ([]pkcs11.ObjectHandle, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, _, err := m.sess(sh)
	if err != nil {
		return nil, false, err
	}
	if !s.findAct {
		return nil, false, rvE(pkcs11.CKR_OPERATION_NOT_INITIALIZED)
	}
	n := min(max, len(s.findQueue))
	out := s.findQueue[:n]
	s.findQueue = s.findQueue[n:]
	return out, false, nil
}

func (m *softModule) FindObjectsFinal(sh pkcs11.SessionHandle) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, _, err := m.sess(sh)
	if err != nil {
		return err
	}
	if !s.findAct {
		return rvE(pkcs11.CKR_OPERATION_NOT_INITIALIZED)
	}
	s.findAct = false
	return nil
}

func ulongBytes(v uint) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, uint64(v))
	return b
}

func (m *softModule) GetAttributeValue(sh pkcs11.SessionHandle, oh pkcs11.ObjectHandle, a []*pkcs11.Attribute) ([]*pkcs11.Attribute, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, t, err := m.sess(sh)
	if err != nil {
		return nil, err
	}
	o, ok := t.objects[oh]
	if !ok || o.class == pkcs11.CKO_PRIVATE_KEY && !t.loggedIn {
		return nil, rvE(pkcs11.CKR_OBJECT_HANDLE_INVALID)
	}
	out := make([]*pkcs11.Attribute, len(a))
	for i, at := range a {
		var v []byte
		switch at.Type {
		case pkcs11.CKA_CLASS:
			v = ulongBytes(o.class)
		case pkcs11.CKA_ID:
			v = o.id
		case pkcs11.CKA_LABEL:
			v = []byte(o.label)
		case pkcs11.CKA_VALUE:
			v = o.certDER
		case pkcs11.CKA_SIGN:
			v = []byte{1}
		case pkcs11.CKA_ALWAYS_AUTHENTICATE:
			v = boolByte(o.alwaysAuth)
		case pkcs11.CKA_KEY_TYPE:
			switch o.pub.(type) {
			case *rsa.PublicKey:
				v = ulongBytes(pkcs11.CKK_RSA)
			case *ecdsa.PublicKey:
				v = ulongBytes(pkcs11.CKK_EC)
			}
		case pkcs11.CKA_MODULUS:
			if p, ok := o.pub.(*rsa.PublicKey); ok {
				v = p.N.Bytes()
			}
		case pkcs11.CKA_PUBLIC_EXPONENT:
			if p, ok := o.pub.(*rsa.PublicKey); ok {
				v = []byte{byte(p.E >> 16), byte(p.E >> 8), byte(p.E)}
			}
		case pkcs11.CKA_EC_PARAMS:
			if _, ok := o.pub.(*ecdsa.PublicKey); ok {
				v, _ = asn1.Marshal(asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}) // P-256 only
			}
		case pkcs11.CKA_EC_POINT:
			if p, ok := o.pub.(*ecdsa.PublicKey); ok {
				raw, _ := p.Bytes()
				v, _ = asn1.Marshal(raw)
			}
		default:
			return nil, rvE(pkcs11.CKR_ATTRIBUTE_TYPE_INVALID)
		}
		out[i] = &pkcs11.Attribute{Type: at.Type, Value: v}
	}
	return out, nil
}

func (m *softModule) SignInit(sh pkcs11.SessionHandle, mech []*pkcs11.Mechanism, oh pkcs11.ObjectHandle) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, t, err := m.sess(sh)
	if err != nil {
		return err
	}
	if s.signing || s.findAct {
		return rvE(pkcs11.CKR_OPERATION_ACTIVE)
	}
	if !t.loggedIn {
		return rvE(pkcs11.CKR_USER_NOT_LOGGED_IN)
	}
	o, ok := t.objects[oh]
	if !ok || o.class != pkcs11.CKO_PRIVATE_KEY {
		return rvE(pkcs11.CKR_KEY_HANDLE_INVALID)
	}
	if len(mech) != 1 || !slices.Contains(m.mechs, mech[0].Mechanism) {
		return rvE(pkcs11.CKR_MECHANISM_INVALID)
	}
	s.signing, s.signMech, s.signKey, s.ctxLogin = true, mech[0], o, false
	return nil
}

func (m *softModule) Sign(sh pkcs11.SessionHandle, msg []byte) ([]byte, error) {
	m.mu.Lock()
	s, t, err := m.sess(sh)
	if err != nil {
		m.mu.Unlock()
		return nil, err
	}
	if !s.signing {
		m.mu.Unlock()
		return nil, rvE(pkcs11.CKR_OPERATION_NOT_INITIALIZED)
	}
	mech, key, ctxLogin := s.signMech, s.signKey, s.ctxLogin
	s.signing, s.ctxLogin = false, false // C_Sign always ends the operation
	loggedIn := t.loggedIn
	m.mu.Unlock()
	if !loggedIn || key.alwaysAuth && !ctxLogin {
		return nil, rvE(pkcs11.CKR_USER_NOT_LOGGED_IN)
	}
	switch mech.Mechanism {
	case pkcs11.CKM_RSA_PKCS:
		return rsa.SignPKCS1v15(nil, key.key.(*rsa.PrivateKey), 0, msg)
	case pkcs11.CKM_SHA256_RSA_PKCS:
		return key.key.Sign(rand.Reader, sha256Sum(msg), crypto.SHA256)
	case pkcs11.CKM_RSA_PKCS_PSS:
		p := mech.Parameter
		if len(p) != 24 {
			return nil, rvE(pkcs11.CKR_MECHANISM_PARAM_INVALID)
		}
		hashAlg := uint(binary.LittleEndian.Uint64(p[0:]))
		salt := int(binary.LittleEndian.Uint64(p[16:]))
		h := map[uint]crypto.Hash{pkcs11.CKM_SHA256: crypto.SHA256, pkcs11.CKM_SHA384: crypto.SHA384, pkcs11.CKM_SHA512: crypto.SHA512}[hashAlg]
		if h == 0 || len(msg) != h.Size() {
			return nil, rvE(pkcs11.CKR_DATA_LEN_RANGE)
		}
		return rsa.SignPSS(rand.Reader, key.key.(*rsa.PrivateKey), h, msg, &rsa.PSSOptions{SaltLength: salt})
	case pkcs11.CKM_ECDSA:
		k := key.key.(*ecdsa.PrivateKey)
		r, sv, err := ecdsa.Sign(rand.Reader, k, msg)
		if err != nil {
			return nil, err
		}
		n := (k.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*n)
		r.FillBytes(out[:n])
		sv.FillBytes(out[n:])
		return out, nil
	}
	return nil, rvE(pkcs11.CKR_MECHANISM_INVALID)
}

// Provisioning is done in Go for the soft module.
func (m *softModule) InitToken(uint, []byte, string) error {
	return rvE(pkcs11.CKR_FUNCTION_NOT_SUPPORTED)
}
func (m *softModule) InitPIN(pkcs11.SessionHandle, []byte) error {
	return rvE(pkcs11.CKR_FUNCTION_NOT_SUPPORTED)
}
func (m *softModule) GenerateKeyPair(pkcs11.SessionHandle, []*pkcs11.Mechanism, []*pkcs11.Attribute, []*pkcs11.Attribute) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error) {
	return 0, 0, rvE(pkcs11.CKR_FUNCTION_NOT_SUPPORTED)
}
func (m *softModule) CreateObject(pkcs11.SessionHandle, []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	return 0, rvE(pkcs11.CKR_FUNCTION_NOT_SUPPORTED)
}

func sha256Sum(b []byte) []byte { d := sha256.Sum256(b); return d[:] }
