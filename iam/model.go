package iam

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Sentinel errors of package iam.
var (
	// ErrInvalid is returned for input that fails validation.
	ErrInvalid = errors.New("iam: invalid input")
	// ErrMissingField is returned when a required person field is empty.
	ErrMissingField = errors.New("iam: required field missing")
	// ErrThreshold is returned when a source or output threshold blocks work.
	ErrThreshold = errors.New("iam: threshold exceeded")
	// ErrNotFound is returned when a person, account, grant or item is unknown.
	ErrNotFound = errors.New("iam: not found")
	// ErrMultipleFound is returned when a correlation finds several accounts.
	ErrMultipleFound = errors.New("iam: correlation found several accounts")
	// ErrUnsupported is returned for an operation a connector cannot do.
	ErrUnsupported = errors.New("iam: operation not supported by target")
	// ErrTransient marks a connector error worth retrying.
	ErrTransient = errors.New("iam: transient target error")
	// ErrExcluded is returned when a person is excluded from provisioning.
	ErrExcluded = errors.New("iam: person excluded")
)

// Card is a UZI card (or other token) held by a person.
type Card struct {
	Serial   string    `json:"serial" yaml:"serial"`
	Type     string    `json:"type" yaml:"type"` // Z, N, M, S
	NotAfter time.Time `json:"notAfter,omitzero" yaml:"notAfter"`
}

// Contract is one employment, assignment or shift. A zero End means open-ended.
type Contract struct {
	ID         string    `json:"id"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end,omitzero"`
	Function   string    `json:"function,omitempty"`
	Department string    `json:"department,omitempty"`
	Location   string    `json:"location,omitempty"`
	CostCentre string    `json:"costCentre,omitempty"`
	Source     string    `json:"source,omitempty"`
	Shift      bool      `json:"shift,omitempty"`
	FTE        float64   `json:"fte,omitempty"`
	Sequence   int       `json:"sequence,omitempty"`
	Manager    string    `json:"manager,omitempty"` // person ID of the manager (attestation)
}

// ActiveAt reports whether the contract runs at t (Start <= t <= End).
func (c Contract) ActiveAt(t time.Time) bool {
	return !t.Before(c.Start) && (c.End.IsZero() || !t.After(c.End))
}

// InWindow reports whether t falls between before days ahead of the start
// and after days past the end (the rule timeframe).
func (c Contract) InWindow(t time.Time, beforeDays, afterDays int) bool {
	from := c.Start.AddDate(0, 0, -beforeDays)
	if t.Before(from) {
		return false
	}
	return c.End.IsZero() || !t.After(c.End.AddDate(0, 0, afterDays))
}

// Person is a human being as the sources know them, with all contracts.
type Person struct {
	ID             string     `json:"id"`
	GivenName      string     `json:"givenName,omitempty"`
	FamilyName     string     `json:"familyName,omitempty"`
	DisplayName    string     `json:"displayName,omitempty"`
	Email          string     `json:"email,omitempty"`
	PrivateEmail   string     `json:"privateEmail,omitempty"`
	EmployeeNumber string     `json:"employeeNumber,omitempty"`
	UZI            string     `json:"uzi,omitempty"`
	RoleCodes      []string   `json:"roleCodes,omitempty"`
	AGB            string     `json:"agb,omitempty"`
	BIG            string     `json:"big,omitempty"`
	Trained        *bool      `json:"trained,omitempty"` // nil = unknown (treated as trained)
	Cards          []Card     `json:"cards,omitempty"`
	Contracts      []Contract `json:"contracts,omitempty"`
	Source         string     `json:"source,omitempty"`
	// Removed marks a person that vanished from every source (a tombstone):
	// treated as a leaver so their accounts are disabled, not forgotten.
	Removed bool `json:"removed,omitempty"`
}

// Name returns the display name, or given + family name.
func (p *Person) Name() string {
	if p.DisplayName != "" {
		return p.DisplayName
	}
	return strings.TrimSpace(p.GivenName + " " + p.FamilyName)
}

// Field returns a person-level field by its rule/config name.
func (p *Person) Field(name string) string {
	switch name { // fast path for the usual spellings
	case "employeeNumber":
		return p.EmployeeNumber
	case "uzi":
		return p.UZI
	case "email":
		return p.Email
	}
	if strings.EqualFold(name, "displayname") {
		return p.Name() // falls back to the given and family name
	}
	if f := p.stored(name); f != nil {
		return *f
	}
	return ""
}

// setField sets the stored field named name (case-insensitive); unknown
// names are ignored.
func (p *Person) setField(name, v string) {
	if f := p.stored(name); f != nil {
		*f = v
	}
}

// stored returns the Person's string field named name (case-insensitive),
// or nil: the one table behind Field and setField.
func (p *Person) stored(name string) *string {
	switch strings.ToLower(name) {
	case "id":
		return &p.ID
	case "givenname":
		return &p.GivenName
	case "familyname":
		return &p.FamilyName
	case "displayname":
		return &p.DisplayName
	case "email":
		return &p.Email
	case "privateemail":
		return &p.PrivateEmail
	case "employeenumber":
		return &p.EmployeeNumber
	case "uzi":
		return &p.UZI
	case "agb":
		return &p.AGB
	case "big":
		return &p.BIG
	}
	return nil
}

// State is a person's lifecycle state at a moment.
type State string

// Lifecycle states.
const (
	StateJoiner State = "joiner" // only future contracts
	StateActive State = "active" // at least one contract runs now
	StateLeaver State = "leaver" // no current and no future contract
)

// StateAt returns the person's lifecycle state at t. A person with no active
// and no future contract (shift) is a leaver.
func (p *Person) StateAt(t time.Time) State {
	future := false
	for _, c := range p.Contracts {
		if c.ActiveAt(t) {
			return StateActive
		}
		if c.Start.After(t) {
			future = true
		}
	}
	if future {
		return StateJoiner
	}
	return StateLeaver
}

// SortKey is one key of the primary-contract sort order, e.g. "fte desc".
type SortKey struct {
	Field string // fte, sequence, start, end
	Desc  bool
}

// ParseSortOrder parses "fte desc, end desc, start asc".
func ParseSortOrder(s string) ([]SortKey, error) {
	var out []SortKey
	for part := range strings.SplitSeq(s, ",") {
		f := strings.Fields(strings.TrimSpace(part))
		if len(f) == 0 {
			continue
		}
		k := SortKey{Field: strings.ToLower(f[0])}
		switch k.Field {
		case "fte", "sequence", "start", "end":
		default:
			return nil, fmt.Errorf("%w: unknown sort field (field=%s)", ErrInvalid, f[0])
		}
		if len(f) > 1 {
			switch strings.ToLower(f[1]) {
			case "desc":
				k.Desc = true
			case "asc":
			default:
				return nil, fmt.Errorf("%w: sort direction must be asc or desc (field=%s)", ErrInvalid, f[0])
			}
		}
		out = append(out, k)
	}
	return out, nil
}

// DefaultSortOrder is the AFAS-like default: FTE desc, sequence desc, end
// desc (open-ended first), start asc.
var DefaultSortOrder = []SortKey{{"fte", true}, {"sequence", true}, {"end", true}, {"start", false}}

// PrimaryContract returns the first contract active at t (or, if none, the
// first future one, or the latest ended one) in the given sort order.
func (p *Person) PrimaryContract(t time.Time, order []SortKey) (Contract, bool) {
	if len(p.Contracts) == 0 {
		return Contract{}, false
	}
	if order == nil {
		order = DefaultSortOrder
	}
	rank := func(c Contract) int {
		switch {
		case c.ActiveAt(t):
			return 0
		case c.Start.After(t):
			return 1
		}
		return 2
	}
	cs := append([]Contract(nil), p.Contracts...)
	sort.SliceStable(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra < rb
		}
		for _, k := range order {
			c := compareContract(a, b, k.Field)
			if c == 0 {
				continue
			}
			if k.Desc {
				return c > 0
			}
			return c < 0
		}
		return false
	})
	return cs[0], true
}

func compareContract(a, b Contract, field string) int {
	switch field {
	case "fte":
		switch {
		case a.FTE < b.FTE:
			return -1
		case a.FTE > b.FTE:
			return 1
		}
	case "sequence":
		return a.Sequence - b.Sequence
	case "start":
		return a.Start.Compare(b.Start)
	case "end":
		// open-ended counts as the far future
		ae, be := a.End, b.End
		if ae.IsZero() && be.IsZero() {
			return 0
		}
		if ae.IsZero() {
			return 1
		}
		if be.IsZero() {
			return -1
		}
		return ae.Compare(be)
	}
	return 0
}

// RequiredField is a person field that must be set, with fallbacks tried in
// order (e.g. email falls back to privateEmail).
type RequiredField struct {
	Field     string   `yaml:"field"`
	Fallbacks []string `yaml:"fallbacks"`
}

// ApplyRequired fills required fields from their fallbacks and returns the
// names of the fields still empty. Contract-level "department" requires each
// contract to carry a department.
func ApplyRequired(p *Person, req []RequiredField) []string {
	var missing []string
	for _, r := range req {
		if strings.EqualFold(r.Field, "department") || strings.EqualFold(r.Field, "orgunit") {
			for _, c := range p.Contracts {
				if c.Department == "" {
					missing = append(missing, "department(contract="+c.ID+")")
					break
				}
			}
			continue
		}
		if p.Field(r.Field) != "" {
			continue
		}
		filled := false
		for _, fb := range r.Fallbacks {
			if v := p.Field(fb); v != "" {
				p.setField(r.Field, v)
				filled = true
				break
			}
		}
		if !filled {
			missing = append(missing, r.Field)
		}
	}
	return missing
}

// Shift is one roster shift from a staffing platform.
type Shift struct {
	ID         string
	Start, End time.Time
	Function   string
	Department string
	Location   string
	CostCentre string
}

// ShiftWindow configures how shifts become contracts (Elanza-like):
// shifts starting within FutureDays ahead and DetailDays back become one
// contract each; older shifts, up to HistoricalDays back, are folded into a
// single aggregated "history" contract.
type ShiftWindow struct {
	HistoricalDays int `yaml:"historicalDays"`
	FutureDays     int `yaml:"futureDays"`
	DetailDays     int `yaml:"detailDays"`
}

// ShiftContracts turns shifts into contracts for the given source at now.
func ShiftContracts(source string, shifts []Shift, now time.Time, w ShiftWindow) []Contract {
	detailFrom := now.AddDate(0, 0, -w.DetailDays)
	histFrom := now.AddDate(0, 0, -w.HistoricalDays)
	futureTo := now.AddDate(0, 0, w.FutureDays)
	var out []Contract
	var hist *Contract
	sorted := append([]Shift(nil), shifts...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Start.Before(sorted[j].Start) })
	for _, s := range sorted {
		if s.Start.After(futureTo) || s.End.Before(histFrom) {
			continue
		}
		if s.End.Before(detailFrom) {
			if hist == nil {
				hist = &Contract{ID: source + ":history", Start: s.Start, End: s.End, Function: s.Function,
					Department: s.Department, Location: s.Location, CostCentre: s.CostCentre, Source: source, Shift: true}
			}
			if s.End.After(hist.End) {
				hist.End = s.End
				hist.Function, hist.Department, hist.Location, hist.CostCentre = s.Function, s.Department, s.Location, s.CostCentre
			}
			continue
		}
		out = append(out, Contract{ID: source + ":shift:" + s.ID, Start: s.Start, End: s.End, Function: s.Function,
			Department: s.Department, Location: s.Location, CostCentre: s.CostCentre, Source: source, Shift: true})
	}
	if hist != nil {
		out = append([]Contract{*hist}, out...)
	}
	return out
}
