package uzi

import (
	"crypto/x509"
	"testing"
)

func FuzzParseSAN(f *testing.F) {
	for _, s := range []string{
		"2.16.528.1.1003.1.3.5.5.2-1-123456789-Z-90000123-01.015-00000000",
		"2.16.528.1.1007.99.2110-1-900030787-S-90000380-00.000-11223344",
		"2.16.528.1.1003.1.3.5.5.4-1-123456789-M-90000123-00.000-00000000",
		"--------", "2.-1-1-Z-1-1-1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sid, err := ParseSAN(s)
		if err != nil {
			return
		}
		if sid.String() != s {
			t.Fatalf("round trip: %q -> %q", s, sid.String())
		}
		if !ValidUZI(sid.UZI) || !ValidURA(sid.URA) || !ValidAGB(sid.AGB) || !ValidRole(sid.Type, sid.Role) {
			t.Fatalf("accepted invalid fields: %+v", sid)
		}
	})
}

func FuzzParse(f *testing.F) {
	fx := newFixture(f, "TEST UZI-register Zorgverlener CA G3")
	f.Add(fx.cert(f, leafSpec{upn: "123456789@90000123"}).Raw)
	f.Add(fx.cert(f, leafSpec{sid: OIDTestCAZorgverlener + "-1-123456789-Z-90000123-17.075-12345678"}).Raw)
	f.Fuzz(func(t *testing.T, der []byte) {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		id, err := Parse(c)
		if err != nil {
			return
		}
		if id.UZI != c.Subject.SerialNumber || !id.CardType.Valid() || id.Purpose == PurposeUnknown {
			t.Fatalf("accepted inconsistent identity %+v", id)
		}
		if _, err := ParseSAN(id.SubjectID().String()); err != nil {
			t.Fatalf("identity does not re-parse: %v", err)
		}
	})
}
