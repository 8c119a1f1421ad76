package uzi

import (
	"encoding/asn1"
	"fmt"
	"net"
)

// The functions below build subjectAltName entries of the UZI profile. They exist for test
// PKIs (package testpki) and for tests that need odd certificates; the gateway only reads.

// OtherName returns a GeneralName otherName ([0] IMPLICIT SEQUENCE { type-id, [0] EXPLICIT
// value }) holding the DER-encoded value.
func OtherName(typeID string, valueDER []byte) (asn1.RawValue, error) {
	oid, ok := parseOID(typeID)
	if !ok {
		return asn1.RawValue{}, fmt.Errorf("%w: bad otherName type-id (type=%q)", ErrMalformedSAN, typeID)
	}
	oidDER, err := asn1.Marshal(oid)
	if err != nil {
		return asn1.RawValue{}, err
	}
	wrapped, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: valueDER})
	if err != nil {
		return asn1.RawValue{}, err
	}
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(oidDER, wrapped...)}, nil
}

// SubjectIDName returns the otherName 2.5.5.5 with s as IA5String.
func SubjectIDName(s string) (asn1.RawValue, error) {
	der, err := asn1.MarshalWithParams(s, "ia5")
	if err != nil {
		return asn1.RawValue{}, fmt.Errorf("%w: %v", ErrMalformedSAN, err)
	}
	return OtherName(OIDSubjectID, der)
}

// UPNName returns the Microsoft UPN otherName with s as UTF8String.
func UPNName(s string) (asn1.RawValue, error) {
	der, err := asn1.MarshalWithParams(s, "utf8")
	if err != nil {
		return asn1.RawValue{}, err
	}
	return OtherName(OIDUPN, der)
}

// PermanentIdentifierName returns the RFC 4043 permanentIdentifier otherName with the given
// value and assigner (OIDURA for a URA).
func PermanentIdentifierName(value, assigner string) (asn1.RawValue, error) {
	oid, ok := parseOID(assigner)
	if !ok {
		return asn1.RawValue{}, fmt.Errorf("%w: bad assigner (assigner=%q)", ErrPermanentIdentifier, assigner)
	}
	der, err := asn1.Marshal(permanentIdentifier{Value: value, Assigner: oid})
	if err != nil {
		return asn1.RawValue{}, err
	}
	return OtherName(OIDPermanentIdentifier, der)
}

// DNSName returns a GeneralName dNSName.
func DNSName(s string) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(s)}
}

// IPName returns a GeneralName iPAddress (4 bytes for IPv4).
func IPName(ip net.IP) asn1.RawValue {
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 7, Bytes: []byte(ip)}
}

// MarshalSubjectAltName returns the DER of a subjectAltName extension value (GeneralNames).
func MarshalSubjectAltName(names ...asn1.RawValue) ([]byte, error) {
	return asn1.Marshal(names)
}
