package tokens

import (
	"fmt"
	"strings"
	"time"
)

// Type is one of the three AORTA token types.
type Type int

// The token types. The zero value is invalid.
const (
	TypeEnrolment   Type = iota + 1 // inschrijftoken
	TypeMandate                     // mandaattoken
	TypeTransaction                 // transactietoken
)

// String returns the English name ("enrolment", "mandate", "transaction").
func (t Type) String() string {
	switch t {
	case TypeEnrolment:
		return "enrolment"
	case TypeMandate:
		return "mandate"
	case TypeTransaction:
		return "transaction"
	}
	return fmt.Sprintf("type(%d)", int(t))
}

// ParseType accepts enrolment|inschrijf|inschrijftoken, mandate|mandaat|mandaattoken
// and transaction|transactie|transactietoken (case-insensitive).
func ParseType(s string) (Type, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "enrolment", "enrollment", "inschrijf", "inschrijftoken":
		return TypeEnrolment, nil
	case "mandate", "mandaat", "mandaattoken":
		return TypeMandate, nil
	case "transaction", "transactie", "transactietoken":
		return TypeTransaction, nil
	}
	return 0, fmt.Errorf("%w (type=%q)", ErrUnsupportedType, s)
}

// idPrefix is the prefix of generated assertion IDs per type.
func (t Type) idPrefix() string {
	switch t {
	case TypeEnrolment:
		return "ins_"
	case TypeMandate:
		return "mdt_"
	default:
		return "trx_"
	}
}

// Namespaces, formats and fixed values (aorta-uzi.md sections 2-5).
const (
	NSSAML   = "urn:oasis:names:tc:SAML:2.0:assertion"
	NSDSig   = "http://www.w3.org/2000/09/xmldsig#"
	NSWSSE   = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
	NSSOAP   = "http://schemas.xmlsoap.org/soap/envelope/"
	ActorZIM = "http://www.aortarelease.nl/actor/zim"

	// AudienceZIM is the LSP/ZIM audience every token must carry.
	AudienceZIM = "urn:IIroot:2.16.840.1.113883.2.4.6.6:IIext:1"

	FormatEntity        = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
	AttrNameFormat      = "urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified"
	MethodSenderVouches = "urn:oasis:names:tc:SAML:2.0:cm:sender-vouches"
	MethodHolderOfKey   = "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key"
	ClassSmartcardPKI   = "urn:oasis:names:tc:SAML:2.0:ac:classes:SmartcardPKI"
	ClassX509           = "urn:oasis:names:tc:SAML:2.0:ac:classes:X509"

	URAPrefix       = "urn:IIroot:2.16.528.1.1007.3.3:IIext:"
	URALegacyPrefix = "urn:oid:2.16.528.1.1007.3.3."
	UZIPrefix       = "urn:IIroot:2.16.528.1.1007.3.1:IIext:"
	AppIDPrefix     = "urn:IIroot:2.16.840.1.113883.2.4.6.6:IIext:"

	// Algorithms we emit.
	AlgExcC14N      = "http://www.w3.org/2001/10/xml-exc-c14n#"
	AlgEnveloped    = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
	AlgRSASHA256    = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
	AlgRSASHA384    = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
	AlgRSASHA512    = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
	AlgSHA256       = "http://www.w3.org/2001/04/xmlenc#sha256"
	AlgSHA384       = "http://www.w3.org/2001/04/xmldsig-more#sha384"
	AlgSHA512       = "http://www.w3.org/2001/04/xmlenc#sha512"
	algA84RSASHA256 = "http://www.w3.org/2000/09/xmldsig#rsa-sha256" // A84 sample variant, input only
	algA84SHA256    = "http://www.w3.org/2000/09/xmlenc#sha256"      // A84 sample variant, input only
)

// Attribute names.
const (
	attrUitvoerder       = "Uitvoerder"
	attrScantoken        = "Scantoken"
	attrVerlengingstoken = "Verlengingstoken"
	attrContext          = "autorisatieregel/context"
	attrInteractionID    = "interactionId"
	attrMessageIDRoot    = "messageIdRoot"
	attrMessageIDExt     = "messageIdExt"
	attrBSN              = "burgerServiceNummer"
	attrApplicationID    = "applicationID"
	attrContextCodeSys   = "contextCodeSystem"
	attrContextCode      = "contextCode"
	attrMandaatgever     = "mandaatgever"
	attrGemandateerde    = "gemandateerde"
)

// TimeFormat is the xs:dateTime layout emitted (UTC, milliseconds).
const TimeFormat = "2006-01-02T15:04:05.000Z"

// Validity limits.
const (
	// DefaultTransactionLifetime is NotOnOrAfter-IssueInstant of a transaction token.
	DefaultTransactionLifetime = 5 * time.Minute
	// MaxTransactionLifetime is the hard cap on NotOnOrAfter-NotBefore of a transaction token.
	MaxTransactionLifetime = 90 * time.Minute
	// TransactionBackdate is IssueInstant-NotBefore of a transaction token (clock skew).
	TransactionBackdate = 60 * time.Second
	// MaxEnrolmentLifetime is "1.5 years": 548 days (365*1.5 rounded up), NotOnOrAfter-NotBefore.
	MaxEnrolmentLifetime = 548 * 24 * time.Hour
	// DefaultMaxMandateLifetime caps a mandate besides the signing certificate's NotAfter
	// (UZI cards are valid at most 5 years).
	DefaultMaxMandateLifetime = 5 * 366 * 24 * time.Hour
)

// Enrolment holds the claims of an inschrijftoken (aorta-uzi.md section 3).
// Zero times are filled by the Signer: IssueInstant and AuthnInstant = now,
// NotBefore = IssueInstant, NotOnOrAfter = NotBefore + 548 days.
type Enrolment struct {
	ID                                                  string
	IssueInstant, NotBefore, NotOnOrAfter, AuthnInstant time.Time
	URA                                                 string // organisation where the BSN check took place
	BSN                                                 string // the validated BSN (Subject/NameID)
	Uitvoerder                                          string // UZI number of the person who checked; "" = taken from the certificate
	Audiences                                           []string
}

// Mandate holds the claims of a mandaattoken (aorta-uzi.md section 4; [P] layout).
// Zero times are filled by the Signer: IssueInstant = now, NotBefore = IssueInstant;
// NotOnOrAfter must be set, or UntilCardExpiry used.
type Mandate struct {
	ID                                    string
	IssueInstant, NotBefore, NotOnOrAfter time.Time
	URA                                   string   // organisation the mandate is valid in (Subject/NameID)
	GiverUZI, GiverRole                   string   // mandaatgever; "" = taken from the certificate
	Mandated                              []string // gemandateerden: "<UZI>", "<UZI>:<role>" or an applicationID URN
	ApplicationID                         string   // optional applicationID URN
	Context                               string   // autorisatieregel/context (required)
	Audiences                             []string
	// UntilCardExpiry asks the Signer to set NotOnOrAfter to the signing certificate's
	// NotAfter (when NotOnOrAfter is zero) or to clamp it to that. Without it a
	// NotOnOrAfter past the certificate is refused.
	UntilCardExpiry bool
}

// Transaction holds the claims of a transactietoken (aorta-uzi.md section 5).
// Zero times are filled by the Signer: IssueInstant = now, NotBefore = now-60s,
// NotOnOrAfter = now + the Signer's transaction lifetime (default 5 minutes).
type Transaction struct {
	ID                                    string
	IssueInstant, NotBefore, NotOnOrAfter time.Time
	URA                                   string
	// NameID is "<UZI>:<role>" for a caregiver signature; "" for a server-certificate
	// signature (conditional query). The Signer fills it from the certificate and
	// refuses a value that does not match.
	NameID                                     string
	BSN                                        string // "" when the message has no patient
	InteractionID, MessageIDRoot, MessageIDExt string
	ApplicationID                              string
	Context                                    string // autorisatieregel/context
	ContextCodeSystem, ContextCode             string
	Audiences                                  []string
}

// Signed is a signed token: immutable bytes, never re-serialised.
type Signed struct {
	typ          Type
	id, issuer   string
	notOnOrAfter time.Time
	raw          []byte
}

// Bytes returns the signed assertion. The slice is shared: do not modify it.
func (s *Signed) Bytes() []byte { return s.raw }

// ID returns the assertion ID.
func (s *Signed) ID() string { return s.id }

// Issuer returns the saml:Issuer value.
func (s *Signed) Issuer() string { return s.issuer }

// Type returns the token type.
func (s *Signed) Type() Type { return s.typ }

// NotOnOrAfter returns the end of the validity.
func (s *Signed) NotOnOrAfter() time.Time { return s.notOnOrAfter }
