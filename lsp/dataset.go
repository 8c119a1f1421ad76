package lsp

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"time"
)

// Patient is a synthetic patient in the simulator's dataset.
type Patient struct {
	BSN        string
	Name       string
	BirthDate  string // yyyyMMdd
	Gender     string // M, F
	Dispenses  []Dispense
	Conditions []Condition
}

// Dispense is one medication dispense (verstrekking) by a pharmacy.
type Dispense struct {
	ID          string
	Date        time.Time
	Drug        Drug
	Quantity    int    // units dispensed
	Dosage      string // gebruiksinstructie
	PharmacyURA string
	Pharmacy    string
}

// Drug is a medicinal product. The codes are SYNTHETIC numbers in the shape
// of G-Standaard HPK/PRK codes (aorta-uzi.md gives none); never use them
// clinically.
type Drug struct {
	Name string // handelsproduct-like name
	HPK  string // synthetic, 8 digits, codeSystem OIDHPK
	PRK  string // synthetic, codeSystem OIDPRK
	Form string // eenheid
}

// Condition is a generic summary entry (used for the GQZG answer).
type Condition struct {
	Code, Display string // ICPC-like code
	Start         time.Time
}

// G-Standaard code systems (Z-Index).
const (
	OIDHPK  = "2.16.840.1.113883.2.4.4.7"
	OIDPRK  = "2.16.840.1.113883.2.4.4.10"
	OIDICPC = "2.16.840.1.113883.2.4.4.31.1"
)

var drugs = []Drug{
	{"Metoprolol succinaat Sandoz tablet mga 50mg", "14163306", "58661", "stuk"},
	{"Omeprazol Teva capsule msr 20mg", "14183331", "24864", "stuk"},
	{"Amoxicilline Aurobindo capsule 500mg", "14203391", "6742", "stuk"},
	{"Paracetamol Healthypharm tablet 500mg", "14237059", "2186", "stuk"},
	{"Atorvastatine Mylan tablet omhuld 20mg", "14268485", "73016", "stuk"},
	{"Metformine HCl Accord tablet omhuld 500mg", "14283425", "20338", "stuk"},
	{"Lisinopril Actavis tablet 10mg", "14302780", "34746", "stuk"},
	{"Salbutamol Cipla inhalatiepoeder 200ug/dosis", "14322641", "22527", "dosis"},
	{"Levothyroxine Teva tablet 50ug", "14346958", "46604", "stuk"},
	{"Pantoprazol Aurobindo tablet msr 40mg", "14361868", "64203", "stuk"},
	{"Acetylsalicylzuur Cardio Mylan tablet 80mg", "14381133", "15997", "stuk"},
	{"Furosemide Centrafarm tablet 40mg", "14398230", "3964", "stuk"},
}

var dosages = []string{
	"1 maal per dag 1 tablet",
	"2 maal per dag 1 tablet",
	"3 maal per dag 1 capsule, kuur afmaken",
	"zo nodig 4 maal per dag 2 tabletten",
	"1 maal per dag 1 tablet 's ochtends voor het ontbijt",
	"zo nodig 1 inhalatie, maximaal 8 per dag",
}

var pharmacies = []struct{ URA, Name string }{
	{"90001234", "Apotheek De Gaper"},
	{"90002345", "Stadsapotheek Centrum"},
	{"90003456", "Poliklinische Apotheek Noord"},
}

var conditions = []Condition{
	{"K86", "Essentiële hypertensie", time.Time{}},
	{"T90", "Diabetes mellitus type 2", time.Time{}},
	{"R96", "Astma", time.Time{}},
	{"D84", "Oesofagus-aandoening / reflux", time.Time{}},
	{"T86", "Hypothyreoïdie", time.Time{}},
}

var (
	firstNames = []string{"Jan", "Maria", "Pieter", "Fatima", "Kees", "Sanne", "Mohamed", "Ingrid", "Daan", "Eva"}
	lastNames  = []string{"de Vries", "Jansen", "Bakker", "El Amrani", "Visser", "Smit", "Meijer", "de Boer", "Yilmaz", "Mulder"}
)

// WellKnownBSNs are test BSNs that are always in the dataset with data.
var WellKnownBSNs = []string{"999911466", "999990019", "999990032"}

// Dataset is the simulator's immutable set of synthetic patients.
type Dataset struct {
	patients map[string]*Patient
}

// NewDataset builds a deterministic dataset from seed with n generated
// patients plus the WellKnownBSNs; now anchors the dispense dates.
func NewDataset(seed int64, n int, now time.Time) *Dataset {
	r := rand.New(rand.NewPCG(uint64(seed), 0x5eed_a0a7))
	d := &Dataset{patients: make(map[string]*Patient, n+len(WellKnownBSNs))}
	bsns := append([]string{}, WellKnownBSNs...)
	for len(bsns) < n+len(WellKnownBSNs) {
		b := randomBSN(r)
		if _, dup := d.patients[b]; !dup && !contains(bsns, b) {
			bsns = append(bsns, b)
		}
	}
	day := now.UTC().Truncate(24 * time.Hour)
	for i, b := range bsns {
		p := &Patient{
			BSN:       b,
			Name:      firstNames[r.IntN(len(firstNames))] + " " + lastNames[r.IntN(len(lastNames))],
			BirthDate: fmt.Sprintf("%04d%02d%02d", 1935+r.IntN(70), 1+r.IntN(12), 1+r.IntN(28)),
			Gender:    []string{"M", "F"}[r.IntN(2)],
		}
		nd := 1 + r.IntN(5)
		if i == 0 {
			nd = 4
		}
		for j := 0; j < nd; j++ {
			ph := pharmacies[r.IntN(len(pharmacies))]
			p.Dispenses = append(p.Dispenses, Dispense{
				ID:          fmt.Sprintf("%s-%d", b, j+1),
				Date:        day.AddDate(0, 0, -r.IntN(180)),
				Drug:        drugs[r.IntN(len(drugs))],
				Quantity:    []int{10, 20, 30, 60, 90, 100}[r.IntN(6)],
				Dosage:      dosages[r.IntN(len(dosages))],
				PharmacyURA: ph.URA,
				Pharmacy:    ph.Name,
			})
		}
		sort.Slice(p.Dispenses, func(a, b int) bool { return p.Dispenses[a].Date.After(p.Dispenses[b].Date) })
		for j := 0; j < 1+r.IntN(2); j++ {
			c := conditions[r.IntN(len(conditions))]
			c.Start = day.AddDate(-1-r.IntN(10), 0, 0)
			p.Conditions = append(p.Conditions, c)
		}
		d.patients[b] = p
	}
	return d
}

// Patient returns the patient with bsn, or nil.
func (d *Dataset) Patient(bsn string) *Patient { return d.patients[bsn] }

// BSNs returns all BSNs in the dataset, sorted.
func (d *Dataset) BSNs() []string {
	out := make([]string, 0, len(d.patients))
	for b := range d.patients {
		out = append(out, b)
	}
	sort.Strings(out)
	return out
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// randomBSN returns a 9-digit number starting with 9999 (the range used for
// test persons) that passes the eleven-test.
func randomBSN(r *rand.Rand) string {
	for {
		d := [9]int{9, 9, 9, 9}
		for i := 4; i < 8; i++ {
			d[i] = r.IntN(10)
		}
		sum := 0
		for i := 0; i < 8; i++ {
			sum += d[i] * (9 - i)
		}
		last := sum % 11
		if last == 10 {
			continue
		}
		d[8] = last
		return fmt.Sprintf("%d%d%d%d%d%d%d%d%d", d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8])
	}
}
