package sbvz

import (
	"encoding/xml"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ---- requests ----

type xmlWriter struct{ b strings.Builder }

func (w *xmlWriter) open(name string)  { w.b.WriteString("<" + name + ">") }
func (w *xmlWriter) close(name string) { w.b.WriteString("</" + name + ">") }

// leaf writes <name>v</name>; empty values are omitted (SBV-Z wants absent,
// not empty, elements).
func (w *xmlWriter) leaf(name, v string) {
	if v == "" {
		return
	}
	w.open(name)
	_ = xml.EscapeText(&w.b, []byte(v))
	w.close(name)
}

func envelope(ns, op string, body func(w *xmlWriter)) []byte {
	var w xmlWriter
	w.b.WriteString(`<?xml version="1.0" encoding="utf-8"?>`)
	w.b.WriteString(`<soap:Envelope xmlns:soap="` + NSSoap + `"><soap:Body>`)
	w.b.WriteString(`<` + op + ` xmlns="` + ns + `">`)
	body(&w)
	w.b.WriteString(`</` + op + `></soap:Body></soap:Envelope>`)
	return []byte(w.b.String())
}

// Element order of the question, as in the WSDL.
var (
	personOrder  = []string{"BSN", "Voornamen", "Voorletter", "VoorvoegselGeslachtsnaam", "Geslachtsnaam", "Geboortedatum", "Geboorteplaats", "Geboorteland", "Geslachtsaanduiding"}
	addressOrder = []string{"GemeenteVanInschrijving", "Straatnaam", "Huisnummer", "Huisletter", "Huisnummertoevoeging", "AanduidingBijHuisnummer", "Postcode"}
)

func (p Person) values() []string {
	return []string{p.BSN, p.GivenNames, p.Initial, p.SurnamePrefix, p.Surname, p.BirthDate, p.BirthPlace, p.BirthCountry, p.Sex}
}

func (a Address) values() []string {
	return []string{a.Municipality, a.Street, a.HouseNumber, a.HouseLetter, a.HouseNumberSuffix, a.Designation, a.PostalCode}
}

func (a Address) empty() bool {
	for _, v := range a.values() {
		if v != "" {
			return false
		}
	}
	return true
}

func buildVerifyRequest(q Query, localRef string) []byte {
	return envelope(NSVerify, "OpvragenVerifieren", func(w *xmlWriter) {
		w.open("OpvragenVerifierenVraagBericht")
		w.open("Vraag")
		w.open("Persoon")
		for i, v := range q.Person.values() {
			w.leaf(personOrder[i], v)
		}
		w.close("Persoon")
		if !q.Address.empty() {
			w.open("Adres")
			for i, v := range q.Address.values() {
				w.leaf(addressOrder[i], v)
			}
			w.close("Adres")
		}
		w.close("Vraag")
		w.leaf("LokaalKenmerk", localRef)
		w.close("OpvragenVerifierenVraagBericht")
	})
}

func buildPersonDataRequest(bsn string) []byte {
	return envelope(NSPersonData, "OpvragenPersoonsgegevens", func(w *xmlWriter) {
		w.open("OpvragenPersoonsgegevensVraagBericht")
		w.open("Vraag")
		w.leaf("BSN", bsn)
		w.close("Vraag")
		w.close("OpvragenPersoonsgegevensVraagBericht")
	})
}

// ---- answers ----

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

func text(n *node, max int) (string, error) {
	if n == nil {
		return "", nil
	}
	if len(n.kids) > 0 {
		return "", protoErr("element %s must hold text", n.local)
	}
	if utf8.RuneCountInString(n.text) > max {
		return "", protoErr("field %s longer than %d", n.local, max)
	}
	return n.text, nil
}

func compared(n *node, max int) (Value, error) {
	if n == nil {
		return Value{}, nil
	}
	v, err := text(n, max)
	if err != nil {
		return Value{}, err
	}
	a, ok := n.attr("Afwijkend")
	if !ok {
		return Value{}, protoErr("field %s lacks Afwijkend", n.local)
	}
	var dev bool
	switch a {
	case "true", "1":
		dev = true
	case "false", "0":
	default:
		return Value{}, protoErr("field %s has Afwijkend=%q", n.local, clip(a))
	}
	return Value{Value: v, Afwijkend: dev}, nil
}

func optDate(n *node) (string, error) {
	v, err := text(n, 8)
	if err != nil || v == "" {
		return v, err
	}
	if _, err := ParseDate(v); err != nil {
		return "", protoErr("field %s holds an invalid date", n.local)
	}
	return v, nil
}

var (
	answerPersonShape = shape{ns: NSVerify, names: []string{"BSN", "Voornamen", "Voorletter", "AdellijkeTitelPredikaat",
		"VoorvoegselGeslachtsnaam", "Geslachtsnaam", "Geboortedatum", "Geboorteplaats", "Geboorteland",
		"Geslachtsaanduiding", "AanduidingGegevensInOnderzoekPersoon", "DatumIngangOnderzoekPersoon"},
		repeated: map[string]bool{"AanduidingGegevensInOnderzoekPersoon": true, "DatumIngangOnderzoekPersoon": true}}
	answerAddressShape = shape{ns: NSVerify, names: []string{"GemeenteVanInschrijving", "FunctieAdres", "Gemeentedeel",
		"Straatnaam", "Huisnummer", "Huisletter", "Huisnummertoevoeging", "AanduidingBijHuisnummer", "Postcode",
		"Locatiebeschrijving", "LandVanwaarIngeschreven", "AanduidingGegevensInOnderzoekAdres", "DatumIngangOnderzoekAdres",
		"Woonplaatsnaam", "Regel1AdresBuitenland", "Regel2AdresBuitenland", "Regel3AdresBuitenland",
		"LandAdresBuitenland", "DatumAanvangAdresBuitenland"},
		repeated: map[string]bool{"AanduidingGegevensInOnderzoekAdres": true, "DatumIngangOnderzoekAdres": true}}
	registrationShape = shape{ns: NSVerify, names: []string{"OmschrijvingRedenOpschorting", "IndicatieGeheim"}}
	deathShape        = shape{ns: NSVerify, names: []string{"DatumOverlijden", "AanduidingGegevensInOnderzoekOverlijden", "DatumIngangOnderzoekOverlijden"},
		repeated: map[string]bool{"AanduidingGegevensInOnderzoekOverlijden": true, "DatumIngangOnderzoekOverlijden": true}}
	answerShape    = shape{ns: NSVerify, names: []string{"Persoon", "Adres", "Inschrijving", "Overlijden"}}
	questionShape  = shape{ns: NSVerify, names: []string{"Persoon", "Adres"}}
	qPersonShape   = shape{ns: NSVerify, names: personOrder}
	qAddressShape  = shape{ns: NSVerify, names: addressOrder}
	verifyMsgShape = shape{ns: NSVerify, names: []string{"Vraag", "Antwoord", "Resultaat", "Melding", "LokaalKenmerk"},
		repeated: map[string]bool{"Melding": true}}
)

// Values SBV-Z uses in Inschrijving.
const (
	SecretNone       = "Geen beperking"
	SecretRestricted = "Er is een beperking op de gegevensverstrekking van toepassing"
)

var suspensionReasons = map[string]bool{"Overlijden": true, "Emigratie": true, "Ministerieel besluit": true, "Persoonslijst aangelegd in de RNI": true}

func withNS(s shape, ns string) shape { s.ns = ns; return s }

// parseAnswer reads Antwoord (namespace ns) into r.
func parseAnswer(n *node, ns string, r *Result) error {
	kids, err := withNS(answerShape, ns).check(n)
	if err != nil {
		return protoErr("%v", err)
	}
	if p := first(kids, "Persoon"); p != nil {
		if r.Person, err = parseAnswerPerson(p, ns, r); err != nil {
			return err
		}
	}
	if a := first(kids, "Adres"); a != nil {
		if r.Address, err = parseAnswerAddress(a, ns, r); err != nil {
			return err
		}
	}
	if i := first(kids, "Inschrijving"); i != nil {
		k, err := withNS(registrationShape, ns).check(i)
		if err != nil {
			return protoErr("%v", err)
		}
		reason, err := text(first(k, "OmschrijvingRedenOpschorting"), 40)
		if err != nil {
			return err
		}
		if reason != "" && !suspensionReasons[reason] {
			return protoErr("unknown OmschrijvingRedenOpschorting")
		}
		secret, err := text(first(k, "IndicatieGeheim"), 100)
		if err != nil {
			return err
		}
		switch secret {
		case "", SecretNone:
		case SecretRestricted:
			r.Secret = true
		default:
			return protoErr("unknown IndicatieGeheim")
		}
		r.SuspensionReason, r.SecretText = reason, secret
	}
	if o := first(kids, "Overlijden"); o != nil {
		k, err := withNS(deathShape, ns).check(o)
		if err != nil {
			return protoErr("%v", err)
		}
		d, err := optDate(first(k, "DatumOverlijden"))
		if err != nil {
			return err
		}
		if d != "" {
			dt, _ := ParseDate(d)
			r.Deceased = &dt
		} else {
			r.Deceased = &Date{}
		}
		inv, err := investigations("overlijden", k["AanduidingGegevensInOnderzoekOverlijden"], k["DatumIngangOnderzoekOverlijden"])
		if err != nil {
			return err
		}
		r.Investigations = append(r.Investigations, inv...)
	}
	return nil
}

func investigations(cat string, descs, dates []*node) ([]Investigation, error) {
	if len(descs) > maxMessages || len(dates) > maxMessages {
		return nil, protoErr("too many in-onderzoek indications")
	}
	var out []Investigation
	for i := 0; i < max(len(descs), len(dates)); i++ {
		var inv Investigation
		inv.Category = cat
		var err error
		if i < len(descs) {
			if inv.Description, err = text(descs[i], 50); err != nil {
				return nil, err
			}
		}
		if i < len(dates) {
			if inv.Since, err = optDate(dates[i]); err != nil {
				return nil, err
			}
		}
		if inv.Description != "" || inv.Since != "" {
			out = append(out, inv)
		}
	}
	return out, nil
}

func parseAnswerPerson(n *node, ns string, r *Result) (*PersonData, error) {
	k, err := withNS(answerPersonShape, ns).check(n)
	if err != nil {
		return nil, protoErr("%v", err)
	}
	p := &PersonData{}
	if p.BSN, err = text(first(k, "BSN"), 9); err != nil {
		return nil, err
	}
	if p.BSN != "" && !ValidBSN(p.BSN) {
		return nil, protoErr("answer bsn fails the eleven-test")
	}
	fields := []struct {
		name string
		dst  *Value
		max  int
	}{
		{"Voornamen", &p.GivenNames, maxGivenNames}, {"Voorletter", &p.Initial, 1},
		{"VoorvoegselGeslachtsnaam", &p.SurnamePrefix, maxPrefix}, {"Geslachtsnaam", &p.Surname, maxSurname},
		{"Geboortedatum", &p.BirthDate, 8}, {"Geboorteplaats", &p.BirthPlace, maxPlace},
		{"Geboorteland", &p.BirthCountry, maxPlace}, {"Geslachtsaanduiding", &p.Sex, 1},
	}
	for _, f := range fields {
		if *f.dst, err = compared(first(k, f.name), f.max); err != nil {
			return nil, err
		}
	}
	if p.NobleTitle, err = text(first(k, "AdellijkeTitelPredikaat"), 10); err != nil {
		return nil, err
	}
	if v := p.BirthDate.Value; v != "" {
		if _, err := ParseDate(v); err != nil {
			return nil, protoErr("answer geboortedatum invalid")
		}
	}
	if v := p.Sex.Value; v != "" && v != "M" && v != "V" && v != "O" {
		return nil, protoErr("answer geslachtsaanduiding invalid")
	}
	inv, err := investigations("persoon", k["AanduidingGegevensInOnderzoekPersoon"], k["DatumIngangOnderzoekPersoon"])
	if err != nil {
		return nil, err
	}
	r.Investigations = append(r.Investigations, inv...)
	return p, nil
}

func parseAnswerAddress(n *node, ns string, r *Result) (*AddressData, error) {
	k, err := withNS(answerAddressShape, ns).check(n)
	if err != nil {
		return nil, protoErr("%v", err)
	}
	a := &AddressData{}
	fields := []struct {
		name string
		dst  *Value
		max  int
	}{
		{"GemeenteVanInschrijving", &a.Municipality, maxPlace}, {"Straatnaam", &a.Street, maxStreet},
		{"Huisnummer", &a.HouseNumber, 5}, {"Huisletter", &a.HouseLetter, 1},
		{"Huisnummertoevoeging", &a.HouseNumberSuffix, maxSuffix}, {"AanduidingBijHuisnummer", &a.Designation, 3},
		{"Postcode", &a.PostalCode, 6},
	}
	for _, f := range fields {
		if *f.dst, err = compared(first(k, f.name), f.max); err != nil {
			return nil, err
		}
	}
	if v := a.PostalCode.Value; v != "" && !ValidPostalCode(v) {
		return nil, protoErr("answer postcode invalid")
	}
	switch a.Designation.Value {
	case "", "by", "to":
	case "tot":
		a.Designation.Value = "to"
	default:
		return nil, protoErr("answer aanduidingbijhuisnummer invalid")
	}
	fn, err := text(first(k, "FunctieAdres"), 10)
	if err != nil {
		return nil, err
	}
	switch strings.ToLower(fn) {
	case "":
	case "woonadres":
		a.Function = "Woonadres"
	case "briefadres":
		a.Function = "Briefadres"
	default:
		return nil, protoErr("answer functieadres invalid")
	}
	texts := []struct {
		name string
		dst  *string
		max  int
	}{
		{"Gemeentedeel", &a.MunicipalityPart, 24}, {"Locatiebeschrijving", &a.LocationDescription, 35},
		{"LandVanwaarIngeschreven", &a.CountryFrom, maxPlace}, {"Woonplaatsnaam", &a.Residence, 80},
		{"Regel1AdresBuitenland", &a.ForeignLines[0], 38}, {"Regel2AdresBuitenland", &a.ForeignLines[1], 38},
		{"Regel3AdresBuitenland", &a.ForeignLines[2], 38}, {"LandAdresBuitenland", &a.ForeignCountry, maxPlace},
	}
	for _, f := range texts {
		if *f.dst, err = text(first(k, f.name), f.max); err != nil {
			return nil, err
		}
	}
	if a.ForeignSince, err = optDate(first(k, "DatumAanvangAdresBuitenland")); err != nil {
		return nil, err
	}
	inv, err := investigations("adres", k["AanduidingGegevensInOnderzoekAdres"], k["DatumIngangOnderzoekAdres"])
	if err != nil {
		return nil, err
	}
	r.Investigations = append(r.Investigations, inv...)
	return a, nil
}

func parseMeldingen(ns []*node) ([]Melding, error) {
	if len(ns) == 0 {
		return nil, protoErr("answer without melding")
	}
	if len(ns) > maxMessages {
		return nil, protoErr("too many meldingen")
	}
	out := make([]Melding, 0, len(ns))
	for _, n := range ns {
		if len(n.kids) > 0 {
			return nil, protoErr("melding must hold text")
		}
		m := Melding{Text: strings.TrimSpace(n.text)}
		m.Soort, _ = n.attr("Soort")
		m.Code, _ = n.attr("Code")
		switch m.Soort {
		case "G", "W", "F":
		default:
			return nil, protoErr("melding soort %q unknown", clip(m.Soort))
		}
		if m.Code == "" || len(m.Code) > 5 || !alnum(m.Code) {
			return nil, protoErr("melding code invalid")
		}
		if m.Text == "" || utf8.RuneCountInString(m.Text) > 350 {
			return nil, protoErr("melding text empty or too long")
		}
		out = append(out, m)
	}
	return out, nil
}

func alnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// checkConsistency applies the rules every answer obeys: F carries an F
// melding and no answer data; G and A carry a G melding, no F melding and a
// valid BSN.
func checkConsistency(r *Result, hasAnswer bool) error {
	var g, f bool
	for _, m := range r.Messages {
		g = g || m.Soort == "G"
		f = f || m.Soort == "F"
	}
	switch r.Outcome {
	case OutcomeFailed:
		if !f {
			return protoErr("resultaat F without an F melding")
		}
		if hasAnswer {
			return protoErr("resultaat F with answer data")
		}
	case OutcomeFound, OutcomeDeviating:
		if f || !g {
			return protoErr("resultaat %s with inconsistent meldingen", r.Outcome)
		}
		if r.Person == nil || r.Person.BSN == "" {
			return protoErr("resultaat %s without a bsn", r.Outcome)
		}
		r.BSN = r.Person.BSN
	default:
		return protoErr("resultaat %q unknown", clip(string(r.Outcome)))
	}
	return nil
}

// parseVerifyResponse parses an OpvragenVerifieren answer body.
func parseVerifyResponse(b []byte, maxBytes int) (*Result, error) {
	return parseAnswerMessage(b, maxBytes, NSVerify, "OpvragenVerifierenResponse", "OpvragenVerifierenAntwoordBericht", true)
}

// parsePersonDataResponse parses an OpvragenPersoonsgegevens answer body.
func parsePersonDataResponse(b []byte, maxBytes int) (*Result, error) {
	return parseAnswerMessage(b, maxBytes, NSPersonData, "OpvragenPersoonsgegevensResponse", "OpvragenPersoonsgegevensAntwoordBericht", false)
}

func parseAnswerMessage(b []byte, maxBytes int, ns, wrapper, msgName string, wantRef bool) (*Result, error) {
	el, err := soapBody(b, maxBytes)
	if err != nil {
		if _, ok := err.(*FaultError); ok {
			return nil, err
		}
		return nil, protoErr("%v", err)
	}
	if !el.is(ns, wrapper) || len(el.kids) != 1 || !el.kids[0].is(ns, msgName) {
		return nil, protoErr("expected %s/%s in namespace %s", wrapper, msgName, ns)
	}
	msg := el.kids[0]
	k, err := withNS(verifyMsgShape, ns).check(msg)
	if err != nil {
		return nil, protoErr("%v", err)
	}
	r := &Result{}
	res, err := text(first(k, "Resultaat"), 1)
	if err != nil {
		return nil, err
	}
	r.Outcome = Outcome(res)
	if r.Messages, err = parseMeldingen(k["Melding"]); err != nil {
		return nil, err
	}
	ref := first(k, "LokaalKenmerk")
	if wantRef {
		if r.LocalRef, err = text(ref, maxLocalRef); err != nil {
			return nil, err
		}
		if r.LocalRef == "" {
			return nil, protoErr("answer without lokaalkenmerk")
		}
	} else if ref != nil {
		return nil, protoErr("unexpected lokaalkenmerk")
	}
	if v := first(k, "Vraag"); v != nil {
		if ns == NSVerify {
			err = checkQuestionEcho(v)
		} else {
			var kk map[string][]*node
			if kk, err = (shape{ns: ns, names: []string{"BSN"}}).check(v); err == nil {
				_, err = text(first(kk, "BSN"), 9)
			} else {
				err = protoErr("%v", err)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	ans := first(k, "Antwoord")
	if ans != nil {
		if err := parseAnswer(ans, ns, r); err != nil {
			return nil, err
		}
	}
	if err := checkConsistency(r, ans != nil); err != nil {
		return nil, err
	}
	return r, nil
}

// checkQuestionEcho only checks the shape of the echoed Vraag; its values are
// what we sent and are not used.
func checkQuestionEcho(v *node) error {
	k, err := questionShape.check(v)
	if err != nil {
		return protoErr("%v", err)
	}
	for name, s := range map[string]shape{"Persoon": qPersonShape, "Adres": qAddressShape} {
		if n := first(k, name); n != nil {
			kk, err := s.check(n)
			if err != nil {
				return protoErr("%v", err)
			}
			for _, list := range kk {
				if _, err := text(list[0], maxTransport); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
