package pkcs11

import "errors"

// Sentinel errors. Wrapped errors carry (key=value) context; match with errors.Is.
var (
	// ErrNoCgo is returned by every operation in builds without cgo (or with the nopkcs11 tag).
	ErrNoCgo = errors.New("pkcs11: not available in this build (needs cgo, built without the nopkcs11 tag)")
	// ErrInvalidURI is returned for a PKCS#11 URI that does not follow RFC 7512 or our rules.
	ErrInvalidURI = errors.New("pkcs11: invalid uri")
	// ErrModuleNotAllowed is returned when module-path is not on Options.AllowedModules.
	ErrModuleNotAllowed = errors.New("pkcs11: module not allowed")
	// ErrModule is returned when a PKCS#11 module cannot be loaded or initialised.
	ErrModule = errors.New("pkcs11: module cannot be loaded")
	// ErrPINValueNotAllowed is returned for a URI with pin-value when Options.AllowPINValue is false.
	ErrPINValueNotAllowed = errors.New("pkcs11: pin-value is not allowed (use pin-source=file:)")
	// ErrPINSource is returned when the PIN file is missing, unsafe or malformed.
	ErrPINSource = errors.New("pkcs11: unusable pin source")
	// ErrPIN is returned when the token refused the PIN (incorrect, locked, expired). It is never
	// retried: the token stays unhealthy until the key is reopened.
	ErrPIN = errors.New("pkcs11: pin rejected by token (not retried)")
	// ErrTokenNotFound is returned when no slot holds a token matching the URI.
	ErrTokenNotFound = errors.New("pkcs11: token not found")
	// ErrTokenExists is returned by Admin.InitToken when the label is taken.
	ErrTokenExists = errors.New("pkcs11: token label already in use")
	// ErrNoFreeSlot is returned by Admin.InitToken when no uninitialised slot is left.
	ErrNoFreeSlot = errors.New("pkcs11: no free slot")
	// ErrKeyNotFound is returned when the private key (or the purpose's certificate) is absent.
	ErrKeyNotFound = errors.New("pkcs11: key not found")
	// ErrAmbiguous is returned when the URI or purpose matches more than one object.
	ErrAmbiguous = errors.New("pkcs11: more than one object matches")
	// ErrTokenBusy is returned when no session became free before the context or deadline ended.
	ErrTokenBusy = errors.New("pkcs11: token busy (no free session)")
	// ErrTokenUnavailable is returned while the token is gone or being recovered (fail closed).
	ErrTokenUnavailable = errors.New("pkcs11: token unavailable")
	// ErrClosed is returned by a Key or Admin after Close.
	ErrClosed = errors.New("pkcs11: closed")
	// ErrUnsupported is returned for a key type, hash or mechanism the key/token cannot do.
	ErrUnsupported = errors.New("pkcs11: unsupported")
	// ErrDigestLength is returned when the digest length does not match the hash function.
	ErrDigestLength = errors.New("pkcs11: digest length does not match hash")
	// ErrNeedsMessage is returned by Sign when the token only offers hash-and-sign mechanisms
	// (e.g. CKM_SHA256_RSA_PKCS): use SignMessage with the data instead of a digest.
	ErrNeedsMessage = errors.New("pkcs11: token only signs whole messages (hash-and-sign); use SignMessage")
	// ErrDevice wraps a PKCS#11 return code from the module.
	ErrDevice = errors.New("pkcs11: device error")
)

// CodeError carries a PKCS#11 return code (CKR_*) from the module. It matches ErrDevice with
// errors.Is; Name is the CKR_ constant name.
type CodeError struct {
	Op   string // the PKCS#11 function, e.g. "C_Sign"
	Code uint   // the CK_RV
	Name string // e.g. "CKR_DEVICE_REMOVED"
}

// Error formats the call and the return code.
func (e *CodeError) Error() string { return "pkcs11: " + e.Op + " failed (rv=" + e.Name + ")" }

// Is makes errors.Is(err, ErrDevice) true for every CodeError.
func (e *CodeError) Is(target error) bool { return target == ErrDevice }
