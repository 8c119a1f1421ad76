package lsp

import (
	"errors"
	"net/http"

	"github.com/aortagw/aortagw/internal/soap"
	"github.com/aortagw/aortagw/tokens"
)

// Fault codes the simulator answers (docs/lsp.md has the table). The "zim"
// prefix is bound to soap.NSFaultZIM.
const (
	FaultClientCertificateRefused = "zim:ClientCertificateRefused"
	FaultMethodNotAllowed         = "zim:MethodNotAllowed"
	FaultContentType              = "zim:UnsupportedContentType"
	FaultTooLarge                 = "zim:MessageTooLarge"
	FaultMalformed                = "zim:MalformedMessage"
	FaultVersionMismatch          = "soap:VersionMismatch"
	FaultMustUnderstand           = "soap:MustUnderstand"
	FaultSecurityHeaderMissing    = "zim:SecurityHeaderMissing"
	FaultSecurityHeaderInvalid    = "zim:SecurityHeaderInvalid"
	FaultHL7Invalid               = "zim:HL7Invalid"
	FaultWrongReceiver            = "zim:WrongReceiver"
	FaultTokenCount               = "zim:TokenCount"
	FaultTokenMissing             = "zim:TokenMissing"
	FaultTokenReplayed            = "zim:TokenReplayed"
	FaultURAMismatch              = "zim:URAMismatch"
	FaultPeerURAMismatch          = "zim:PeerURAMismatch"
	FaultBSNMismatch              = "zim:BSNMismatch"
	FaultBSNMissing               = "zim:BSNMissing"
	FaultInteractionMismatch      = "zim:InteractionMismatch"
	FaultMessageIDMismatch        = "zim:MessageIDMismatch"
	FaultAuthorMismatch           = "zim:AuthorMismatch"
	FaultContextMismatch          = "zim:ContextMismatch"
	FaultMandateNotCovering       = "zim:MandateNotCovering"
	FaultInternal                 = "zim:Internal"
	// Token faults not listed above are "zim:Token" + tokens.Code(err), for
	// example zim:TokenSignatureInvalid, zim:TokenExpired, zim:TokenRevoked.
)

// simError is a refusal with its fault.
type simError struct {
	status int
	fault  soap.Fault
	err    error
}

func (e *simError) Error() string { return e.fault.Code + ": " + e.fault.String }
func (e *simError) Unwrap() error { return e.err }

func refuse(code, msg string, err error) *simError {
	detail := ""
	if err != nil {
		detail = err.Error()
	}
	return &simError{status: http.StatusInternalServerError, fault: soap.Fault{Code: code, String: msg, Detail: detail}, err: err}
}

// envelopeFault maps a soap.ParseEnvelope error to a fault.
func envelopeFault(err error) *simError {
	switch {
	case errors.Is(err, soap.ErrSOAPVersion):
		return refuse(FaultVersionMismatch, "only SOAP 1.1 is accepted", err)
	case errors.Is(err, soap.ErrTooLarge):
		return refuse(FaultTooLarge, "message too large", err)
	case errors.Is(err, soap.ErrDuplicateSecurity), errors.Is(err, soap.ErrMustUnderstand),
		errors.Is(err, soap.ErrSecurityContent), errors.Is(err, soap.ErrSecurityMisplaced):
		return refuse(FaultSecurityHeaderInvalid, "wsse:Security header for the zim actor is invalid", err)
	}
	return refuse(FaultMalformed, "malformed SOAP message", err)
}

// hl7Fault maps an hl7.Read error to a fault.
func hl7Fault(err error) *simError {
	return refuse(FaultHL7Invalid, "HL7v3 message refused", err)
}

// tokenFault maps a tokens error to a specific fault.
func tokenFault(err error) *simError {
	switch {
	case errors.Is(err, tokens.ErrReplay):
		return refuse(FaultTokenReplayed, "transaction token already used", err)
	case errors.Is(err, tokens.ErrBindingPeer):
		return refuse(FaultPeerURAMismatch, "URA of the TLS client certificate differs from the tokens", err)
	case errors.Is(err, tokens.ErrBindingURA):
		return refuse(FaultURAMismatch, "URA differs between tokens and message", err)
	case errors.Is(err, tokens.ErrBindingBSN):
		return refuse(FaultBSNMismatch, "BSN differs between tokens and message", err)
	case errors.Is(err, tokens.ErrBindingInteraction):
		return refuse(FaultInteractionMismatch, "interactionId differs between token and message", err)
	case errors.Is(err, tokens.ErrBindingMessageID):
		return refuse(FaultMessageIDMismatch, "message id differs between token and message", err)
	case errors.Is(err, tokens.ErrBindingAuthor):
		return refuse(FaultAuthorMismatch, "author differs from the transaction token", err)
	case errors.Is(err, tokens.ErrBindingContext):
		return refuse(FaultContextMismatch, "autorisatieregel/context differs between mandate and transaction token", err)
	case errors.Is(err, tokens.ErrBindingMandate):
		return refuse(FaultMandateNotCovering, "the mandate does not cover the author", err)
	case errors.Is(err, tokens.ErrMissingToken):
		return refuse(FaultTokenMissing, "a required token is missing", err)
	case errors.Is(err, tokens.ErrTokenCount):
		return refuse(FaultTokenCount, "wrong number of tokens", err)
	case errors.Is(err, tokens.ErrSecurityHeader):
		return refuse(FaultSecurityHeaderInvalid, "wsse:Security header for the zim actor is invalid", err)
	}
	code := tokens.Code(err)
	if code == "Internal" {
		return refuse(FaultInternal, "internal error", err)
	}
	return refuse("zim:Token"+code, "token refused", err)
}
