package tokens

import "errors"

// Sentinel errors. Each rejection wraps exactly one of them (plus context);
// Code maps them to a stable machine-readable code for SOAP faults and logs.
var (
	// Input and structure.
	ErrMalformed      = errors.New("tokens: malformed or unsafe xml")
	ErrTokenCount     = errors.New("tokens: not exactly one token in the expected place")
	ErrDuplicateID    = errors.New("tokens: duplicate id in document")
	ErrStructure      = errors.New("tokens: assertion structure not allowed")
	ErrWrongType      = errors.New("tokens: token is not of the expected type")
	ErrSecurityHeader = errors.New("tokens: ws-security header missing or not allowed")

	// Signature profile and cryptography.
	ErrNoSignature        = errors.New("tokens: signature missing")
	ErrSignaturePlacement = errors.New("tokens: signature not the single immediate child after issuer")
	ErrAlgorithm          = errors.New("tokens: algorithm not allowed")
	ErrTransforms         = errors.New("tokens: transforms not exactly enveloped-signature + exc-c14n")
	ErrReference          = errors.New("tokens: reference does not point at the assertion")
	ErrKeyInfo            = errors.New("tokens: keyinfo not allowed")
	ErrSignatureInvalid   = errors.New("tokens: signature does not verify")
	ErrSignatureProfile   = errors.New("tokens: signature element shape not allowed")

	// Signer certificate and trust.
	ErrCertUnknown = errors.New("tokens: signing certificate not found")
	ErrUntrusted   = errors.New("tokens: signing certificate not trusted")
	ErrKeyUsage    = errors.New("tokens: certificate key purpose not allowed for this token type")
	ErrWeakKey     = errors.New("tokens: signing key too weak")
	ErrRevoked     = errors.New("tokens: signing certificate revoked")
	ErrCRLStale    = errors.New("tokens: crl expired (nextupdate passed)")
	ErrCRLMissing  = errors.New("tokens: no crl for issuing ca")
	ErrNotUZI      = errors.New("tokens: not a usable uzi certificate")

	// SAML semantics.
	ErrVersion      = errors.New("tokens: saml version not 2.0")
	ErrIssueInstant = errors.New("tokens: issueinstant invalid")
	ErrNotYetValid  = errors.New("tokens: token not yet valid")
	ErrExpired      = errors.New("tokens: token expired")
	ErrLifetime     = errors.New("tokens: token lifetime exceeds the maximum for its type")
	ErrAudience     = errors.New("tokens: audience does not include the zim")
	ErrNameID       = errors.New("tokens: nameid does not match the signer")
	ErrIssuer       = errors.New("tokens: issuer does not match the signer")
	ErrHolderOfKey  = errors.New("tokens: subjectconfirmation does not match the signer")
	ErrAttribute    = errors.New("tokens: attribute missing, repeated, multi-valued or unknown")
	ErrUitvoerder   = errors.New("tokens: uitvoerder does not match the signer")
	ErrReplay       = errors.New("tokens: token already used (replay)")
	ErrReplayStore  = errors.New("tokens: replay cache unavailable")

	// Binding (aorta-uzi.md section 7).
	ErrMissingToken       = errors.New("tokens: required companion token missing")
	ErrBindingURA         = errors.New("tokens: organisation (ura) differs between tokens or message")
	ErrBindingBSN         = errors.New("tokens: bsn differs between tokens and message")
	ErrBindingContext     = errors.New("tokens: autorisatieregel/context differs between mandate and transaction")
	ErrBindingInteraction = errors.New("tokens: interactionid differs from the message")
	ErrBindingMessageID   = errors.New("tokens: message id differs from the message")
	ErrBindingAuthor      = errors.New("tokens: author differs from the transaction token nameid")
	ErrBindingPeer        = errors.New("tokens: mtls peer ura differs from the token ura")
	ErrBindingMandate     = errors.New("tokens: author not covered by the mandate")

	// Signing side.
	ErrInvalidClaims   = errors.New("tokens: invalid claims for signing")
	ErrSignerKey       = errors.New("tokens: signing key or certificate not allowed for this token type")
	ErrValidityRule    = errors.New("tokens: requested validity breaks the rules for this token type")
	ErrConfig          = errors.New("tokens: invalid configuration")
	ErrSigningFailed   = errors.New("tokens: signing failed")
	ErrUnsupportedType = errors.New("tokens: unknown token type")
)

var codes = []struct {
	err  error
	code string
}{
	{ErrMalformed, "Malformed"}, {ErrTokenCount, "TokenCount"}, {ErrDuplicateID, "DuplicateID"},
	{ErrStructure, "Structure"}, {ErrWrongType, "WrongType"}, {ErrSecurityHeader, "SecurityHeader"},
	{ErrNoSignature, "NoSignature"}, {ErrSignaturePlacement, "SignaturePlacement"},
	{ErrAlgorithm, "Algorithm"}, {ErrTransforms, "Transforms"}, {ErrReference, "Reference"},
	{ErrKeyInfo, "KeyInfo"}, {ErrSignatureProfile, "SignatureProfile"}, {ErrSignatureInvalid, "SignatureInvalid"},
	{ErrCertUnknown, "CertUnknown"}, {ErrUntrusted, "Untrusted"}, {ErrKeyUsage, "KeyUsage"},
	{ErrWeakKey, "WeakKey"}, {ErrRevoked, "Revoked"}, {ErrCRLStale, "CRLStale"},
	{ErrCRLMissing, "CRLMissing"}, {ErrNotUZI, "NotUZI"},
	{ErrVersion, "Version"}, {ErrIssueInstant, "IssueInstant"}, {ErrNotYetValid, "NotYetValid"},
	{ErrExpired, "Expired"}, {ErrLifetime, "Lifetime"}, {ErrAudience, "Audience"},
	{ErrNameID, "NameID"}, {ErrIssuer, "Issuer"}, {ErrHolderOfKey, "HolderOfKey"},
	{ErrAttribute, "Attribute"}, {ErrUitvoerder, "Uitvoerder"}, {ErrReplay, "Replay"},
	{ErrReplayStore, "ReplayStore"},
	{ErrMissingToken, "MissingToken"}, {ErrBindingURA, "BindingURA"}, {ErrBindingBSN, "BindingBSN"},
	{ErrBindingContext, "BindingContext"}, {ErrBindingInteraction, "BindingInteraction"},
	{ErrBindingMessageID, "BindingMessageID"}, {ErrBindingAuthor, "BindingAuthor"},
	{ErrBindingPeer, "BindingPeer"}, {ErrBindingMandate, "BindingMandate"},
	{ErrInvalidClaims, "InvalidClaims"}, {ErrSignerKey, "SignerKey"}, {ErrValidityRule, "ValidityRule"},
	{ErrConfig, "Config"}, {ErrSigningFailed, "SigningFailed"}, {ErrUnsupportedType, "UnsupportedType"},
}

// Code returns the machine-readable code of a tokens error (for example
// "BindingBSN" or "Revoked"), or "Internal" when err wraps none of the
// sentinels. The LSP simulator and the gateway map it to a SOAP fault code.
func Code(err error) string {
	if err == nil {
		return ""
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "Internal"
}

// reject wraps a sentinel with (key=value) context.
type rejectError struct {
	kind error
	msg  string
	err  error
}

func (e *rejectError) Error() string {
	if e.msg == "" {
		return e.kind.Error()
	}
	return e.kind.Error() + " (" + e.msg + ")"
}

func (e *rejectError) Unwrap() []error {
	if e.err != nil {
		return []error{e.kind, e.err}
	}
	return []error{e.kind}
}
