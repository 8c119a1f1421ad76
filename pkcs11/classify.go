//go:build cgo && !nopkcs11

package pkcs11

import (
	"errors"
	"strings"

	"github.com/miekg/pkcs11"
)

// rv extracts the CK_RV from an error (P9: typed, never by string).
func rv(err error) (uint, bool) {
	var pe pkcs11.Error
	if errors.As(err, &pe) {
		return uint(pe), true
	}
	var ce *CodeError
	if errors.As(err, &ce) {
		return ce.Code, true
	}
	return 0, false
}

// classify turns a miekg pkcs11.Error into our *CodeError (op unknown); others pass through.
func classify(err error) error { return opErr("", err) }

// opErr wraps a module error with the name of the call.
func opErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var pe pkcs11.Error
	if errors.As(err, &pe) {
		if op == "" {
			op = "call"
		}
		return &CodeError{Op: op, Code: uint(pe), Name: rvName(uint(pe))}
	}
	return err
}

// isFatal reports return codes after which the session, the login or the object handles can
// no longer be trusted: the token is marked broken and recovered (P1-P3).
func isFatal(err error) bool {
	c, ok := rv(err)
	if !ok {
		return false
	}
	switch c {
	case pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_DEVICE_ERROR,
		pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_USER_NOT_LOGGED_IN,
		pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_HANDLE_INVALID, pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_SLOT_ID_INVALID:
		return true
	}
	return false
}

// isPINError reports codes that mean the PIN itself was refused: never retried (P6).
func isPINError(err error) bool {
	c, ok := rv(err)
	if !ok {
		return false
	}
	switch c {
	case pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_LOCKED, pkcs11.CKR_PIN_EXPIRED,
		pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE:
		return true
	}
	return false
}

// knownCodes bounds the "code" label of the error metric.
var knownCodes = map[uint]bool{
	pkcs11.CKR_DEVICE_REMOVED: true, pkcs11.CKR_TOKEN_NOT_PRESENT: true, pkcs11.CKR_DEVICE_ERROR: true,
	pkcs11.CKR_SESSION_HANDLE_INVALID: true, pkcs11.CKR_SESSION_CLOSED: true,
	pkcs11.CKR_USER_NOT_LOGGED_IN: true, pkcs11.CKR_OBJECT_HANDLE_INVALID: true,
	pkcs11.CKR_KEY_HANDLE_INVALID: true, pkcs11.CKR_PIN_INCORRECT: true, pkcs11.CKR_PIN_LOCKED: true,
	pkcs11.CKR_OPERATION_ACTIVE: true, pkcs11.CKR_SESSION_COUNT: true, pkcs11.CKR_GENERAL_ERROR: true,
	pkcs11.CKR_FUNCTION_FAILED: true, pkcs11.CKR_DATA_LEN_RANGE: true, pkcs11.CKR_MECHANISM_INVALID: true,
	pkcs11.CKR_DEVICE_MEMORY: true,
}

// codeLabel names an error for the metric label (bounded set).
func codeLabel(err error) string {
	switch {
	case errors.Is(err, ErrTokenBusy):
		return "busy"
	case errors.Is(err, ErrTokenUnavailable):
		return "unavailable"
	case errors.Is(err, ErrClosed):
		return "closed"
	}
	c, ok := rv(err)
	if !ok {
		return "other"
	}
	if knownCodes[c] {
		return rvName(c)
	}
	return "CKR_other"
}

// rvName returns the CKR_ constant name of a return code ("CKR_DEVICE_REMOVED").
func rvName(c uint) string {
	s := pkcs11.Error(c).Error() // "pkcs11: 0x32: CKR_DEVICE_REMOVED"
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}
