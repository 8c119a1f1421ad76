package uzi

import (
	"encoding/asn1"
	"strconv"
	"strings"
)

// OIDs of the UZI-register certificate profile (CPS UZI-register v10.x) and the identifier
// roots used in AORTA messages, as dotted strings. Use MustOID for the asn1 form.
const (
	// OIDCAZorgverlener is the OID CA of the UZI-register Zorgverlener CA (Z cards).
	OIDCAZorgverlener = "2.16.528.1.1003.1.3.5.5.2"
	// OIDCAMedewerkerOpNaam is the OID CA of the UZI-register Medewerker op naam CA (N cards).
	OIDCAMedewerkerOpNaam = "2.16.528.1.1003.1.3.5.5.3"
	// OIDCAMedewerkerNietOpNaam is the OID CA of the Medewerker niet op naam CA (M cards).
	OIDCAMedewerkerNietOpNaam = "2.16.528.1.1003.1.3.5.5.4"
	// OIDCAServer is the OID CA of the UZI-register Server CA (S certificates).
	OIDCAServer = "2.16.528.1.1003.1.3.5.5.5"

	// OIDTestArc is the UZI-register test/acceptance arc; only the OIDs in TestCAOIDs are accepted.
	OIDTestArc = "2.16.528.1.1007.99"
	// OIDTestCAServerAcceptance is the OID CA of CIBG's acceptance server CA.
	OIDTestCAServerAcceptance = "2.16.528.1.1007.99.2110"
	// OIDTestCAZorgverlener is the OID CA aortagw's testpki uses for Z cards.
	OIDTestCAZorgverlener = "2.16.528.1.1007.99.2102"
	// OIDTestCAMedewerkerOpNaam is the OID CA aortagw's testpki uses for N cards.
	OIDTestCAMedewerkerOpNaam = "2.16.528.1.1007.99.2103"
	// OIDTestCAMedewerkerNietOpNaam is the OID CA aortagw's testpki uses for M cards.
	OIDTestCAMedewerkerNietOpNaam = "2.16.528.1.1007.99.2104"

	// OIDPolicyZNAuth is the certificate policy of Z/N authentication (AUT) certificates.
	OIDPolicyZNAuth = "2.16.528.1.1003.1.2.5.1"
	// OIDPolicyZNNonRepudiation is the policy of Z/N signature (HND) certificates.
	OIDPolicyZNNonRepudiation = "2.16.528.1.1003.1.2.5.2"
	// OIDPolicyZNEncryption is the policy of Z/N confidentiality (VRT) certificates.
	OIDPolicyZNEncryption = "2.16.528.1.1003.1.2.5.3"
	// OIDPolicyMAuth is the policy of M authentication certificates.
	OIDPolicyMAuth = "2.16.528.1.1003.1.2.5.4"
	// OIDPolicyMEncryption is the policy of M confidentiality certificates.
	OIDPolicyMEncryption = "2.16.528.1.1003.1.2.5.5"
	// OIDPolicyServer is the policy of UZI server certificates (G3 profile).
	OIDPolicyServer = "2.16.528.1.1003.1.2.5.6"
	// OIDPolicyServerPrivateG1 is the policy seen in Private Server CA G1 certificates.
	OIDPolicyServerPrivateG1 = "2.16.528.1.1003.1.2.8.6"
	// OIDPolicyServerG4 is the policy seen in G4 server certificates.
	OIDPolicyServerG4 = "2.16.528.1.1003.1.2.44.15.35.11"
	// OIDCPS is the OID of the UZI-register CPS.
	OIDCPS = "2.16.528.1.1007.1.1"

	// OIDSubjectID is the otherName type-id of the UZI subject identifier in the SAN.
	OIDSubjectID = "2.5.5.5"
	// OIDPermanentIdentifier is the otherName type-id of RFC 4043 permanentIdentifier.
	OIDPermanentIdentifier = "1.3.6.1.5.5.7.8.3"
	// OIDUPN is the otherName type-id of the Microsoft user principal name.
	OIDUPN = "1.3.6.1.4.1.311.20.2.3"

	// OIDURA is the identifier root of URA numbers (also the permanentIdentifier assigner).
	OIDURA = "2.16.528.1.1007.3.3"
	// OIDUZIPerson is the identifier root of UZI numbers of persons.
	OIDUZIPerson = "2.16.528.1.1007.3.1"
	// OIDUZISystem is the identifier root of UZI numbers of systems.
	OIDUZISystem = "2.16.528.1.1007.3.2"
	// OIDBSN is the identifier root of the burgerservicenummer.
	OIDBSN = "2.16.840.1.113883.2.4.6.3"
	// OIDAORTAApplication is the identifier root of AORTA application ids (LSP/ZIM = 1).
	OIDAORTAApplication = "2.16.840.1.113883.2.4.6.6"
	// OIDRoleCode is the code system of UZI role codes.
	OIDRoleCode = "2.16.840.1.113883.2.4.15.111"

	// OIDOrganizationIdentifier is the X.520 organizationIdentifier attribute (2.5.4.97).
	OIDOrganizationIdentifier = "2.5.4.97"
	// OIDTitle is the X.520 title attribute.
	OIDTitle = "2.5.4.12"
	// OIDGivenName is the X.520 givenName attribute.
	OIDGivenName = "2.5.4.42"
	// OIDSurname is the X.520 surname attribute.
	OIDSurname = "2.5.4.4"

	// OIDQCStatements is the qcStatements certificate extension (RFC 3739).
	OIDQCStatements = "1.3.6.1.5.5.7.1.3"
	// OIDQcCompliance is the ETSI QcCompliance statement.
	OIDQcCompliance = "0.4.0.1862.1.1"
	// OIDQcSSCD is the ETSI QcSSCD statement (key on a secure signature creation device).
	OIDQcSSCD = "0.4.0.1862.1.4"
	// OIDQcPDS is the ETSI QcPDS statement (PKI disclosure statement locations).
	OIDQcPDS = "0.4.0.1862.1.5"
	// OIDQcType is the ETSI QcType statement.
	OIDQcType = "0.4.0.1862.1.6"
	// OIDQcTypeESign is the QcType value for electronic signatures.
	OIDQcTypeESign = "0.4.0.1862.1.6.1"

	// OIDEKUDocumentSigning is the RFC 9336 documentSigning extended key usage.
	OIDEKUDocumentSigning = "1.3.6.1.5.5.7.3.36"
	// OIDEKUEFS is the Microsoft encrypting file system extended key usage.
	OIDEKUEFS = "1.3.6.1.4.1.311.10.3.4"
)

var (
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidKeyUsage       = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidSerialNumber   = asn1.ObjectIdentifier{2, 5, 4, 5}
)

// MustOID converts a dotted OID constant of this package into its asn1 form. It panics on a
// malformed string, so use it for constants only.
func MustOID(s string) asn1.ObjectIdentifier {
	oid, ok := parseOID(s)
	if !ok {
		panic("uzi: malformed OID constant " + strconv.Quote(s))
	}
	return oid
}

// parseOID parses a dotted OID with canonical decimal arcs.
func parseOID(s string) (asn1.ObjectIdentifier, bool) {
	if !validOID(s) {
		return nil, false
	}
	parts := strings.Split(s, ".")
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, false
		}
		oid[i] = n
	}
	return oid, true
}

// validOID reports whether s is a dotted OID: first arc 0-2, at least two arcs, decimal arcs
// without leading zeros, at most 9 digits per arc and 128 characters in all.
func validOID(s string) bool {
	if len(s) < 3 || len(s) > 128 || s[0] < '0' || s[0] > '2' || s[1] != '.' {
		return false
	}
	for _, arc := range strings.Split(s, ".") {
		if arc == "" || len(arc) > 9 || (len(arc) > 1 && arc[0] == '0') || !allDigits(arc) {
			return false
		}
	}
	return true
}

// caTypes maps every accepted OID CA to the card type its CA issues.
var caTypes = map[string]struct {
	typ  CardType
	test bool
}{
	OIDCAZorgverlener:             {CardZ, false},
	OIDCAMedewerkerOpNaam:         {CardN, false},
	OIDCAMedewerkerNietOpNaam:     {CardM, false},
	OIDCAServer:                   {CardS, false},
	OIDTestCAServerAcceptance:     {CardS, true},
	OIDTestCAZorgverlener:         {CardZ, true},
	OIDTestCAMedewerkerOpNaam:     {CardN, true},
	OIDTestCAMedewerkerNietOpNaam: {CardM, true},
}

// TestCAOIDs returns the accepted test OID CAs and the card type each one issues.
func TestCAOIDs() map[string]CardType {
	m := map[string]CardType{}
	for k, v := range caTypes {
		if v.test {
			m[k] = v.typ
		}
	}
	return m
}

// CAOIDFor returns the OID CA for a card type: the production OID, or the testpki OID when
// test is set.
func CAOIDFor(t CardType, test bool) string {
	switch {
	case t == CardS && test:
		return OIDTestCAServerAcceptance
	case t == CardZ && test:
		return OIDTestCAZorgverlener
	case t == CardN && test:
		return OIDTestCAMedewerkerOpNaam
	case t == CardM && test:
		return OIDTestCAMedewerkerNietOpNaam
	case t == CardZ:
		return OIDCAZorgverlener
	case t == CardN:
		return OIDCAMedewerkerOpNaam
	case t == CardM:
		return OIDCAMedewerkerNietOpNaam
	case t == CardS:
		return OIDCAServer
	}
	return ""
}

// policyInfo says what a known UZI certificate policy promises.
type policyInfo struct {
	types   string // card type letters the policy is issued for
	purpose KeyPurpose
}

var policies = map[string]policyInfo{
	OIDPolicyZNAuth:           {"ZN", PurposeAuthentication},
	OIDPolicyZNNonRepudiation: {"ZN", PurposeNonRepudiation},
	OIDPolicyZNEncryption:     {"ZN", PurposeEncryption},
	OIDPolicyMAuth:            {"M", PurposeAuthentication},
	OIDPolicyMEncryption:      {"M", PurposeEncryption},
	OIDPolicyServer:           {"S", PurposeServer},
	OIDPolicyServerPrivateG1:  {"S", PurposeServer},
	OIDPolicyServerG4:         {"S", PurposeServer},
}

// PolicyFor returns the certificate policy OID of the UZI profile for a card type and key
// purpose, or "" when the combination does not exist (M has no non-repudiation key; S only
// PurposeServer).
func PolicyFor(t CardType, p KeyPurpose) string {
	switch {
	case (t == CardZ || t == CardN) && p == PurposeAuthentication:
		return OIDPolicyZNAuth
	case (t == CardZ || t == CardN) && p == PurposeNonRepudiation:
		return OIDPolicyZNNonRepudiation
	case (t == CardZ || t == CardN) && p == PurposeEncryption:
		return OIDPolicyZNEncryption
	case t == CardM && p == PurposeAuthentication:
		return OIDPolicyMAuth
	case t == CardM && p == PurposeEncryption:
		return OIDPolicyMEncryption
	case t == CardS && p == PurposeServer:
		return OIDPolicyServer
	}
	return ""
}
