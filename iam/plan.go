package iam

import (
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// ActionType is the kind of a planned action.
type ActionType string

// Action types, in the order they run for one account.
const (
	ActCreate  ActionType = "create"
	ActUpdate  ActionType = "update"
	ActEnable  ActionType = "enable"
	ActGrant   ActionType = "grant"
	ActRevoke  ActionType = "revoke"
	ActDisable ActionType = "disable"
	ActDelete  ActionType = "delete"
)

// ActionTypes lists every action type in execution order.
var ActionTypes = []ActionType{ActCreate, ActUpdate, ActEnable, ActGrant, ActRevoke, ActDisable, ActDelete}

func actionRank(t ActionType) int { return slices.Index(ActionTypes, t) }

// Action is one planned change on one target.
type Action struct {
	Type       ActionType        `json:"type"`
	Target     string            `json:"target"`
	PersonID   string            `json:"personId,omitempty"`
	Ref        string            `json:"ref,omitempty"`
	Key        string            `json:"key,omitempty"`
	Permission string            `json:"permission,omitempty"`
	Enabled    bool              `json:"enabled,omitempty"` // initial state on create
	Attributes map[string]string `json:"attributes,omitempty"`
	Origin     Origin            `json:"origin"`
	Reason     string            `json:"reason,omitempty"`
	Person     *Person           `json:"-"`
}

// ID identifies the action across runs (for retries and approvals).
func (a *Action) ID() string {
	return string(a.Type) + "|" + a.Target + "|" + a.PersonID + "|" + a.Ref + "|" + a.Permission
}

// DeviationType classifies an IST-SOLL difference.
type DeviationType string

// Deviation types of the report.
const (
	DevUnmanagedAccount  DeviationType = "unmanaged-account"
	DevMissingAccount    DeviationType = "missing-account"
	DevExcessAccess      DeviationType = "excess-access"
	DevMissingAccess     DeviationType = "missing-access"
	DevMultipleAccounts  DeviationType = "person-multiple-accounts"
	DevMultiplePersons   DeviationType = "account-multiple-persons"
	DevAttestationMissed DeviationType = "attestation-unanswered"
	DevAttestationRevoke DeviationType = "attestation-revoked"
)

// Deviation is one IST-SOLL difference with the action that would fix it.
type Deviation struct {
	Key        string        `json:"key"`
	Type       DeviationType `json:"type"`
	Target     string        `json:"target,omitempty"`
	PersonID   string        `json:"personId,omitempty"`
	Ref        string        `json:"ref,omitempty"`
	Permission string        `json:"permission,omitempty"`
	Detail     string        `json:"detail,omitempty"`
	Fix        *Action       `json:"fix,omitempty"`
	Auto       bool          `json:"auto"` // the fix is in the plan without a resolution
	Resolution *Resolution   `json:"resolution,omitempty"`
}

// ResolutionAction is what an administrator decided about a deviation.
type ResolutionAction string

// Resolution actions.
const (
	ResolveFix     ResolutionAction = "fix"
	ResolveAccept  ResolutionAction = "accept"
	ResolveExclude ResolutionAction = "exclude" // until a date
)

// Resolution records who resolved a deviation, how and until when.
type Resolution struct {
	Key    string           `json:"key"`
	Action ResolutionAction `json:"action"`
	Until  time.Time        `json:"until,omitzero"`
	By     string           `json:"by"`
	At     time.Time        `json:"at"`
	Note   string           `json:"note,omitempty"`
}

// Suppresses reports whether the resolution keeps the deviation (and its
// automatic fix) out of the plan at t.
func (r *Resolution) Suppresses(t time.Time) bool {
	switch r.Action {
	case ResolveAccept:
		return true
	case ResolveExclude:
		return t.Before(r.Until)
	}
	return false
}

// TargetConfig is what the planner needs to know about one target.
type TargetConfig struct {
	Name             string
	CorrelationField string // person field matched with Account.Key; default employeeNumber
	EnableBeforeDays int
	DeleteAfterDays  int // grace period after disabling; 0 = never delete
	RequiredFields   []string
	DisableUnmanaged bool // fix unmanaged accounts automatically
	Capabilities     Capabilities
}

func (tc *TargetConfig) corrField() string {
	if tc.CorrelationField == "" {
		return "employeeNumber"
	}
	return tc.CorrelationField
}

// PlanInput is everything the planner looks at. It is read, never modified.
type PlanInput struct {
	Now        time.Time
	Persons    []Person
	Rules      []Rule
	Grants     []Grant
	Exclusions []Exclusion
	Blocked    map[string]bool // persons blocked by missing required fields
	Targets    []TargetConfig
	IST        map[string][]Account // per target
	// DisabledSince holds when the engine disabled an account ("target|ref").
	DisabledSince map[string]time.Time
	Resolutions   map[string]Resolution
	Failed        map[string]bool // action IDs that failed before (origin retry)
	Origin        Origin          // origin of lifecycle actions (reconciliation, person-change)
	// Partial limits the plan to the persons given (event-driven run): IST
	// accounts of other persons are not reported as unmanaged.
	Partial   bool
	SortOrder []SortKey
}

// Plan is the outcome of comparing SOLL and IST.
type Plan struct {
	Actions    []Action    `json:"actions"`
	Deviations []Deviation `json:"deviations"`
}

// Counts returns the number of actions per type.
func (p *Plan) Counts() map[ActionType]int {
	m := map[ActionType]int{}
	for i := range p.Actions {
		m[p.Actions[i].Type]++
	}
	return m
}

// targetState is the per-target index the planner builds once.
type targetState struct {
	tc           *TargetConfig
	corr         string
	byKey        map[string][]*Account
	personsByKey map[string]int
	seen         map[string]bool
	managed      map[string]bool
}

// ComputePlan diffs SOLL against IST. It is pure and deterministic: actions
// are ordered by target, person and execution order. Each person's SOLL is
// computed once and dropped after use, so memory stays proportional to the
// input plus the plan.
func ComputePlan(in *PlanInput) *Plan {
	pl := &Plan{}
	rules := compileRules(in.Rules)
	policies := make(map[string]TargetPolicy, len(in.Targets))
	ts := make([]*targetState, len(in.Targets))
	for i := range in.Targets {
		t := &in.Targets[i]
		policies[t.Name] = TargetPolicy{EnableBeforeDays: t.EnableBeforeDays, RequiredFields: t.RequiredFields}
		st := &targetState{tc: t, corr: t.corrField(), managed: map[string]bool{}}
		ist := in.IST[t.Name]
		st.byKey = make(map[string][]*Account, len(ist))
		for j := range ist {
			if ist[j].Key != "" {
				st.byKey[ist[j].Key] = append(st.byKey[ist[j].Key], &ist[j])
			}
		}
		st.personsByKey = make(map[string]int, len(in.Persons))
		for j := range in.Persons {
			if k := in.Persons[j].Field(st.corr); k != "" {
				st.personsByKey[k]++
			}
		}
		st.seen = make(map[string]bool, len(ist))
		ts[i] = st
	}
	byName := map[string]*targetState{}
	for _, st := range ts {
		byName[st.tc.Name] = st
	}
	for _, r := range in.Rules {
		for _, e := range r.Entitlements {
			if st := byName[e.Target]; st != nil && e.Permission != "" {
				st.managed[e.Permission] = true
			}
		}
	}
	grantsBy := map[string][]Grant{}
	for _, g := range in.Grants {
		if st := byName[g.Entitlement.Target]; st != nil && g.Entitlement.Permission != "" {
			st.managed[g.Entitlement.Permission] = true
		}
		grantsBy[g.PersonID] = append(grantsBy[g.PersonID], g)
	}
	excluded := map[string]bool{}
	for i := range in.Exclusions {
		if in.Exclusions[i].ActiveAt(in.Now) {
			excluded[in.Exclusions[i].PersonID] = true
		}
	}
	add := func(a Action) {
		if len(in.Failed) > 0 && in.Failed[a.ID()] {
			a.Origin = Origin{Kind: OriginRetry, Detail: a.Origin.String()}
		}
		pl.Actions = append(pl.Actions, a)
	}
	dev := func(tc *TargetConfig, d Deviation, autoFix bool) {
		d.Target = tc.Name
		d.Key = string(d.Type) + "|" + tc.Name + "|" + d.PersonID + "|" + d.Ref + "|" + d.Permission
		d.Auto = autoFix && d.Fix != nil
		if r, ok := in.Resolutions[d.Key]; ok {
			rr := r
			d.Resolution = &rr
			if r.Suppresses(in.Now) {
				return // accepted or excluded: no report line, no fix
			}
			if r.Action == ResolveFix && d.Fix != nil && !d.Auto {
				f := *d.Fix
				f.Origin = Origin{Kind: OriginDeviationFix, Detail: r.By}
				add(f)
			}
		}
		if d.Auto {
			add(*d.Fix)
		}
		pl.Deviations = append(pl.Deviations, d)
	}
	for i := range in.Persons {
		p := &in.Persons[i]
		var soll map[string]*DesiredAccount
		skip := excluded[p.ID] || in.Blocked[p.ID]
		if !skip && !p.Removed {
			soll = desired(p, rules, grantsBy[p.ID], policies, in.Now, in.SortOrder)
		}
		for _, st := range ts {
			key := p.Field(st.corr)
			var accts []*Account
			if key != "" {
				accts = st.byKey[key]
			}
			for _, a := range accts {
				st.seen[a.Ref] = true
			}
			if skip {
				continue
			}
			planPersonTarget(in, st, p, key, accts, soll[st.tc.Name], add, dev)
		}
	}
	if !in.Partial {
		for _, st := range ts {
			ist := in.IST[st.tc.Name]
			for j := range ist {
				a := &ist[j]
				if st.seen[a.Ref] {
					continue
				}
				var fix *Action
				if a.Enabled && !st.tc.Capabilities.NoDisable {
					fix = &Action{Type: ActDisable, Target: st.tc.Name, Ref: a.Ref, Key: a.Key, Origin: Origin{Kind: OriginReconciliation, Detail: "unmanaged"}}
				}
				dev(st.tc, Deviation{Type: DevUnmanagedAccount, Ref: a.Ref, Detail: "no person correlates (" + st.corr + "=" + a.Key + ")", Fix: fix}, st.tc.DisableUnmanaged)
			}
		}
	}
	sort.SliceStable(pl.Actions, func(i, j int) bool {
		a, b := &pl.Actions[i], &pl.Actions[j]
		if a.Target != b.Target {
			return a.Target < b.Target
		}
		if a.PersonID != b.PersonID {
			return a.PersonID < b.PersonID
		}
		return actionRank(a.Type) < actionRank(b.Type)
	})
	return pl
}

func planPersonTarget(in *PlanInput, st *targetState, p *Person, key string, accts []*Account, da *DesiredAccount,
	add func(Action), dev func(*TargetConfig, Deviation, bool)) {
	tc := st.tc
	if da == nil && len(accts) == 0 {
		return
	}
	if key == "" {
		// Without a correlation value an account could be neither found nor
		// created safely: report it, never create a stray account.
		dev(tc, Deviation{Type: DevMissingAccount, PersonID: p.ID, Detail: "no correlation value (" + st.corr + " is empty)"}, false)
		return
	}
	if st.personsByKey[key] > 1 {
		for _, a := range accts {
			dev(tc, Deviation{Type: DevMultiplePersons, PersonID: p.ID, Ref: a.Ref, Detail: "correlation value shared by several persons (" + st.corr + "=" + key + ")"}, false)
		}
		return
	}
	if len(accts) > 1 {
		refs := make([]string, len(accts))
		for j, a := range accts {
			refs[j] = a.Ref
		}
		dev(tc, Deviation{Type: DevMultipleAccounts, PersonID: p.ID, Detail: "accounts " + strings.Join(refs, ", ")}, false)
		return
	}
	origin := in.Origin
	if da != nil {
		if len(accts) == 0 {
			dev(tc, Deviation{Type: DevMissingAccount, PersonID: p.ID, Fix: &Action{Type: ActCreate, Target: tc.Name, PersonID: p.ID, Key: key,
				Enabled: da.Enabled, Attributes: AttributesFor(p, da.Contract), Origin: da.Origin, Person: p}}, true)
			for _, perm := range sortedKeys(da.Permissions) {
				add(Action{Type: ActGrant, Target: tc.Name, PersonID: p.ID, Key: key, Permission: perm, Origin: da.Permissions[perm], Person: p})
			}
			return
		}
		a := accts[0]
		if attrsDiffer(p, &da.Contract, a.Attributes) {
			add(Action{Type: ActUpdate, Target: tc.Name, PersonID: p.ID, Ref: a.Ref, Key: key, Attributes: AttributesFor(p, da.Contract), Origin: orDefault(origin, da.Origin), Person: p})
		}
		if da.Enabled && !a.Enabled {
			dev(tc, Deviation{Type: DevMissingAccess, PersonID: p.ID, Ref: a.Ref, Detail: "account disabled",
				Fix: &Action{Type: ActEnable, Target: tc.Name, PersonID: p.ID, Ref: a.Ref, Key: key, Origin: da.Origin, Person: p}}, true)
		}
		if !da.Enabled && a.Enabled && !tc.Capabilities.NoDisable {
			dev(tc, Deviation{Type: DevExcessAccess, PersonID: p.ID, Ref: a.Ref, Detail: "account enabled before its timeframe",
				Fix: &Action{Type: ActDisable, Target: tc.Name, PersonID: p.ID, Ref: a.Ref, Key: key, Origin: orDefault(origin, da.Origin), Person: p}}, true)
		}
		if len(da.Permissions) > 0 {
			for _, perm := range sortedKeys(da.Permissions) {
				if !slices.Contains(a.Permissions, perm) {
					dev(tc, Deviation{Type: DevMissingAccess, PersonID: p.ID, Ref: a.Ref, Permission: perm,
						Fix: &Action{Type: ActGrant, Target: tc.Name, PersonID: p.ID, Ref: a.Ref, Key: key, Permission: perm, Origin: da.Permissions[perm], Person: p}}, true)
				}
			}
		}
		for _, perm := range a.Permissions {
			if _, want := da.Permissions[perm]; !want && st.managed[perm] {
				dev(tc, Deviation{Type: DevExcessAccess, PersonID: p.ID, Ref: a.Ref, Permission: perm,
					Fix: &Action{Type: ActRevoke, Target: tc.Name, PersonID: p.ID, Ref: a.Ref, Key: key, Permission: perm, Origin: Origin{OriginRemovedRule, ""}, Person: p}}, true)
			}
		}
		return
	}
	// No SOLL: disable first, revoke managed permissions, delete after the grace period.
	a := accts[0]
	if origin.Kind == "" {
		origin = Origin{Kind: OriginRemovedRule}
	}
	if a.Enabled && !tc.Capabilities.NoDisable {
		dev(tc, Deviation{Type: DevExcessAccess, PersonID: p.ID, Ref: a.Ref, Detail: "no rule or grant asks for this account (" + string(p.StateAt(in.Now)) + ")",
			Fix: &Action{Type: ActDisable, Target: tc.Name, PersonID: p.ID, Ref: a.Ref, Key: key, Origin: origin, Person: p}}, true)
	}
	for _, perm := range a.Permissions {
		if st.managed[perm] {
			dev(tc, Deviation{Type: DevExcessAccess, PersonID: p.ID, Ref: a.Ref, Permission: perm,
				Fix: &Action{Type: ActRevoke, Target: tc.Name, PersonID: p.ID, Ref: a.Ref, Key: key, Permission: perm, Origin: origin, Person: p}}, true)
		}
	}
	if !a.Enabled && tc.DeleteAfterDays > 0 && !tc.Capabilities.NoDelete {
		since, ok := in.DisabledSince[tc.Name+"|"+a.Ref]
		if ok && !in.Now.Before(since.AddDate(0, 0, tc.DeleteAfterDays)) {
			add(Action{Type: ActDelete, Target: tc.Name, PersonID: p.ID, Ref: a.Ref, Key: key, Origin: origin,
				Reason: "disabled since " + since.Format(time.DateOnly), Person: p})
		}
	}
}

func orDefault(o, def Origin) Origin {
	if o.Kind == "" {
		return def
	}
	return o
}

// attrsDiffer compares the attributes the connector reported with what the
// person and contract ask for, without building the desired map.
func attrsDiffer(p *Person, c *Contract, have map[string]string) bool {
	for k, hv := range have {
		if wv, ok := attributeOf(p, c, k); ok && wv != hv {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// ThresholdResult splits a plan into the actions allowed and those blocked
// by output thresholds: only the action type that exceeds its limit is
// blocked, the other types run.
func ApplyThresholds(actions []Action, limits map[ActionType]int, allow map[ActionType]bool) (run, blocked []Action, exceeded []ActionType) {
	counts := map[ActionType]int{}
	for i := range actions {
		counts[actions[i].Type]++
	}
	block := map[ActionType]bool{}
	for _, t := range ActionTypes {
		if lim, ok := limits[t]; ok && counts[t] > lim && !allow[t] {
			block[t] = true
			exceeded = append(exceeded, t)
		}
	}
	for _, a := range actions {
		if block[a.Type] {
			blocked = append(blocked, a)
		} else {
			run = append(run, a)
		}
	}
	return run, blocked, exceeded
}
