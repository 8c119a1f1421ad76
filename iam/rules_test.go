package iam_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/iam"
)

func day(n int) time.Time { return t0.AddDate(0, 0, n) }

func TestRuleMatching(t *testing.T) {
	rule := iam.Rule{Name: "r", Conditions: []iam.Condition{
		{Field: "function", Values: []string{"Verpleegkundige", "Arts"}},
		{Field: "department", Values: []string{"Cardiologie"}},
		{Field: "location", Values: []string{"Utrecht"}},
	}, Entitlements: []iam.Entitlement{{Target: "ad", Permission: "g"}}, BeforeStartDays: 5, AfterEndDays: 2}
	tests := []struct {
		name            string
		c               iam.Contract
		exists, enabled bool
	}{
		{"all conditions, running", iam.Contract{Start: day(-10), Function: "arts", Department: "Cardiologie", Location: "Utrecht"}, true, true},
		{"OR within a condition", iam.Contract{Start: day(-10), Function: "Verpleegkundige", Department: "Cardiologie", Location: "Utrecht"}, true, true},
		{"AND across conditions", iam.Contract{Start: day(-10), Function: "Arts", Department: "Longziekten", Location: "Utrecht"}, false, false},
		{"starts in 3 days: in timeframe, not yet enabled", iam.Contract{Start: day(3), Function: "Arts", Department: "Cardiologie", Location: "Utrecht"}, true, false},
		{"starts in 6 days: outside timeframe", iam.Contract{Start: day(6), Function: "Arts", Department: "Cardiologie", Location: "Utrecht"}, false, false},
		{"ended 1 day ago: kept 2 days", iam.Contract{Start: day(-100), End: day(-1), Function: "Arts", Department: "Cardiologie", Location: "Utrecht"}, true, true},
		{"ended 3 days ago: gone", iam.Contract{Start: day(-100), End: day(-3), Function: "Arts", Department: "Cardiologie", Location: "Utrecht"}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &iam.Person{ID: "p"}
			ex, en := rule.MatchContract(p, &tc.c, t0, 0)
			assert.Equal(t, tc.exists, ex, "exists")
			assert.Equal(t, tc.enabled, en, "enabled")
		})
	}
}

func TestActiveShiftOnlyRule(t *testing.T) {
	r := iam.Rule{Name: "roster", ActiveShiftOnly: true, Entitlements: []iam.Entitlement{{Target: "hix", Permission: "SEH"}}}
	tests := []struct {
		name string
		c    iam.Contract
		want bool
	}{
		{"shift running now", iam.Contract{Shift: true, Start: t0.Add(-time.Hour), End: t0.Add(7 * time.Hour)}, true},
		{"shift tomorrow", iam.Contract{Shift: true, Start: day(1), End: day(1).Add(8 * time.Hour)}, false},
		{"employment, not a shift", iam.Contract{Start: day(-10)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ex, _ := r.MatchContract(&iam.Person{}, &tc.c, t0, 0)
			assert.Equal(t, tc.want, ex)
		})
	}
}

func TestRequiredFields(t *testing.T) {
	req := []iam.RequiredField{{Field: "email", Fallbacks: []string{"privateEmail"}}, {Field: "employeeNumber"}, {Field: "department"}}
	tests := []struct {
		name      string
		p         iam.Person
		missing   []string
		wantEmail string
	}{
		{"complete", iam.Person{Email: "a@z", EmployeeNumber: "1", Contracts: []iam.Contract{{ID: "c", Department: "X"}}}, nil, "a@z"},
		{"private e-mail fallback", iam.Person{PrivateEmail: "a@home", EmployeeNumber: "1"}, nil, "a@home"},
		{"no e-mail at all", iam.Person{EmployeeNumber: "1"}, []string{"email"}, ""},
		{"no employee number, no department", iam.Person{Email: "a@z", Contracts: []iam.Contract{{ID: "c"}}}, []string{"employeeNumber", "department(contract=c)"}, "a@z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.p
			assert.Equal(t, tc.missing, iam.ApplyRequired(&p, req))
			assert.Equal(t, tc.wantEmail, p.Email)
		})
	}
}

func TestShiftWindow(t *testing.T) {
	w := iam.ShiftWindow{HistoricalDays: 60, FutureDays: 14, DetailDays: 7}
	var shifts []iam.Shift
	for d := -70; d <= 20; d++ { // one shift a day
		s := day(d).Add(-4 * time.Hour)
		shifts = append(shifts, iam.Shift{ID: s.Format("0102"), Start: s, End: s.Add(8 * time.Hour), Function: "Flex", Department: "SEH"})
	}
	cs := iam.ShiftContracts("elanza", shifts, t0, w)
	// Elanza's example: 14 future + 7 recent individual shifts (+ today) + 1 history aggregate
	var hist, indiv int
	for _, c := range cs {
		if c.ID == "elanza:history" {
			hist++
			assert.True(t, c.End.Before(day(-7)), "history ends before the detail window")
			assert.False(t, c.Start.Before(day(-61)), "history starts inside the historical window")
		} else {
			indiv++
			assert.True(t, c.Shift)
		}
	}
	assert.Equal(t, 1, hist)
	assert.Equal(t, 22, indiv, "7 days back, today, 14 ahead")

	tests := []struct {
		name   string
		shifts []iam.Shift
		want   iam.State
	}{
		{"future shift only", []iam.Shift{{ID: "a", Start: day(3), End: day(3).Add(8 * time.Hour)}}, iam.StateJoiner},
		{"running shift", []iam.Shift{{ID: "a", Start: t0.Add(-time.Hour), End: t0.Add(time.Hour)}}, iam.StateActive},
		{"only past shifts: leaver", []iam.Shift{{ID: "a", Start: day(-20), End: day(-20).Add(8 * time.Hour)}}, iam.StateLeaver},
		{"no shifts: leaver", nil, iam.StateLeaver},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := iam.Person{Contracts: iam.ShiftContracts("elanza", tc.shifts, t0, w)}
			assert.Equal(t, tc.want, p.StateAt(t0))
		})
	}
}

func TestPrimaryContract(t *testing.T) {
	p := iam.Person{Contracts: []iam.Contract{
		{ID: "small", Start: day(-100), FTE: 0.2},
		{ID: "big", Start: day(-50), FTE: 0.8},
		{ID: "ended", Start: day(-500), End: day(-10), FTE: 1},
		{ID: "future", Start: day(10), FTE: 1},
	}}
	tests := []struct {
		name  string
		order string
		want  string
	}{
		{"fte desc", "fte desc", "big"},
		{"start asc", "start asc", "small"},
		{"start desc", "start desc", "big"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := iam.ParseSortOrder(tc.order)
			require.NoError(t, err)
			c, ok := p.PrimaryContract(t0, o)
			require.True(t, ok)
			assert.Equal(t, tc.want, c.ID)
		})
	}
	_, err := iam.ParseSortOrder("salary desc")
	assert.ErrorIs(t, err, iam.ErrInvalid)
}

func TestOutputThresholdsBlockOnlyExceedingType(t *testing.T) {
	var acts []iam.Action
	for range 5 {
		acts = append(acts, iam.Action{Type: iam.ActDisable})
	}
	for range 3 {
		acts = append(acts, iam.Action{Type: iam.ActCreate})
	}
	tests := []struct {
		name         string
		limits       map[iam.ActionType]int
		allow        map[iam.ActionType]bool
		run, blocked int
	}{
		{"no limits", nil, nil, 8, 0},
		{"disable over limit", map[iam.ActionType]int{iam.ActDisable: 4, iam.ActCreate: 10}, nil, 3, 5},
		{"at the limit is fine", map[iam.ActionType]int{iam.ActDisable: 5}, nil, 8, 0},
		{"admin allows the type", map[iam.ActionType]int{iam.ActDisable: 4}, map[iam.ActionType]bool{iam.ActDisable: true}, 8, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			run, blocked, _ := iam.ApplyThresholds(acts, tc.limits, tc.allow)
			assert.Len(t, run, tc.run)
			assert.Len(t, blocked, tc.blocked)
		})
	}
}

func TestGrantValidation(t *testing.T) {
	ok := iam.Grant{PersonID: "p", Entitlement: iam.Entitlement{Target: "ad", Permission: "x"}, Reason: "project", Until: day(30), By: "admin"}
	tests := []struct {
		name string
		mut  func(*iam.Grant)
		ok   bool
	}{
		{"valid", func(*iam.Grant) {}, true},
		{"no reason", func(g *iam.Grant) { g.Reason = " " }, false},
		{"no end date", func(g *iam.Grant) { g.Until = time.Time{} }, false},
		{"end in the past", func(g *iam.Grant) { g.Until = day(-1) }, false},
		{"no administrator", func(g *iam.Grant) { g.By = "" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := ok
			tc.mut(&g)
			err := g.Validate(t0)
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, iam.ErrInvalid)
			}
		})
	}
}

func TestPlanDeviationsAndGracePeriod(t *testing.T) {
	rules := []iam.Rule{{Name: "all", Entitlements: []iam.Entitlement{{Target: "ad", Permission: "staff"}}}}
	persons := []iam.Person{
		{ID: "active", EmployeeNumber: "1", Contracts: []iam.Contract{{ID: "c", Start: day(-10)}}},
		{ID: "leaver", EmployeeNumber: "2", Contracts: []iam.Contract{{ID: "c", Start: day(-100), End: day(-40)}}},
		{ID: "twin-a", EmployeeNumber: "3", Contracts: []iam.Contract{{ID: "c", Start: day(-10)}}},
		{ID: "twin-b", EmployeeNumber: "3", Contracts: []iam.Contract{{ID: "c", Start: day(-10)}}},
		{ID: "double", EmployeeNumber: "4", Contracts: []iam.Contract{{ID: "c", Start: day(-10)}}},
		{ID: "frozen", EmployeeNumber: "5"},
		{ID: "no-number", Contracts: []iam.Contract{{ID: "c", Start: day(-10)}}},
	}
	ist := []iam.Account{
		{Ref: "a1", Key: "1", Enabled: true, Permissions: []string{"staff", "unmanaged-group"}},
		{Ref: "a2", Key: "2", Enabled: false, Permissions: nil},
		{Ref: "a3", Key: "3", Enabled: true},
		{Ref: "a4", Key: "4", Enabled: true},
		{Ref: "a4b", Key: "4", Enabled: true},
		{Ref: "a5", Key: "5", Enabled: true},
		{Ref: "orphan", Key: "77", Enabled: true},
	}
	in := &iam.PlanInput{Now: t0, Persons: persons, Rules: rules,
		Targets:       []iam.TargetConfig{{Name: "ad", DeleteAfterDays: 30}},
		IST:           map[string][]iam.Account{"ad": ist},
		Exclusions:    []iam.Exclusion{{PersonID: "frozen", Reason: "CEO", By: "admin"}},
		DisabledSince: map[string]time.Time{"ad|a2": day(-31)},
		Origin:        iam.Origin{Kind: iam.OriginReconciliation}}
	pl := iam.ComputePlan(in)
	got := map[iam.DeviationType][]string{}
	for _, d := range pl.Deviations {
		got[d.Type] = append(got[d.Type], d.PersonID+"/"+d.Ref)
	}
	assert.ElementsMatch(t, []string{"twin-a/a3", "twin-b/a3"}, got[iam.DevMultiplePersons])
	assert.ElementsMatch(t, []string{"double/"}, got[iam.DevMultipleAccounts])
	assert.ElementsMatch(t, []string{"/orphan"}, got[iam.DevUnmanagedAccount])
	assert.ElementsMatch(t, []string{"no-number/"}, got[iam.DevMissingAccount], "no correlation value: reported, never created")
	var acts []string
	for _, a := range pl.Actions {
		acts = append(acts, string(a.Type)+":"+a.PersonID+":"+a.Ref)
	}
	assert.ElementsMatch(t, []string{"delete:leaver:a2"}, acts, "unmanaged group untouched, frozen person untouched, orphan reported only")

	// within the grace period the disabled leaver is kept
	in.DisabledSince = map[string]time.Time{"ad|a2": day(-29)}
	assert.Empty(t, iam.ComputePlan(in).Actions)
	// a target without delete never deletes
	in.DisabledSince = map[string]time.Time{"ad|a2": day(-300)}
	in.Targets[0].Capabilities.NoDelete = true
	assert.Empty(t, iam.ComputePlan(in).Actions)
	// accepted deviation: no fix; a failed action comes back as a retry
	in.Targets[0].Capabilities.NoDelete = false
	in.IST["ad"][0].Permissions = nil
	pl = iam.ComputePlan(in)
	require.Len(t, pl.Actions, 2)
	grant := pl.Actions[0]
	if grant.Type != iam.ActGrant {
		grant = pl.Actions[1]
	}
	in.Failed = map[string]bool{grant.ID(): true}
	for _, a := range iam.ComputePlan(in).Actions {
		if a.Type == iam.ActGrant {
			assert.Equal(t, iam.OriginRetry, a.Origin.Kind)
		}
	}
	in.Resolutions = map[string]iam.Resolution{"missing-access|ad|active|a1|staff": {Action: iam.ResolveExclude, Until: day(10), By: "admin"}}
	for _, a := range iam.ComputePlan(in).Actions {
		assert.NotEqual(t, iam.ActGrant, a.Type, "excluded deviation is not fixed")
	}
}
