package tokens

import (
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
)

// dnAttr is one attribute of a distinguished name, in RFC 4514 order.
type dnAttr struct {
	oid   string // dotted
	value string // decoded string value
	der   []byte // full DER of the value (certificate side only)
	multi bool   // joined to the previous attribute with '+'
}

var dnShortNames = map[string]string{
	"2.5.4.3":                    "CN",
	"2.5.4.5":                    "SERIALNUMBER",
	"2.5.4.6":                    "C",
	"2.5.4.7":                    "L",
	"2.5.4.8":                    "ST",
	"2.5.4.9":                    "STREET",
	"2.5.4.10":                   "O",
	"2.5.4.11":                   "OU",
	"0.9.2342.19200300.100.1.25": "DC",
	"0.9.2342.19200300.100.1.1":  "UID",
}

var dnShortOIDs = func() map[string]string {
	m := map[string]string{"S": "2.5.4.8", "E": "1.2.840.113549.1.9.1", "EMAILADDRESS": "1.2.840.113549.1.9.1",
		"G": "2.5.4.42", "GIVENNAME": "2.5.4.42", "SN": "2.5.4.4", "SURNAME": "2.5.4.4", "T": "2.5.4.12", "TITLE": "2.5.4.12",
		"ORGANIZATIONIDENTIFIER": "2.5.4.97"}
	for oid, n := range dnShortNames {
		m[n] = oid
	}
	return m
}()

type rawATV struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

var errDN = errors.New("malformed distinguished name")

// certDN decodes a DER Name (cert.RawIssuer) into attributes in RFC 4514 order
// (last RDN first).
func certDN(raw []byte) ([]dnAttr, error) {
	var rdns []asn1.RawValue
	rest, err := asn1.Unmarshal(raw, &rdns)
	if err != nil || len(rest) != 0 {
		return nil, errDN
	}
	var out []dnAttr
	for i := len(rdns) - 1; i >= 0; i-- {
		var set []rawATV
		if _, err := asn1.UnmarshalWithParams(rdns[i].FullBytes, &set, "set"); err != nil {
			return nil, errDN
		}
		for j, atv := range set {
			s, err := derString(atv.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, dnAttr{oid: atv.Type.String(), value: s, der: atv.Value.FullBytes, multi: j > 0})
		}
	}
	return out, nil
}

func derString(v asn1.RawValue) (string, error) {
	if v.Class != asn1.ClassUniversal {
		return "", errDN
	}
	switch v.Tag {
	case asn1.TagUTF8String, asn1.TagPrintableString, asn1.TagIA5String, asn1.TagT61String, asn1.TagNumericString:
		return string(v.Bytes), nil
	case asn1.TagBMPString:
		if len(v.Bytes)%2 != 0 {
			return "", errDN
		}
		u := make([]uint16, len(v.Bytes)/2)
		for i := range u {
			u[i] = uint16(v.Bytes[2*i])<<8 | uint16(v.Bytes[2*i+1])
		}
		return string(utf16.Decode(u)), nil
	}
	return "", errDN
}

// RenderIssuerName renders a DER-encoded Name (cert.RawIssuer) the way the
// ZORG-ID sample writes ds:X509IssuerName: RFC 4514 order, ", " between RDNs,
// short names for the common attribute types, every other type (notably
// organizationIdentifier 2.5.4.97) as its dotted OID with "#" and the lowercase
// hex of the value's DER encoding, e.g. "2.5.4.97=#0c0e4e54524e4c2d3530303030353335".
func RenderIssuerName(rawName []byte) (string, error) {
	attrs, err := certDN(rawName)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for i, a := range attrs {
		if i > 0 {
			if a.multi {
				b.WriteByte('+')
			} else {
				b.WriteString(", ")
			}
		}
		if n, ok := dnShortNames[a.oid]; ok {
			b.WriteString(n)
			b.WriteByte('=')
			b.WriteString(escapeDNValue(a.value))
		} else {
			b.WriteString(a.oid)
			b.WriteString("=#")
			b.WriteString(hex.EncodeToString(a.der))
		}
	}
	return b.String(), nil
}

func escapeDNValue(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ',' || c == '+' || c == '"' || c == '\\' || c == '<' || c == '>' || c == ';' || c == '=':
			b.WriteByte('\\')
			b.WriteByte(c)
		case (c == '#' && i == 0) || (c == ' ' && (i == 0 || i == len(s)-1)):
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20:
			fmt.Fprintf(&b, "\\%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// parseDNString parses an RFC 4514 / .NET style distinguished name string
// ("CN=x, O=y, 2.5.4.97=#0c..", "OID.2.5.4.97=..."). Values given as "#hex"
// are DER-decoded to their string value.
func parseDNString(s string) ([]dnAttr, error) {
	var out []dnAttr
	i := 0
	multi := false
	for {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		j := strings.IndexByte(s[i:], '=')
		if j <= 0 {
			return nil, errDN
		}
		typ := strings.TrimSpace(s[i : i+j])
		i += j + 1
		oid := ""
		up := strings.ToUpper(typ)
		up = strings.TrimPrefix(up, "OID.")
		if o, ok := dnShortOIDs[up]; ok {
			oid = o
		} else if isDottedOID(up) {
			oid = up
		} else {
			return nil, errDN
		}
		for i < len(s) && s[i] == ' ' {
			i++
		}
		var val strings.Builder
		switch {
		case i < len(s) && s[i] == '#':
			k := i + 1
			for k < len(s) && isHex(s[k]) {
				k++
			}
			der, err := hex.DecodeString(s[i+1 : k])
			if err != nil {
				return nil, errDN
			}
			var rv asn1.RawValue
			if rest, err := asn1.Unmarshal(der, &rv); err != nil || len(rest) != 0 {
				return nil, errDN
			}
			str, err := derString(rv)
			if err != nil {
				return nil, err
			}
			val.WriteString(str)
			i = k
		case i < len(s) && s[i] == '"':
			i++
			for i < len(s) && s[i] != '"' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				val.WriteByte(s[i])
				i++
			}
			if i >= len(s) {
				return nil, errDN
			}
			i++
		default:
			for i < len(s) && s[i] != ',' && s[i] != '+' && s[i] != ';' {
				if s[i] == '\\' {
					if i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
						v, _ := hex.DecodeString(s[i+1 : i+3])
						val.WriteByte(v[0])
						i += 3
						continue
					}
					if i+1 >= len(s) {
						return nil, errDN
					}
					i++
				}
				val.WriteByte(s[i])
				i++
			}
		}
		v := val.String()
		if !strings.HasSuffix(v, "\\ ") {
			v = strings.TrimRight(v, " ")
		}
		out = append(out, dnAttr{oid: oid, value: v, multi: multi})
		for i < len(s) && s[i] == ' ' {
			i++
		}
		if i >= len(s) {
			return out, nil
		}
		switch s[i] {
		case ',', ';':
			multi = false
		case '+':
			multi = true
		default:
			return nil, errDN
		}
		i++
	}
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func isDottedOID(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return strings.Contains(s, ".")
}

// issuerNameMatches reports whether the X509IssuerName string denotes the DER
// Name rawName: same attributes, same order (RFC 4514), same values.
func issuerNameMatches(name string, rawName []byte) bool {
	a, err := parseDNString(name)
	if err != nil {
		return false
	}
	b, err := certDN(rawName)
	if err != nil || len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].oid != b[i].oid || a[i].value != b[i].value {
			return false
		}
	}
	return true
}
