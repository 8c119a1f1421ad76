package iam

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// OriginKind says why an action is planned.
type OriginKind string

// Origin kinds.
const (
	OriginRule           OriginKind = "rule"           // a business rule grants it
	OriginPersonChange   OriginKind = "person-change"  // an event changed the person
	OriginManualGrant    OriginKind = "manual-grant"   // a manual grant with reason and end date
	OriginRetry          OriginKind = "retry"          // an earlier attempt failed
	OriginReconciliation OriginKind = "reconciliation" // the periodic full run found drift
	OriginRemovedRule    OriginKind = "removed-from-rule"
	OriginDeviationFix   OriginKind = "deviation-fix"
	OriginAttestation    OriginKind = "attestation"
)

// Origin records where a desired entitlement or a planned action comes from.
type Origin struct {
	Kind   OriginKind `json:"kind"`
	Detail string     `json:"detail,omitempty"` // rule name, grant ID, event ID
}

// String renders the origin as kind or kind:detail.
func (o Origin) String() string {
	if o.Detail == "" {
		return string(o.Kind)
	}
	return string(o.Kind) + ":" + o.Detail
}

// Condition matches when the field has one of the values (values are OR-ed,
// compared case-insensitively). Contract fields: function, department,
// location, costcentre, source, shift ("true"/"false"). Person fields:
// rolecode and every field Person.Field knows.
type Condition struct {
	Field  string   `yaml:"field" json:"field"`
	Values []string `yaml:"values" json:"values"`
}

// Entitlement is an account on a target, optionally with one permission.
type Entitlement struct {
	Target     string `yaml:"target" json:"target"`
	Permission string `yaml:"permission,omitempty" json:"permission,omitempty"` // "" = account only
}

// ParseEntitlement parses "target" or "target:permission".
func ParseEntitlement(s string) (Entitlement, error) {
	t, p, _ := strings.Cut(s, ":")
	if t == "" || strings.ContainsAny(t, " \t") {
		return Entitlement{}, fmt.Errorf("%w: entitlement must be target or target:permission (value=%q)", ErrInvalid, s)
	}
	return Entitlement{Target: t, Permission: p}, nil
}

// String renders the entitlement as target or target:permission.
func (e Entitlement) String() string {
	if e.Permission == "" {
		return e.Target
	}
	return e.Target + ":" + e.Permission
}

// Rule grants entitlements to persons with a contract matching every
// condition (AND) within the timeframe: from BeforeStartDays before the
// contract's start to AfterEndDays after its end.
type Rule struct {
	Name            string        `yaml:"name" json:"name"`
	Conditions      []Condition   `yaml:"conditions" json:"conditions"`
	Entitlements    []Entitlement `yaml:"entitlements" json:"entitlements"`
	BeforeStartDays int           `yaml:"beforeStartDays" json:"beforeStartDays"`
	AfterEndDays    int           `yaml:"afterEndDays" json:"afterEndDays"`
	// ActiveShiftOnly restricts the rule to shift contracts running now
	// (roster-based access: no shift, no access).
	ActiveShiftOnly bool `yaml:"activeShiftOnly" json:"activeShiftOnly"`
}

// Validate checks a rule.
func (r *Rule) Validate() error {
	if r.Name == "" {
		return fmt.Errorf("%w: rule without name", ErrInvalid)
	}
	if len(r.Entitlements) == 0 {
		return fmt.Errorf("%w: rule grants nothing (rule=%s)", ErrInvalid, r.Name)
	}
	if r.BeforeStartDays < 0 || r.AfterEndDays < 0 {
		return fmt.Errorf("%w: negative timeframe (rule=%s)", ErrInvalid, r.Name)
	}
	for _, c := range r.Conditions {
		if c.Field == "" || len(c.Values) == 0 {
			return fmt.Errorf("%w: condition needs a field and values (rule=%s)", ErrInvalid, r.Name)
		}
	}
	for _, e := range r.Entitlements {
		if e.Target == "" {
			return fmt.Errorf("%w: entitlement without target (rule=%s)", ErrInvalid, r.Name)
		}
	}
	return nil
}

// field kinds of a compiled condition
const (
	fkPerson = iota
	fkRoleCode
	fkFunction
	fkDepartment
	fkLocation
	fkCostCentre
	fkSource
	fkShift
)

type compiledCond struct {
	kind   int
	field  string // person field name (fkPerson)
	values []string
}

type compiledRule struct {
	r     *Rule
	conds []compiledCond
}

func compileRules(rules []Rule) []compiledRule {
	out := make([]compiledRule, len(rules))
	for i := range rules {
		cr := compiledRule{r: &rules[i]}
		for _, cd := range rules[i].Conditions {
			cc := compiledCond{values: cd.Values}
			switch f := strings.ToLower(cd.Field); f {
			case "rolecode":
				cc.kind = fkRoleCode
			case "function":
				cc.kind = fkFunction
			case "department":
				cc.kind = fkDepartment
			case "location":
				cc.kind = fkLocation
			case "costcentre", "costcenter":
				cc.kind = fkCostCentre
			case "source":
				cc.kind = fkSource
			case "shift":
				cc.kind = fkShift
			default:
				cc.kind, cc.field = fkPerson, f
			}
			cr.conds = append(cr.conds, cc)
		}
		out[i] = cr
	}
	return out
}

func anyFold(val string, values []string) bool {
	for _, v := range values {
		if strings.EqualFold(val, v) {
			return true
		}
	}
	return false
}

func (cc *compiledCond) matches(p *Person, c *Contract) bool {
	switch cc.kind {
	case fkRoleCode:
		for _, rc := range p.RoleCodes {
			if anyFold(rc, cc.values) {
				return true
			}
		}
		return false
	case fkFunction:
		return anyFold(c.Function, cc.values)
	case fkDepartment:
		return anyFold(c.Department, cc.values)
	case fkLocation:
		return anyFold(c.Location, cc.values)
	case fkCostCentre:
		return anyFold(c.CostCentre, cc.values)
	case fkSource:
		return anyFold(c.Source, cc.values)
	case fkShift:
		if c.Shift {
			return anyFold("true", cc.values)
		}
		return anyFold("false", cc.values)
	}
	return anyFold(p.Field(cc.field), cc.values)
}

// matchConds reports whether every condition holds through contract c.
func (cr *compiledRule) matchConds(p *Person, c *Contract, now time.Time) bool {
	if cr.r.ActiveShiftOnly && (!c.Shift || !c.ActiveAt(now)) {
		return false
	}
	for i := range cr.conds {
		if !cr.conds[i].matches(p, c) {
			return false
		}
	}
	return true
}

// MatchContract returns whether the rule applies through contract c at now,
// and whether access through it should be enabled (the contract runs, or
// starts within enableBeforeDays).
func (r *Rule) MatchContract(p *Person, c *Contract, now time.Time, enableBeforeDays int) (exists, enabled bool) {
	cr := compileRules([]Rule{*r})[0]
	if !cr.matchConds(p, c, now) || !c.InWindow(now, r.BeforeStartDays, r.AfterEndDays) {
		return false, false
	}
	return true, c.InWindow(now, min(enableBeforeDays, r.BeforeStartDays), r.AfterEndDays)
}

// Grant is a manual entitlement: it needs a reason and an end date.
type Grant struct {
	ID          string      `json:"id"`
	PersonID    string      `json:"personId"`
	Entitlement Entitlement `json:"entitlement"`
	Reason      string      `json:"reason"`
	Until       time.Time   `json:"until"`
	By          string      `json:"by"`
	CreatedAt   time.Time   `json:"createdAt"`
	RevokedAt   time.Time   `json:"revokedAt,omitzero"`
	RevokedBy   string      `json:"revokedBy,omitempty"`
}

// Validate checks that a grant carries a person, an entitlement, a reason
// and an end date in the future.
func (g *Grant) Validate(now time.Time) error {
	switch {
	case g.PersonID == "":
		return fmt.Errorf("%w: grant needs a person", ErrInvalid)
	case g.Entitlement.Target == "":
		return fmt.Errorf("%w: grant needs an entitlement", ErrInvalid)
	case strings.TrimSpace(g.Reason) == "":
		return fmt.Errorf("%w: grant needs a reason (person=%s)", ErrInvalid, g.PersonID)
	case g.Until.IsZero():
		return fmt.Errorf("%w: grant needs an end date (person=%s)", ErrInvalid, g.PersonID)
	case !g.Until.After(now):
		return fmt.Errorf("%w: grant end date lies in the past (person=%s until=%s)", ErrInvalid, g.PersonID, g.Until.Format(time.DateOnly))
	case g.By == "":
		return fmt.Errorf("%w: grant needs the granting administrator", ErrInvalid)
	}
	return nil
}

// ActiveAt reports whether the grant counts at t.
func (g *Grant) ActiveAt(t time.Time) bool {
	return g.RevokedAt.IsZero() && t.Before(g.Until)
}

// Exclusion freezes a person: no action is planned for them until Until
// (zero = indefinitely). Entitlements are kept and caught up afterwards.
type Exclusion struct {
	PersonID string    `json:"personId"`
	Reason   string    `json:"reason"`
	Until    time.Time `json:"until,omitzero"`
	By       string    `json:"by"`
}

// ActiveAt reports whether the exclusion holds at t.
func (x *Exclusion) ActiveAt(t time.Time) bool { return x.Until.IsZero() || t.Before(x.Until) }

// DesiredAccount is the SOLL of one person on one target.
type DesiredAccount struct {
	Target      string
	Enabled     bool
	Origin      Origin            // the first rule or grant that asks for the account
	Contract    Contract          // the contract that matched (used for attributes)
	Permissions map[string]Origin // permission -> why
}

// TargetPolicy is what SOLL computation needs to know about a target.
type TargetPolicy struct {
	EnableBeforeDays int
	RequiredFields   []string // person fields the target needs (e.g. uzi for the mandate authority)
}

// Desired computes a person's SOLL per target from the rules and active
// manual grants. A removed or blocked person has no SOLL. Manual grants only
// count while the person has SOLL on some target or a running contract, so a
// grant never outlives employment.
func Desired(p *Person, rules []Rule, grants []Grant, policies map[string]TargetPolicy, now time.Time, order []SortKey) map[string]*DesiredAccount {
	return desired(p, compileRules(rules), grants, policies, now, order)
}

func desired(p *Person, rules []compiledRule, grants []Grant, policies map[string]TargetPolicy, now time.Time, order []SortKey) map[string]*DesiredAccount {
	out := map[string]*DesiredAccount{}
	for ri := range rules {
		cr := &rules[ri]
		r := cr.r
		for ci := range p.Contracts {
			c := &p.Contracts[ci]
			if !c.InWindow(now, r.BeforeStartDays, r.AfterEndDays) || !cr.matchConds(p, c, now) {
				continue
			}
			for _, e := range r.Entitlements {
				pol := policies[e.Target]
				if len(pol.RequiredFields) > 0 && !hasFields(p, pol.RequiredFields) {
					continue
				}
				enabled := c.InWindow(now, min(pol.EnableBeforeDays, r.BeforeStartDays), r.AfterEndDays)
				da := out[e.Target]
				if da == nil {
					da = &DesiredAccount{Target: e.Target, Origin: Origin{OriginRule, r.Name}, Contract: *c, Permissions: map[string]Origin{}}
					out[e.Target] = da
				}
				if enabled && !da.Enabled {
					da.Enabled = true
					da.Contract = *c // the contract that matched the rule selects the account data
				}
				if e.Permission != "" && enabled {
					if _, ok := da.Permissions[e.Permission]; !ok {
						da.Permissions[e.Permission] = Origin{OriginRule, r.Name}
					}
				}
			}
		}
	}
	if len(grants) == 0 {
		return out
	}
	employed := p.StateAt(now) != StateLeaver || len(out) > 0
	for gi := range grants {
		g := &grants[gi]
		if g.PersonID != p.ID || !g.ActiveAt(now) || !employed {
			continue
		}
		if !hasFields(p, policies[g.Entitlement.Target].RequiredFields) {
			continue
		}
		da := out[g.Entitlement.Target]
		if da == nil {
			pc, _ := p.PrimaryContract(now, order)
			da = &DesiredAccount{Target: g.Entitlement.Target, Origin: Origin{OriginManualGrant, g.ID}, Contract: pc, Permissions: map[string]Origin{}}
			out[g.Entitlement.Target] = da
		}
		da.Enabled = true
		if g.Entitlement.Permission != "" {
			if _, ok := da.Permissions[g.Entitlement.Permission]; !ok {
				da.Permissions[g.Entitlement.Permission] = Origin{OriginManualGrant, g.ID}
			}
		}
	}
	return out
}

func hasFields(p *Person, fields []string) bool {
	return !slices.ContainsFunc(fields, func(f string) bool { return p.Field(f) == "" })
}
