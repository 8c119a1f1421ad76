package sbvz

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Errors returned by the client. Functional "not found" answers are not
// errors: they are a *Result with Outcome F.
var (
	// ErrInvalidBSN is returned before sending when a BSN fails the eleven-test.
	ErrInvalidBSN = errors.New("sbvz: bsn fails the eleven-test")
	// ErrSearchPath is returned before sending when neither search path 1
	// (geboortedatum+geslacht+huisnummer+postcode) nor 2
	// (geboortedatum+geslacht+geslachtsnaam) is complete.
	ErrSearchPath = errors.New("sbvz: incomplete search path")
	// ErrInvalidQuery is returned before sending for a malformed field.
	ErrInvalidQuery = errors.New("sbvz: invalid question")
	// ErrProtocol is returned for an answer that breaks the protocol
	// (malformed XML, wrong shape, inconsistent result). Wrapped by the more
	// specific errors below.
	ErrProtocol = errors.New("sbvz: protocol error in answer")
	// ErrLocalRefMismatch is returned when the answer's LokaalKenmerk is not
	// the one sent.
	ErrLocalRefMismatch = fmt.Errorf("%w: lokaalkenmerk echo differs", ErrProtocol)
	// ErrBSNMismatch is returned when a verification (or a person-data
	// question) is answered with another BSN than the one asked.
	ErrBSNMismatch = fmt.Errorf("%w: answer carries another bsn", ErrProtocol)
	// ErrResponseTooLarge is returned when the answer exceeds the size cap.
	ErrResponseTooLarge = fmt.Errorf("%w: answer too large", ErrProtocol)
	// ErrFault matches every *FaultError with errors.Is.
	ErrFault = errors.New("sbvz: soap fault")
	// ErrNotConfigured is returned when the endpoint for an operation is empty.
	ErrNotConfigured = errors.New("sbvz: endpoint not configured")
)

// FaultError is a SOAP fault or a non-2xx HTTP answer from SBV-Z. String is
// the server's faultstring, kept for logs; it may reflect input, so callers
// showing it to users should prefer Code.
type FaultError struct {
	HTTPStatus int
	Code       string // e.g. "soap:Client", "soap:Server"; "" when the body was not a SOAP fault
	String     string
}

// Error describes the fault without the faultstring (it may echo input).
func (e *FaultError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("sbvz: http error (status=%d)", e.HTTPStatus)
	}
	return fmt.Sprintf("sbvz: soap fault (status=%d code=%s)", e.HTTPStatus, e.Code)
}

// Is makes errors.Is(err, ErrFault) true for every FaultError.
func (e *FaultError) Is(target error) bool { return target == ErrFault }

// Client reports whether the fault blames the request (soap:Client or 4xx):
// retrying the same question will not help.
func (e *FaultError) Client() bool {
	return strings.HasSuffix(e.Code, ":Client") || e.Code == "Client" || (e.HTTPStatus >= 400 && e.HTTPStatus < 500)
}

// Person is the person part of a question (Vraag/Persoon). Empty fields are
// omitted from the message. Dates are yyyyMMdd (month and day may be 00 when
// unknown); Sex is M, V or O.
type Person struct {
	BSN           string // Vraag/Persoon/BSN; set only to verify
	GivenNames    string // Voornamen
	Initial       string // Voorletter
	SurnamePrefix string // VoorvoegselGeslachtsnaam, e.g. "van der"
	Surname       string // Geslachtsnaam
	BirthDate     string // Geboortedatum, yyyyMMdd
	BirthPlace    string // Geboorteplaats
	BirthCountry  string // Geboorteland
	Sex           string // Geslachtsaanduiding: M, V or O
}

// Address is the address part of a question (Vraag/Adres).
type Address struct {
	Municipality      string // GemeenteVanInschrijving
	Street            string // Straatnaam
	HouseNumber       string // Huisnummer, 1-5 digits
	HouseLetter       string // Huisletter, one letter
	HouseNumberSuffix string // Huisnummertoevoeging
	Designation       string // AanduidingBijHuisnummer: "by" or "to"
	PostalCode        string // Postcode, 1234AB
}

// Query is one OpvragenVerifieren question.
type Query struct {
	Person  Person
	Address Address
}

// SearchPath is the SBV-Z search path a question uses.
type SearchPath int

const (
	// PathAddress is search path 1: geboortedatum + geslacht + huisnummer + postcode.
	PathAddress SearchPath = 1
	// PathSurname is search path 2: geboortedatum + geslacht + geslachtsnaam
	// (the only one that finds non-residents).
	PathSurname SearchPath = 2
)

// Outcome is the Resultaat of an answer.
type Outcome string

// Outcomes as SBV-Z sends them.
const (
	OutcomeFound     Outcome = "G" // gevonden / geverifieerd
	OutcomeDeviating Outcome = "A" // gevonden, maar met afwijkende gegevens
	OutcomeFailed    Outcome = "F" // fout: not found, not unique, refused
)

// Melding codes seen in SBV-Z answers.
const (
	CodeFound       = "23002" // BSN gevonden (G, or A "met afwijkende gegevens")
	CodeNotFound    = "23001" // geen resultaat
	CodeNotUnique   = "23006" // vraag leidde niet tot één persoon
	CodeFormat      = "SX04"  // field does not meet its format (warning)
	CodePersonFound = "3002"  // OpvragenPersoonsgegevens: BSN gevonden
)

// Melding is one message in an answer: Soort G (good), W (warning) or F (error).
type Melding struct {
	Soort string `json:"soort"`
	Code  string `json:"code"`
	Text  string `json:"text"`
}

// Value is a compared answer field: the registered value and whether it
// differs from what the question said (Afwijkend="true").
type Value struct {
	Value     string `json:"value"`
	Afwijkend bool   `json:"afwijkend"`
}

// Date is a BRP date; Month and Day are 0 when unknown (yyyy0000, yyyyMM00).
type Date struct{ Year, Month, Day int }

// MarshalText formats the date as yyyyMMdd (also in JSON).
func (d Date) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String formats the date as yyyyMMdd.
func (d Date) String() string { return fmt.Sprintf("%04d%02d%02d", d.Year, d.Month, d.Day) }

// ParseDate parses yyyyMMdd with optional 00 month/day; "00000000" is the
// zero Date.
func ParseDate(s string) (Date, error) {
	if len(s) != 8 || !allDigits(s) {
		return Date{}, fmt.Errorf("%w: date must be yyyyMMdd (value=%q)", ErrInvalidQuery, clip(s))
	}
	y, _ := strconv.Atoi(s[:4])
	m, _ := strconv.Atoi(s[4:6])
	d, _ := strconv.Atoi(s[6:])
	if s == "00000000" {
		return Date{}, nil
	}
	if y == 0 || m > 12 || d > 31 || (m == 0 && d != 0) {
		return Date{}, fmt.Errorf("%w: impossible date (value=%q)", ErrInvalidQuery, s)
	}
	if m != 0 && d != 0 && d > daysIn(y, m) {
		return Date{}, fmt.Errorf("%w: impossible date (value=%q)", ErrInvalidQuery, s)
	}
	return Date{y, m, d}, nil
}

func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// Investigation is one "in onderzoek" indication: which data the municipality
// is investigating, since when.
type Investigation struct {
	Category    string `json:"category"`    // "persoon", "adres" or "overlijden"
	Description string `json:"description"` // AanduidingGegevensInOnderzoek...
	Since       string `json:"since"`       // DatumIngangOnderzoek..., yyyyMMdd
}

// PersonData is the person part of an answer (Antwoord/Persoon).
type PersonData struct {
	BSN           string `json:"bsn"`
	GivenNames    Value  `json:"voornamen"`
	Initial       Value  `json:"voorletter"`
	NobleTitle    string `json:"adellijke_titel,omitempty"` // AdellijkeTitelPredikaat
	SurnamePrefix Value  `json:"voorvoegsel"`
	Surname       Value  `json:"geslachtsnaam"`
	BirthDate     Value  `json:"geboortedatum"`
	BirthPlace    Value  `json:"geboorteplaats"`
	BirthCountry  Value  `json:"geboorteland"`
	Sex           Value  `json:"geslacht"`
}

// AddressData is the address part of an answer (Antwoord/Adres).
type AddressData struct {
	Municipality        Value     `json:"gemeente"`
	Function            string    `json:"functie_adres,omitempty"` // FunctieAdres: Woonadres or Briefadres
	MunicipalityPart    string    `json:"gemeentedeel,omitempty"`  // Gemeentedeel
	Street              Value     `json:"straatnaam"`
	HouseNumber         Value     `json:"huisnummer"`
	HouseLetter         Value     `json:"huisletter"`
	HouseNumberSuffix   Value     `json:"toevoeging"`
	Designation         Value     `json:"aanduiding_bij_huisnummer"`
	PostalCode          Value     `json:"postcode"`
	LocationDescription string    `json:"locatiebeschrijving,omitempty"`       // Locatiebeschrijving
	CountryFrom         string    `json:"land_vanwaar_ingeschreven,omitempty"` // LandVanwaarIngeschreven
	Residence           string    `json:"woonplaats,omitempty"`                // Woonplaatsnaam
	ForeignLines        [3]string `json:"adres_buitenland"`
	ForeignCountry      string    `json:"land_adres_buitenland,omitempty"`
	ForeignSince        string    `json:"datum_aanvang_adres_buitenland,omitempty"`
}

// Result is the typed answer to a question.
type Result struct {
	Outcome  Outcome      `json:"resultaat"`
	LocalRef string       `json:"lokaal_kenmerk,omitempty"` // LokaalKenmerk echo ("" for OpvragenPersoonsgegevens)
	BSN      string       `json:"bsn,omitempty"`            // the BSN found (G/A), "" for F
	Person   *PersonData  `json:"persoon,omitempty"`
	Address  *AddressData `json:"adres,omitempty"`
	// Secret is true when IndicatieGeheim says a restriction on disclosure
	// applies (the person asked the municipality not to share their data).
	Secret     bool   `json:"geheim"`
	SecretText string `json:"indicatie_geheim,omitempty"`
	// SuspensionReason is OmschrijvingRedenOpschorting: "Overlijden",
	// "Emigratie", "Ministerieel besluit", "Persoonslijst aangelegd in de RNI".
	SuspensionReason string `json:"reden_opschorting,omitempty"`
	// Deceased is the date of death when the answer carries Overlijden.
	Deceased       *Date           `json:"overleden,omitempty"`
	Investigations []Investigation `json:"in_onderzoek,omitempty"`
	Messages       []Melding       `json:"meldingen"`
}

// Deviating lists the answer fields marked Afwijkend="true", by their SBV-Z
// element names (e.g. "Persoon/Geslachtsnaam").
func (r *Result) Deviating() []string {
	var out []string
	add := func(name string, v Value) {
		if v.Afwijkend {
			out = append(out, name)
		}
	}
	if p := r.Person; p != nil {
		add("Persoon/Voornamen", p.GivenNames)
		add("Persoon/Voorletter", p.Initial)
		add("Persoon/VoorvoegselGeslachtsnaam", p.SurnamePrefix)
		add("Persoon/Geslachtsnaam", p.Surname)
		add("Persoon/Geboortedatum", p.BirthDate)
		add("Persoon/Geboorteplaats", p.BirthPlace)
		add("Persoon/Geboorteland", p.BirthCountry)
		add("Persoon/Geslachtsaanduiding", p.Sex)
	}
	if a := r.Address; a != nil {
		add("Adres/GemeenteVanInschrijving", a.Municipality)
		add("Adres/Straatnaam", a.Street)
		add("Adres/Huisnummer", a.HouseNumber)
		add("Adres/Huisletter", a.HouseLetter)
		add("Adres/Huisnummertoevoeging", a.HouseNumberSuffix)
		add("Adres/AanduidingBijHuisnummer", a.Designation)
		add("Adres/Postcode", a.PostalCode)
	}
	return out
}

// InOnderzoek reports whether any data of the person is under investigation.
func (r *Result) InOnderzoek() bool { return len(r.Investigations) > 0 }

// Codes returns the Melding codes, in order.
func (r *Result) Codes() []string {
	out := make([]string, len(r.Messages))
	for i, m := range r.Messages {
		out[i] = m.Code
	}
	return out
}

// HasCode reports whether a Melding with the code is present.
func (r *Result) HasCode(code string) bool {
	for _, m := range r.Messages {
		if m.Code == code {
			return true
		}
	}
	return false
}

// Field limits (characters) from the SBV-Z interface.
const (
	maxGivenNames = 200
	maxSurname    = 200
	maxPrefix     = 10
	maxPlace      = 40
	maxStreet     = 40
	maxSuffix     = 12
	maxLocalRef   = 50
	maxTransport  = 4096
)

// Validate checks the question the way the client does before sending it and
// returns the search path it uses. wantBSN says whether a BSN must be present
// (verify) or absent (lookup).
func (q Query) Validate(wantBSN bool) (SearchPath, error) {
	p, a := q.Person, q.Address
	if wantBSN && p.BSN == "" {
		return 0, fmt.Errorf("%w: verify needs a bsn", ErrInvalidQuery)
	}
	if !wantBSN && p.BSN != "" {
		return 0, fmt.Errorf("%w: lookup must not carry a bsn", ErrInvalidQuery)
	}
	if p.BSN != "" && !ValidBSN(p.BSN) {
		return 0, fmt.Errorf("%w (bsn=%s)", ErrInvalidBSN, maskBSN(p.BSN))
	}
	fields := []struct {
		name, v string
		max     int
	}{
		{"Voornamen", p.GivenNames, maxGivenNames}, {"Voorletter", p.Initial, 1},
		{"VoorvoegselGeslachtsnaam", p.SurnamePrefix, maxPrefix}, {"Geslachtsnaam", p.Surname, maxSurname},
		{"Geboorteplaats", p.BirthPlace, maxPlace}, {"Geboorteland", p.BirthCountry, maxPlace},
		{"GemeenteVanInschrijving", a.Municipality, maxPlace}, {"Straatnaam", a.Street, maxStreet},
		{"Huisnummertoevoeging", a.HouseNumberSuffix, maxSuffix},
	}
	for _, f := range fields {
		if err := checkText(f.name, f.v, f.max); err != nil {
			return 0, err
		}
	}
	if p.Initial != "" && !isLetter(p.Initial) {
		return 0, fmt.Errorf("%w: voorletter must be one letter", ErrInvalidQuery)
	}
	if p.BirthDate == "" || p.Sex == "" {
		return 0, fmt.Errorf("%w: geboortedatum and geslachtsaanduiding are required on both paths", ErrSearchPath)
	}
	if _, err := ParseDate(p.BirthDate); err != nil {
		return 0, fmt.Errorf("%w (field=Geboortedatum)", err)
	}
	if p.Sex != "M" && p.Sex != "V" && p.Sex != "O" {
		return 0, fmt.Errorf("%w: geslachtsaanduiding must be M, V or O (value=%q)", ErrInvalidQuery, clip(p.Sex))
	}
	if a.HouseNumber != "" && (len(a.HouseNumber) > 5 || !allDigits(a.HouseNumber) || strings.TrimLeft(a.HouseNumber, "0") == "") {
		return 0, fmt.Errorf("%w: huisnummer must be 1-5 digits (value=%q)", ErrInvalidQuery, clip(a.HouseNumber))
	}
	if a.HouseLetter != "" && !isLetter(a.HouseLetter) {
		return 0, fmt.Errorf("%w: huisletter must be one letter", ErrInvalidQuery)
	}
	if a.PostalCode != "" && !ValidPostalCode(a.PostalCode) {
		return 0, fmt.Errorf("%w: postcode must be 9999XX (value=%q)", ErrInvalidQuery, clip(a.PostalCode))
	}
	if a.Designation != "" && a.Designation != "by" && a.Designation != "to" {
		return 0, fmt.Errorf("%w: aanduidingbijhuisnummer must be by or to", ErrInvalidQuery)
	}
	switch {
	case p.Surname != "":
		return PathSurname, nil
	case a.PostalCode != "" && a.HouseNumber != "":
		return PathAddress, nil
	}
	return 0, fmt.Errorf("%w: give geslachtsnaam (path 2) or postcode and huisnummer (path 1)", ErrSearchPath)
}

// ValidPostalCode reports whether s is a Dutch postcode in SBV-Z form: four
// digits (not starting with 0) and two capital letters, no space.
func ValidPostalCode(s string) bool {
	if len(s) != 6 || s[0] == '0' || !allDigits(s[:4]) {
		return false
	}
	for i := 4; i < 6; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

func checkText(name, v string, max int) error {
	if v == "" {
		return nil
	}
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("%w: %s is blank", ErrInvalidQuery, strings.ToLower(name))
	}
	if !utf8.ValidString(v) || len(v) > maxTransport {
		return fmt.Errorf("%w: %s is not valid text", ErrInvalidQuery, strings.ToLower(name))
	}
	if utf8.RuneCountInString(v) > max {
		return fmt.Errorf("%w: %s longer than %d characters", ErrInvalidQuery, strings.ToLower(name), max)
	}
	for _, r := range v {
		if !xmlChar(r) {
			return fmt.Errorf("%w: %s has a character xml cannot carry", ErrInvalidQuery, strings.ToLower(name))
		}
	}
	return nil
}

func xmlChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D || (r >= 0x20 && r <= 0xD7FF) ||
		(r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
}

func isLetter(s string) bool {
	r, n := utf8.DecodeRuneInString(s)
	return n == len(s) && ((r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'))
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// maskBSN keeps a BSN out of logs and errors: only the last three digits.
func maskBSN(s string) string {
	if len(s) <= 3 {
		return "***"
	}
	return strings.Repeat("*", len(s)-3) + s[len(s)-3:]
}

func clip(s string) string { return clipN(s, 32) }

// clipN shortens s to at most n runes for messages.
func clipN(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "..."
}
