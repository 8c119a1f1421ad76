package gateway

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/aortagw/aortagw/internal/soap"
	"github.com/aortagw/aortagw/lsp"
	"github.com/aortagw/aortagw/pkcs11"
)

// Code is the aortagw fault code the XIS receives (as faultcode
// "aortagw:<Code>" and in the fault detail). Codes are stable API: the table
// in docs/gateway.md documents each one.
type Code string

// The fault codes. Each refusal has its own code; for every one of them
// nothing is sent to the LSP.
const (
	CodeBadRequest         Code = "BadRequest"         // not a well-formed, strictly pre-parsed SOAP/HL7v3 message
	CodeUnauthenticated    Code = "Unauthenticated"    // XIS client certificate or bearer token missing/wrong
	CodeBodyTooLarge       Code = "BodyTooLarge"       // body over xis.max_body_bytes
	CodeSecurityHeader     Code = "SecurityHeader"     // the XIS sent its own wsse:Security (token smuggling)
	CodeUnknownInteraction Code = "UnknownInteraction" // interaction id not configured
	CodeWrongOrganisation  Code = "WrongOrganisation"  // URA in the message is not this care provider
	CodeNoEnrolment        Code = "NoEnrolment"        // no valid enrolment token for (URA, BSN)
	CodeCaregiverUnknown   Code = "CaregiverUnknown"   // no author/overseer UZI number in the message
	CodeNoMandate          Code = "NoMandate"          // no mandate of the responsible caregiver for app+context
	CodeMandateExpired     Code = "MandateExpired"     // the only matching mandates have expired
	CodeMandateRevoked     Code = "MandateRevoked"     // the only matching mandates were revoked
	CodeActorNotMandated   Code = "ActorNotMandated"   // the author is not among the mandated
	CodeActorBlocked       Code = "ActorBlocked"       // the author is blocked (leaver)
	CodeHSMUnavailable     Code = "HSMUnavailable"     // the server key could not sign
	CodeStoreUnavailable   Code = "StoreUnavailable"   // the store (or its audit log) failed
	CodeLSPUnavailable     Code = "LSPUnavailable"     // the LSP could not be reached or timed out
	CodeInternal           Code = "Internal"           // a bug; see the logs
)

// codeStatus is the HTTP status of each code. SOAP 1.1 over HTTP answers
// processing faults with 500; HTTP-level refusals keep their own status.
var codeStatus = map[Code]int{
	CodeBadRequest:         http.StatusInternalServerError,
	CodeUnauthenticated:    http.StatusUnauthorized,
	CodeBodyTooLarge:       http.StatusRequestEntityTooLarge,
	CodeSecurityHeader:     http.StatusInternalServerError,
	CodeUnknownInteraction: http.StatusInternalServerError,
	CodeWrongOrganisation:  http.StatusInternalServerError,
	CodeNoEnrolment:        http.StatusInternalServerError,
	CodeCaregiverUnknown:   http.StatusInternalServerError,
	CodeNoMandate:          http.StatusInternalServerError,
	CodeMandateExpired:     http.StatusInternalServerError,
	CodeMandateRevoked:     http.StatusInternalServerError,
	CodeActorNotMandated:   http.StatusInternalServerError,
	CodeActorBlocked:       http.StatusInternalServerError,
	CodeHSMUnavailable:     http.StatusServiceUnavailable,
	CodeStoreUnavailable:   http.StatusServiceUnavailable,
	CodeLSPUnavailable:     http.StatusBadGateway,
	CodeInternal:           http.StatusInternalServerError,
}

// clientFault reports whether the fault is the sender's (soap:Client) rather
// than the gateway's or the LSP's (soap:Server).
func (c Code) clientFault() bool {
	switch c {
	case CodeHSMUnavailable, CodeStoreUnavailable, CodeLSPUnavailable, CodeInternal:
		return false
	}
	return true
}

// Status is the HTTP status the XIS receives with this code.
func (c Code) Status() int {
	if s, ok := codeStatus[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Error is the boundary error: a code, a message safe to show the XIS (no
// token bodies, no PINs, no internal paths) and the wrapped cause for logs.
type Error struct {
	Code   Code
	Public string
	Err    error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("gateway: %s: %s: %v", e.Code, e.Public, e.Err)
	}
	return fmt.Sprintf("gateway: %s: %s", e.Code, e.Public)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// hsmPublic is the public reason of every HSMUnavailable fault that was
// classified from its cause.
const hsmPublic = "the server key in the HSM could not sign (busy, unavailable or PIN refused)"

// hsmFailure reports whether err comes from the server key in the HSM: no
// free session in time (pkcs11.ErrTokenBusy), the token gone or recovering
// (pkcs11.ErrTokenUnavailable), the PIN refused (pkcs11.ErrPIN), or the key
// failing to sign the mTLS handshake with the LSP (lsp.ErrClientKey). In all
// of these nothing reached the LSP, and there is no software fallback.
func hsmFailure(err error) bool {
	return err != nil && (errors.Is(err, pkcs11.ErrTokenBusy) || errors.Is(err, pkcs11.ErrTokenUnavailable) ||
		errors.Is(err, pkcs11.ErrPIN) || errors.Is(err, lsp.ErrClientKey))
}

// fail builds a boundary error. A cause from the HSM (hsmFailure) always
// yields HSMUnavailable (503), whatever code the call site chose, so an HSM
// that is busy or down is never reported as an LSP or internal failure.
func fail(code Code, cause error, format string, args ...any) *Error {
	if code != CodeHSMUnavailable && hsmFailure(cause) {
		return &Error{Code: CodeHSMUnavailable, Public: hsmPublic, Err: cause}
	}
	return &Error{Code: code, Public: fmt.Sprintf(format, args...), Err: cause}
}

// AsError classifies any error as an *Error: an *Error in the chain as it
// is, an HSM failure as HSMUnavailable, anything else as CodeInternal.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if hsmFailure(err) {
		return &Error{Code: CodeHSMUnavailable, Public: hsmPublic, Err: err}
	}
	return &Error{Code: CodeInternal, Public: "internal error", Err: err}
}

// writeFault answers the XIS with an aortagw SOAP fault: faultcode
// aortagw:<Code>, a faultstring with the code and the public reason, and
// the code again as the detail (for programs).
func (s *Server) writeFault(w http.ResponseWriter, e *Error) {
	soap.WriteFault(w, e.Code.Status(), soap.Fault{
		Code:   "aortagw:" + string(e.Code),
		String: fmt.Sprintf("%s: %s", e.Code, e.Public),
		Detail: string(e.Code),
	})
}
