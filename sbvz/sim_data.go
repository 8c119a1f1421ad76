package sbvz

import (
	"fmt"
	"math/rand/v2"
)

// FaultMode makes the simulator misbehave for one person, for fault tests.
type FaultMode int

// Fault modes.
const (
	FaultNone          FaultMode = iota
	FaultSlow                    // answer after SimConfig.SlowDelay
	FaultServerError             // HTTP 500 with a soap:Server fault
	FaultUnavailable             // HTTP 503, not SOAP
	FaultWrongLocalRef           // echo another LokaalKenmerk
	FaultOtherBSN                // answer a verification with another BSN
)

// SimPerson is one synthetic person in the simulator's register.
type SimPerson struct {
	Key            string // short handle used in tests and docs, e.g. "twin-a"
	BSN            string
	GivenNames     string
	NobleTitle     string
	SurnamePrefix  string
	Surname        string
	BirthDate      string
	BirthPlace     string
	BirthCountry   string
	Sex            string
	Address        *Address // nil for a non-resident (RNI)
	Residence      string   // Woonplaatsnaam
	Foreign        []string // foreign address lines for non-residents
	ForeignCountry string
	Secret         bool
	DeathDate      string
	Suspension     string
	Investigations []Investigation
	Fault          FaultMode
}

// SimDocument is one identity document known to the simulated WID check.
type SimDocument struct {
	Number     string
	Kind       DocumentKind
	Status     DocumentStatus
	ValidUntil string
}

// TestBSN returns the n-th synthetic BSN: 9999xxxxx numbers (the range RvIG
// uses for test persons) that pass the eleven-test.
func TestBSN(n int) string {
	for p := 9999_0000 + n*10; ; p++ {
		prefix := fmt.Sprintf("%08d", p)
		if d := bsnCheckDigit(prefix); d >= 0 {
			return prefix + string(rune('0'+d))
		}
	}
}

// Personas are the fixed persons every simulator has, by key.
func Personas() []SimPerson {
	addr := func(street, no, letter, pc, gem string) *Address {
		return &Address{Municipality: gem, Street: street, HouseNumber: no, HouseLetter: letter, PostalCode: pc}
	}
	return []SimPerson{
		{Key: "found", BSN: TestBSN(1), GivenNames: "Jan Pieter", Surname: "Vries", SurnamePrefix: "de", BirthDate: "19700101", BirthPlace: "Amsterdam", BirthCountry: "Nederland", Sex: "M",
			Address: addr("Keizersgracht", "10", "", "1015CN", "Amsterdam"), Residence: "Amsterdam"},
		{Key: "twin-a", BSN: TestBSN(2), GivenNames: "Daan", Surname: "Bakker", BirthDate: "20150312", BirthPlace: "Utrecht", BirthCountry: "Nederland", Sex: "M",
			Address: addr("Oudegracht", "7", "", "3511AB", "Utrecht"), Residence: "Utrecht"},
		{Key: "twin-b", BSN: TestBSN(3), GivenNames: "Sem", Surname: "Bakker", BirthDate: "20150312", BirthPlace: "Utrecht", BirthCountry: "Nederland", Sex: "M",
			Address: addr("Oudegracht", "7", "", "3511AB", "Utrecht"), Residence: "Utrecht"},
		{Key: "secret", BSN: TestBSN(4), GivenNames: "Sophie Maria", Surname: "Jansen", BirthDate: "19851124", BirthPlace: "Rotterdam", BirthCountry: "Nederland", Sex: "V",
			Address: addr("Coolsingel", "40", "B", "3011AD", "Rotterdam"), Residence: "Rotterdam", Secret: true},
		{Key: "deceased", BSN: TestBSN(5), GivenNames: "Hendrik", Surname: "Visser", BirthDate: "19380704", BirthPlace: "Groningen", BirthCountry: "Nederland", Sex: "M",
			Address: addr("Herestraat", "101", "", "9711LE", "Groningen"), Residence: "Groningen", DeathDate: "20240817", Suspension: "Overlijden"},
		{Key: "onderzoek", BSN: TestBSN(6), GivenNames: "Fatima", Surname: "Amrani", SurnamePrefix: "el", BirthDate: "19920215", BirthPlace: "Den Haag", BirthCountry: "Nederland", Sex: "V",
			Address: addr("Laan van Meerdervoort", "250", "", "2563AE", "'s-Gravenhage"), Residence: "'s-Gravenhage",
			Investigations: []Investigation{{Category: "persoon", Description: "Geboortedatum is in onderzoek", Since: "20250301"}, {Category: "adres", Description: "Adres is in onderzoek", Since: "20250410"}}},
		{Key: "non-resident", BSN: TestBSN(7), GivenNames: "Lukas", Surname: "Schneider", BirthDate: "19880530", BirthPlace: "Köln", BirthCountry: "Duitsland", Sex: "M",
			Foreign: []string{"Domstraße 12", "50668 Köln"}, ForeignCountry: "Duitsland", Suspension: "Persoonslijst aangelegd in de RNI"},
		{Key: "slow", BSN: TestBSN(8), GivenNames: "Willem", Surname: "Traag", BirthDate: "19750909", BirthPlace: "Zwolle", BirthCountry: "Nederland", Sex: "M",
			Address: addr("Diezerstraat", "3", "", "8011RA", "Zwolle"), Residence: "Zwolle", Fault: FaultSlow},
		{Key: "server-error", BSN: TestBSN(9), GivenNames: "Karin", Surname: "Storing", BirthDate: "19660101", BirthPlace: "Arnhem", BirthCountry: "Nederland", Sex: "V",
			Address: addr("Rijnkade", "5", "", "6811HA", "Arnhem"), Residence: "Arnhem", Fault: FaultServerError},
		{Key: "unavailable", BSN: TestBSN(10), GivenNames: "Piet", Surname: "Onbereikbaar", BirthDate: "19600606", BirthPlace: "Delft", BirthCountry: "Nederland", Sex: "M",
			Address: addr("Markt", "1", "", "2611GP", "Delft"), Residence: "Delft", Fault: FaultUnavailable},
		{Key: "wrong-ref", BSN: TestBSN(11), GivenNames: "Anna", Surname: "Kenmerk", BirthDate: "19990909", BirthPlace: "Leiden", BirthCountry: "Nederland", Sex: "V",
			Address: addr("Breestraat", "9", "", "2311CH", "Leiden"), Residence: "Leiden", Fault: FaultWrongLocalRef},
		{Key: "other-bsn", BSN: TestBSN(12), GivenNames: "Bram", Surname: "Verwisseld", BirthDate: "19810318", BirthPlace: "Breda", BirthCountry: "Nederland", Sex: "M",
			Address: addr("Grote Markt", "22", "", "4811XR", "Breda"), Residence: "Breda", Fault: FaultOtherBSN},
	}
}

// Persona returns the fixed persona with the key; it panics on an unknown key
// (programming error in a test).
func Persona(key string) SimPerson {
	for _, p := range Personas() {
		if p.Key == key {
			return p
		}
	}
	panic("sbvz: unknown persona " + key)
}

// SimDocuments are the identity documents the simulated WID check knows.
func SimDocuments() []SimDocument {
	return []SimDocument{
		{Number: "NXC4R7T18", Kind: DocPassport, Status: DocValid, ValidUntil: "20310101"},
		{Number: "IPK9L2M35", Kind: DocIDCard, Status: DocStolen, ValidUntil: "20290601"},
		{Number: "NWP3H8D21", Kind: DocPassport, Status: DocExpired, ValidUntil: "20230315"},
		{Number: "5123456789", Kind: DocDrivingLicence, Status: DocMissing, ValidUntil: "20300101"},
	}
}

var (
	boys    = []string{"Daan", "Sem", "Lucas", "Levi", "Finn", "Noah", "Milan", "Jesse", "Bram", "Thijs", "Ruben", "Sander", "Kees", "Gerrit", "Johannes", "Mohammed", "Youssef"}
	girls   = []string{"Emma", "Julia", "Tess", "Sophie", "Zoë", "Mila", "Sara", "Anna", "Lotte", "Fleur", "Ingrid", "Marieke", "Annelies", "Yasmina", "Noor"}
	surname = []struct{ prefix, name string }{
		{"", "Jong"}, {"de", "Jong"}, {"", "Jansen"}, {"de", "Vries"}, {"van den", "Berg"}, {"van", "Dijk"}, {"", "Bakker"},
		{"", "Visser"}, {"", "Smit"}, {"", "Meijer"}, {"de", "Boer"}, {"", "Mulder"}, {"de", "Groot"}, {"", "Bos"},
		{"", "Vos"}, {"", "Peters"}, {"", "Hendriks"}, {"van", "Leeuwen"}, {"", "Dekker"}, {"", "Brouwer"}, {"de", "Wit"},
		{"", "Dijkstra"}, {"", "Smits"}, {"de", "Graaf"}, {"van der", "Meer"}, {"", "Yılmaz"}, {"", "Bouzid"},
	}
	places = []struct{ city, street, pc string }{
		{"Amsterdam", "Prinsengracht", "1016"}, {"Rotterdam", "Witte de Withstraat", "3012"}, {"Utrecht", "Biltstraat", "3572"},
		{"Eindhoven", "Stratumseind", "5611"}, {"Groningen", "Vismarkt", "9712"}, {"Tilburg", "Heuvelring", "5038"},
		{"Almere", "Grote Markt", "1315"}, {"Nijmegen", "Molenstraat", "6511"}, {"Haarlem", "Grote Houtstraat", "2011"},
		{"Enschede", "Oude Markt", "7511"}, {"Maastricht", "Vrijthof", "6211"}, {"Leeuwarden", "Nieuwestad", "8911"},
	}
)

// Dataset returns the personas followed by n generated persons, the same for
// the same seed. Generated persons have unique BSNs and unique (birth date,
// sex, postcode, huisnummer), so either search path finds exactly one.
func Dataset(seed int64, n int) []SimPerson {
	out := Personas()
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5b5a))
	for i := 0; i < n; i++ {
		p := SimPerson{Key: fmt.Sprintf("gen-%d", i+1), BSN: TestBSN(100 + i), BirthCountry: "Nederland"}
		if rng.IntN(2) == 0 {
			p.Sex, p.GivenNames = "M", boys[rng.IntN(len(boys))]
		} else {
			p.Sex, p.GivenNames = "V", girls[rng.IntN(len(girls))]
		}
		s := surname[rng.IntN(len(surname))]
		p.SurnamePrefix, p.Surname = s.prefix, s.name
		pl := places[rng.IntN(len(places))]
		p.BirthPlace, p.Residence = pl.city, pl.city
		p.BirthDate = fmt.Sprintf("%04d%02d%02d", 1930+rng.IntN(90), 1+rng.IntN(12), 1+rng.IntN(28))
		p.Address = &Address{Municipality: pl.city, Street: pl.street, HouseNumber: fmt.Sprint(1000 + i),
			PostalCode: pl.pc + string(rune('A'+rng.IntN(26))) + string(rune('A'+rng.IntN(26)))}
		if p.Address.PostalCode[4:] == "SS" || p.Address.PostalCode[4:] == "SD" || p.Address.PostalCode[4:] == "SA" {
			p.Address.PostalCode = pl.pc + "AB" // PTT never issued SS, SD, SA
		}
		out = append(out, p)
	}
	return out
}
