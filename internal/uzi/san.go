package uzi

import (
	"fmt"
	"strings"
)

// SubjectID is the UZI subject identifier carried in SAN otherName 2.5.5.5:
// <OID CA>-<version>-<UZI>-<type>-<subscriber>-<role>-<AGB>.
type SubjectID struct {
	OIDCA   string
	Version string
	UZI     string
	Type    CardType
	URA     string
	Role    string
	AGB     string
}

// String formats the identifier exactly as it goes into the certificate.
func (s SubjectID) String() string {
	return strings.Join([]string{s.OIDCA, s.Version, s.UZI, s.Type.String(), s.URA, s.Role, s.AGB}, "-")
}

// maxSANLen bounds the subject identifier (a 128-character OID plus 36 fixed characters).
const maxSANLen = 170

// ParseSAN parses the subject identifier string with syntax checks only: OID CA is a dotted
// OID, version one digit, UZI 9 digits, type Z/N/M/S, subscriber (URA) 8 digits, role NN.NNN
// (00.000 unless Z), AGB 8 digits. Whether the OID CA is known is checked by Parse.
func ParseSAN(s string) (SubjectID, error) {
	if len(s) > maxSANLen {
		return SubjectID{}, fmt.Errorf("%w: too long (len=%d)", ErrMalformedSAN, len(s))
	}
	f := strings.Split(s, "-")
	if len(f) != 7 {
		return SubjectID{}, fmt.Errorf("%w: want 7 fields separated by '-' (fields=%d)", ErrMalformedSAN, len(f))
	}
	sid := SubjectID{OIDCA: f[0], Version: f[1], UZI: f[2], URA: f[4], Role: f[5], AGB: f[6]}
	switch {
	case !validOID(f[0]):
		return SubjectID{}, fmt.Errorf("%w: OID CA is not an OID (oid_ca=%q)", ErrMalformedSAN, f[0])
	case len(f[1]) != 1 || !allDigits(f[1]):
		return SubjectID{}, fmt.Errorf("%w: version is not one digit (version=%q)", ErrMalformedSAN, f[1])
	case !ValidUZI(f[2]):
		return SubjectID{}, fmt.Errorf("%w: UZI number is not 9 digits (uzi=%q)", ErrMalformedSAN, f[2])
	case len(f[3]) != 1 || !CardType(f[3][0]).Valid():
		return SubjectID{}, fmt.Errorf("%w: card type is not Z, N, M or S (type=%q)", ErrMalformedSAN, f[3])
	case !ValidURA(f[4]):
		return SubjectID{}, fmt.Errorf("%w: subscriber number is not 8 digits (subscriber=%q)", ErrMalformedSAN, f[4])
	case !ValidAGB(f[6]):
		return SubjectID{}, fmt.Errorf("%w: AGB is not 8 digits (agb=%q)", ErrMalformedSAN, f[6])
	}
	sid.Type = CardType(f[3][0])
	if !ValidRole(sid.Type, f[5]) {
		return SubjectID{}, fmt.Errorf("%w: (type=%s, role=%q)", ErrRole, sid.Type, f[5])
	}
	return sid, nil
}

// ValidRole reports whether role fits the card type: NN.NNN for Z, exactly 00.000 otherwise.
func ValidRole(t CardType, role string) bool {
	if len(role) != 6 || role[2] != '.' || !allDigits(role[:2]) || !allDigits(role[3:]) {
		return false
	}
	if t == CardZ {
		return true
	}
	return t.Valid() && role == "00.000"
}

// ValidUZI reports whether s is a UZI number: exactly 9 digits.
func ValidUZI(s string) bool { return len(s) == 9 && allDigits(s) }

// ValidURA reports whether s is a URA (UZI-register abonneenummer): exactly 8 digits.
func ValidURA(s string) bool { return len(s) == 8 && allDigits(s) }

// ValidAGB reports whether s is an AGB code as carried in UZI certificates: exactly 8 digits
// ("00000000" when none).
func ValidAGB(s string) bool { return len(s) == 8 && allDigits(s) }

// ValidBSN reports whether s is a burgerservicenummer: 9 digits, not all zero, passing the
// eleven-test (9*d1 + 8*d2 + ... + 2*d8 - 1*d9 divisible by 11).
func ValidBSN(s string) bool {
	if len(s) != 9 || !allDigits(s) || s == "000000000" {
		return false
	}
	sum := 0
	for i := 0; i < 8; i++ {
		sum += int(s[i]-'0') * (9 - i)
	}
	sum -= int(s[8] - '0')
	return sum%11 == 0
}

// ParseBSN returns s when it is a valid BSN (see ValidBSN) and ErrInvalidBSN otherwise. The
// BSN itself is not put in the error.
func ParseBSN(s string) (string, error) {
	if !ValidBSN(s) {
		return "", fmt.Errorf("%w: not 9 digits passing the eleven-test (len=%d)", ErrInvalidBSN, len(s))
	}
	return s, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
