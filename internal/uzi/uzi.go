package uzi

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
)

// Sentinel errors. Every error from this package wraps one of them.
var (
	// ErrNotUZI means the certificate carries no UZI subject identifier (SAN otherName 2.5.5.5).
	ErrNotUZI = errors.New("uzi: not a UZI certificate")
	// ErrMalformedSAN means the subjectAltName or the UZI subject identifier is malformed.
	ErrMalformedSAN = errors.New("uzi: malformed subject identifier")
	// ErrUnknownCA means the OID CA is neither a production UZI-register CA nor a known test CA.
	ErrUnknownCA = errors.New("uzi: unknown issuing CA")
	// ErrTestCA means a test CA was found while ParseOptions.ProductionOnly is set.
	ErrTestCA = errors.New("uzi: test CA not accepted")
	// ErrTypeMismatch means CA, SAN letter, policy and issuer disagree about the card type.
	ErrTypeMismatch = errors.New("uzi: card type mismatch")
	// ErrSerialMismatch means the subject serialNumber is missing, repeated or not the UZI number.
	ErrSerialMismatch = errors.New("uzi: subject serialNumber does not match UZI number")
	// ErrRole means the role code does not fit the card type.
	ErrRole = errors.New("uzi: invalid role code")
	// ErrKeyUsage means keyUsage, extended key usage and policy do not form a UZI key purpose.
	ErrKeyUsage = errors.New("uzi: invalid key usage")
	// ErrPolicy means no certificate policy of the UZI profile fits the certificate.
	ErrPolicy = errors.New("uzi: certificate policy mismatch")
	// ErrUPNMismatch means the UPN otherName is not <UZI>@<subscriber>.
	ErrUPNMismatch = errors.New("uzi: UPN does not match subject identifier")
	// ErrPermanentIdentifier means the permanentIdentifier is missing, malformed or not the URA.
	ErrPermanentIdentifier = errors.New("uzi: invalid permanentIdentifier")
	// ErrInvalidBSN means a BSN is not 9 digits or fails the eleven-test.
	ErrInvalidBSN = errors.New("uzi: invalid BSN")
)

// CardType is the UZI pass type letter: 'Z', 'N', 'M' or 'S'.
type CardType byte

// The UZI card types.
const (
	CardZ CardType = 'Z' // zorgverlenerpas
	CardN CardType = 'N' // medewerkerpas op naam
	CardM CardType = 'M' // medewerkerpas niet op naam
	CardS CardType = 'S' // servercertificaat
)

// String returns the letter.
func (c CardType) String() string {
	if c == 0 {
		return ""
	}
	return string(rune(c))
}

// Description returns the Dutch name of the card type.
func (c CardType) Description() string {
	switch c {
	case CardZ:
		return "zorgverlenerpas"
	case CardN:
		return "medewerkerpas op naam"
	case CardM:
		return "medewerkerpas niet op naam"
	case CardS:
		return "servercertificaat"
	}
	return "unknown"
}

// Valid reports whether c is one of the four UZI card types.
func (c CardType) Valid() bool { return c == CardZ || c == CardN || c == CardM || c == CardS }

// KeyPurpose is what a UZI key is for, read from the certificate's keyUsage.
type KeyPurpose int

// The key purposes of the UZI profile.
const (
	PurposeUnknown        KeyPurpose = iota
	PurposeAuthentication            // AUT: digitalSignature
	PurposeNonRepudiation            // HND: nonRepudiation
	PurposeEncryption                // VRT: keyEncipherment + dataEncipherment
	PurposeServer                    // S: digitalSignature + keyEncipherment
)

// String returns a short lowercase name.
func (p KeyPurpose) String() string {
	switch p {
	case PurposeAuthentication:
		return "authentication"
	case PurposeNonRepudiation:
		return "non-repudiation"
	case PurposeEncryption:
		return "encryption"
	case PurposeServer:
		return "server"
	}
	return "unknown"
}

// Short returns the CPS abbreviation: AUT, HND, VRT or SRV.
func (p KeyPurpose) Short() string {
	switch p {
	case PurposeAuthentication:
		return "AUT"
	case PurposeNonRepudiation:
		return "HND"
	case PurposeEncryption:
		return "VRT"
	case PurposeServer:
		return "SRV"
	}
	return "?"
}

// KeyUsage returns the exact x509 key usage bits the UZI profile gives a purpose.
func (p KeyPurpose) KeyUsage() x509.KeyUsage {
	switch p {
	case PurposeAuthentication:
		return x509.KeyUsageDigitalSignature
	case PurposeNonRepudiation:
		return x509.KeyUsageContentCommitment
	case PurposeEncryption:
		return x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment
	case PurposeServer:
		return x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	}
	return 0
}

// ParsePurpose reads a purpose name: aut|auth|authentication, hnd|sign|non-repudiation,
// vrt|enc|encryption, srv|server (case-insensitive).
func ParsePurpose(s string) (KeyPurpose, error) {
	switch strings.ToLower(s) {
	case "aut", "auth", "authentication":
		return PurposeAuthentication, nil
	case "hnd", "sign", "signature", "non-repudiation", "nonrepudiation":
		return PurposeNonRepudiation, nil
	case "vrt", "enc", "encryption":
		return PurposeEncryption, nil
	case "srv", "server":
		return PurposeServer, nil
	}
	return PurposeUnknown, fmt.Errorf("%w: unknown key purpose (purpose=%q)", ErrKeyUsage, s)
}

// Identity is what a UZI certificate says about its holder.
type Identity struct {
	CardType  CardType   // from the issuing CA, cross-checked with SAN letter, policy and issuer
	OIDCA     string     // e.g. 2.16.528.1.1003.1.3.5.5.2
	Test      bool       // OIDCA is a test CA (see TestCAOIDs)
	Version   string     // one digit
	UZI       string     // 9 digits, = subject serialNumber
	URA       string     // subscriber number, 8 digits
	Role      string     // "01.015"; "00.000" for N/M/S
	AGB       string     // 8 digits or "00000000"
	Purpose   KeyPurpose // from keyUsage, cross-checked with the policy
	Serial    *big.Int
	NotBefore time.Time
	NotAfter  time.Time
	// PermanentURA is the URA from the permanentIdentifier otherName ("" when absent; when
	// present it equals URA).
	PermanentURA string
}

// NameID returns "<UZI>:<role>", the SAML NameID of a card holder.
func (id *Identity) NameID() string { return id.UZI + ":" + id.Role }

// SubjectID returns the identifier in the SAN format.
func (id *Identity) SubjectID() SubjectID {
	return SubjectID{OIDCA: id.OIDCA, Version: id.Version, UZI: id.UZI, Type: id.CardType,
		URA: id.URA, Role: id.Role, AGB: id.AGB}
}

// ParseOptions tunes Parse.
type ParseOptions struct {
	// ProductionOnly refuses certificates from the test CAs in TestCAOIDs (ErrTestCA).
	ProductionOnly bool
}

// Parse reads the UZI identity of cert with default options (production and test CAs).
// See the package comment for what is checked.
func Parse(cert *x509.Certificate) (*Identity, error) {
	return ParseWithOptions(cert, ParseOptions{})
}

// ParseWithOptions reads the UZI identity of cert. The certificate is not trusted by this:
// verify its chain separately.
func ParseWithOptions(cert *x509.Certificate, opts ParseOptions) (*Identity, error) {
	if cert == nil {
		return nil, fmt.Errorf("%w: nil certificate", ErrNotUZI)
	}
	names, err := otherNames(cert)
	if err != nil {
		return nil, err
	}
	sids := names[OIDSubjectID]
	switch len(sids) {
	case 0:
		return nil, fmt.Errorf("%w: no otherName %s in subjectAltName", ErrNotUZI, OIDSubjectID)
	case 1:
	default:
		return nil, fmt.Errorf("%w: %d otherNames %s", ErrMalformedSAN, len(sids), OIDSubjectID)
	}
	s, err := ia5Value(sids[0])
	if err != nil {
		return nil, err
	}
	sid, err := ParseSAN(s)
	if err != nil {
		return nil, err
	}
	ca, ok := caTypes[sid.OIDCA]
	if !ok {
		return nil, fmt.Errorf("%w: (oid_ca=%s)", ErrUnknownCA, sid.OIDCA)
	}
	if ca.test && opts.ProductionOnly {
		return nil, fmt.Errorf("%w: (oid_ca=%s)", ErrTestCA, sid.OIDCA)
	}
	if ca.typ != sid.Type {
		return nil, fmt.Errorf("%w: issuing CA issues %s, SAN says %s (oid_ca=%s)", ErrTypeMismatch, ca.typ, sid.Type, sid.OIDCA)
	}
	if t, named := issuerType(cert); named && t != ca.typ {
		return nil, fmt.Errorf("%w: issuer CN names a %s CA, OID CA a %s CA (oid_ca=%s)", ErrTypeMismatch, t, ca.typ, sid.OIDCA)
	}
	if err := checkSerial(cert, sid.UZI); err != nil {
		return nil, err
	}
	purpose, err := purposeOf(cert, ca.typ)
	if err != nil {
		return nil, err
	}
	if err := checkPolicy(cert, ca.typ, purpose, ca.test); err != nil {
		return nil, err
	}
	for _, raw := range names[OIDUPN] {
		upn, err := utf8Value(raw)
		if err != nil {
			return nil, err
		}
		if upn != sid.UZI+"@"+sid.URA {
			return nil, fmt.Errorf("%w: (upn=%q, uzi=%s, ura=%s)", ErrUPNMismatch, upn, sid.UZI, sid.URA)
		}
	}
	id := &Identity{
		CardType: ca.typ, OIDCA: sid.OIDCA, Test: ca.test, Version: sid.Version, UZI: sid.UZI,
		URA: sid.URA, Role: sid.Role, AGB: sid.AGB, Purpose: purpose,
		Serial: new(big.Int).Set(cert.SerialNumber), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
	}
	switch pids := names[OIDPermanentIdentifier]; len(pids) {
	case 0:
	case 1:
		ura, err := permanentURA(pids[0])
		if err != nil {
			return nil, err
		}
		if ura != sid.URA {
			return nil, fmt.Errorf("%w: URA differs from subscriber (permanent=%s, subscriber=%s)", ErrPermanentIdentifier, ura, sid.URA)
		}
		id.PermanentURA = ura
	default:
		return nil, fmt.Errorf("%w: %d permanentIdentifiers", ErrPermanentIdentifier, len(pids))
	}
	return id, nil
}

// ServerURA parses a UZI server certificate (type S, server purpose) and returns its URA. The
// permanentIdentifier (RFC 4043, assigner 2.16.528.1.1007.3.3) is checked against the SAN
// subscriber number when present; requirePermanent makes it mandatory (certificates issued
// since November 2023 carry it).
func ServerURA(cert *x509.Certificate, opts ParseOptions, requirePermanent bool) (string, error) {
	id, err := ParseWithOptions(cert, opts)
	if err != nil {
		return "", err
	}
	if id.CardType != CardS {
		return "", fmt.Errorf("%w: want a server certificate (type=%s)", ErrTypeMismatch, id.CardType)
	}
	if requirePermanent && id.PermanentURA == "" {
		return "", fmt.Errorf("%w: missing", ErrPermanentIdentifier)
	}
	return id.URA, nil
}

// PermanentIdentifierURA returns the URA in cert's permanentIdentifier otherName without
// parsing the rest of the UZI profile.
func PermanentIdentifierURA(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", fmt.Errorf("%w: nil certificate", ErrPermanentIdentifier)
	}
	names, err := otherNames(cert)
	if err != nil {
		return "", err
	}
	pids := names[OIDPermanentIdentifier]
	if len(pids) != 1 {
		return "", fmt.Errorf("%w: want exactly one (count=%d)", ErrPermanentIdentifier, len(pids))
	}
	return permanentURA(pids[0])
}

// issuerType returns the card type named by the issuer CN, if it names a UZI-register CA.
func issuerType(cert *x509.Certificate) (CardType, bool) {
	cn := strings.ToLower(cert.Issuer.CommonName)
	switch {
	case strings.Contains(cn, "medewerker niet op naam"):
		return CardM, true
	case strings.Contains(cn, "medewerker op naam"):
		return CardN, true
	case strings.Contains(cn, "zorgverlener"):
		return CardZ, true
	case strings.Contains(cn, "uzi") && strings.Contains(cn, "server"):
		return CardS, true
	}
	return 0, false
}

func checkSerial(cert *x509.Certificate, uzi string) error {
	n := 0
	for _, atv := range cert.Subject.Names {
		if atv.Type.Equal(oidSerialNumber) {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("%w: want one subject serialNumber (count=%d)", ErrSerialMismatch, n)
	}
	if cert.Subject.SerialNumber != uzi {
		return fmt.Errorf("%w: (serialNumber=%q, uzi=%s)", ErrSerialMismatch, cert.Subject.SerialNumber, uzi)
	}
	return nil
}

// purposeOf derives the key purpose from the (critical) keyUsage and checks the EKU.
func purposeOf(cert *x509.Certificate, t CardType) (KeyPurpose, error) {
	critical, found := false, false
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidKeyUsage) {
			found, critical = true, e.Critical
		}
	}
	if !found {
		return PurposeUnknown, fmt.Errorf("%w: no keyUsage extension", ErrKeyUsage)
	}
	if !critical {
		return PurposeUnknown, fmt.Errorf("%w: keyUsage not critical", ErrKeyUsage)
	}
	var p KeyPurpose
	for _, c := range []KeyPurpose{PurposeAuthentication, PurposeNonRepudiation, PurposeEncryption, PurposeServer} {
		if cert.KeyUsage == c.KeyUsage() {
			p = c
		}
	}
	if p == PurposeUnknown {
		return p, fmt.Errorf("%w: no UZI purpose has this keyUsage (bits=%#x)", ErrKeyUsage, int(cert.KeyUsage))
	}
	if (t == CardS) != (p == PurposeServer) || (t == CardM && p == PurposeNonRepudiation) {
		return PurposeUnknown, fmt.Errorf("%w: %s purpose on a %s certificate", ErrKeyUsage, p, t)
	}
	hasEKU := func(u x509.ExtKeyUsage) bool { return slices.Contains(cert.ExtKeyUsage, u) }
	switch p {
	case PurposeAuthentication:
		if !hasEKU(x509.ExtKeyUsageClientAuth) {
			return PurposeUnknown, fmt.Errorf("%w: authentication certificate without clientAuth", ErrKeyUsage)
		}
	case PurposeServer:
		if !hasEKU(x509.ExtKeyUsageServerAuth) || !hasEKU(x509.ExtKeyUsageClientAuth) {
			return PurposeUnknown, fmt.Errorf("%w: server certificate without serverAuth and clientAuth", ErrKeyUsage)
		}
	case PurposeNonRepudiation, PurposeEncryption:
		if hasEKU(x509.ExtKeyUsageServerAuth) || hasEKU(x509.ExtKeyUsageClientAuth) {
			return PurposeUnknown, fmt.Errorf("%w: %s certificate allows TLS authentication", ErrKeyUsage, p)
		}
	}
	return p, nil
}

// checkPolicy requires every known UZI policy to agree with type and purpose, and at least one
// for production CAs.
func checkPolicy(cert *x509.Certificate, t CardType, p KeyPurpose, test bool) error {
	matched := false
	for _, oid := range cert.PolicyIdentifiers {
		info, ok := policies[oid.String()]
		if !ok {
			continue
		}
		if info.purpose != p {
			return fmt.Errorf("%w (%w): policy is for %s, key usage says %s (policy=%s)", ErrKeyUsage, ErrPolicy, info.purpose, p, oid)
		}
		if !strings.ContainsRune(info.types, rune(t)) {
			return fmt.Errorf("%w: policy is for %s %s, certificate is %s %s (policy=%s)", ErrPolicy, info.types, info.purpose, t, p, oid)
		}
		matched = true
	}
	if !matched && !test {
		return fmt.Errorf("%w: no UZI policy for %s %s", ErrPolicy, t, p)
	}
	return nil
}

// otherNames returns the DER of the [0] EXPLICIT value of each otherName in the SAN, by type-id.
func otherNames(cert *x509.Certificate) (map[string][]asn1.RawValue, error) {
	out := map[string][]asn1.RawValue{}
	for _, e := range cert.Extensions {
		if !e.Id.Equal(oidSubjectAltName) {
			continue
		}
		var seq asn1.RawValue
		rest, err := asn1.Unmarshal(e.Value, &seq)
		if err != nil || len(rest) != 0 || seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
			return nil, fmt.Errorf("%w: subjectAltName is not a SEQUENCE", ErrMalformedSAN)
		}
		b := seq.Bytes
		for len(b) > 0 {
			var gn asn1.RawValue
			b, err = asn1.Unmarshal(b, &gn)
			if err != nil {
				return nil, fmt.Errorf("%w: general name: %v", ErrMalformedSAN, err)
			}
			if gn.Class != asn1.ClassContextSpecific || gn.Tag != 0 {
				continue
			}
			if !gn.IsCompound {
				return nil, fmt.Errorf("%w: otherName not constructed", ErrMalformedSAN)
			}
			var typeID asn1.ObjectIdentifier
			r, err := asn1.Unmarshal(gn.Bytes, &typeID)
			if err != nil {
				return nil, fmt.Errorf("%w: otherName type-id: %v", ErrMalformedSAN, err)
			}
			var val asn1.RawValue
			r, err = asn1.Unmarshal(r, &val)
			if err != nil || len(r) != 0 || val.Class != asn1.ClassContextSpecific || val.Tag != 0 || !val.IsCompound {
				return nil, fmt.Errorf("%w: otherName value is not [0] EXPLICIT (type=%s)", ErrMalformedSAN, typeID)
			}
			var inner asn1.RawValue
			r, err = asn1.Unmarshal(val.Bytes, &inner)
			if err != nil || len(r) != 0 {
				return nil, fmt.Errorf("%w: otherName value (type=%s)", ErrMalformedSAN, typeID)
			}
			out[typeID.String()] = append(out[typeID.String()], inner)
		}
	}
	return out, nil
}

func ia5Value(v asn1.RawValue) (string, error) {
	if v.Class != asn1.ClassUniversal || v.Tag != asn1.TagIA5String || v.IsCompound {
		return "", fmt.Errorf("%w: subject identifier is not an IA5String (tag=%d)", ErrMalformedSAN, v.Tag)
	}
	for _, c := range v.Bytes {
		if c >= 0x80 {
			return "", fmt.Errorf("%w: non-ASCII byte in IA5String", ErrMalformedSAN)
		}
	}
	return string(v.Bytes), nil
}

func utf8Value(v asn1.RawValue) (string, error) {
	var s string
	if v.Class != asn1.ClassUniversal || v.Tag != asn1.TagUTF8String {
		return "", fmt.Errorf("%w: UPN is not a UTF8String (tag=%d)", ErrUPNMismatch, v.Tag)
	}
	if _, err := asn1.UnmarshalWithParams(v.FullBytes, &s, "utf8"); err != nil {
		return "", fmt.Errorf("%w: UPN: %v", ErrUPNMismatch, err)
	}
	return s, nil
}

// permanentIdentifier is RFC 4043 PermanentIdentifier with both fields present.
type permanentIdentifier struct {
	Value    string `asn1:"utf8"`
	Assigner asn1.ObjectIdentifier
}

func permanentURA(v asn1.RawValue) (string, error) {
	var pi permanentIdentifier
	rest, err := asn1.Unmarshal(v.FullBytes, &pi)
	if err != nil || len(rest) != 0 {
		return "", fmt.Errorf("%w: not SEQUENCE { UTF8String, OID }", ErrPermanentIdentifier)
	}
	if pi.Assigner.String() != OIDURA {
		return "", fmt.Errorf("%w: assigner is not the URA register (assigner=%s)", ErrPermanentIdentifier, pi.Assigner)
	}
	if !ValidURA(pi.Value) {
		return "", fmt.Errorf("%w: URA is not 8 digits (value=%q)", ErrPermanentIdentifier, pi.Value)
	}
	return pi.Value, nil
}
