package iam_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/iam/connector/directory"
	"github.com/aortagw/aortagw/iam/connector/hix"
	"github.com/aortagw/aortagw/iam/connector/mandate"
	"github.com/aortagw/aortagw/iam/connector/scim"
	"github.com/aortagw/aortagw/iam/internal/authoritytest"
	"github.com/aortagw/aortagw/iam/internal/scimtest"
	"github.com/aortagw/aortagw/iam/internal/slapdtest"
	"github.com/aortagw/aortagw/iam/store"
)

type allStand struct {
	eng  *iam.Engine
	st   *store.SQLite
	auth *authoritytest.Authority
	scim *scimtest.Server
	hix  *hix.Simulator
	dir  *directory.Simulator
	clk  *clock
}

func newAllStand(t *testing.T, limits map[iam.ActionType]int) *allStand {
	t.Helper()
	s := slapdtest.Start(t)
	st, auth, clk := openStores(t)
	lc := adConnector(t, s)
	ss := scimtest.New("tok")
	ss.RequireIfMatch = true
	sh := httptest.NewServer(ss)
	t.Cleanup(sh.Close)
	sc, err := scim.New(scim.Config{Name: "ysis", BaseURL: sh.URL, Token: "tok", HTTPClient: sh.Client()})
	require.NoError(t, err)
	hs := hix.NewSimulator("VPK", "ARTS")
	hh := httptest.NewServer(hs)
	t.Cleanup(hh.Close)
	hc, err := hix.New(hix.Config{Name: "hix", BaseURL: hh.URL, HTTPClient: hh.Client(), Functions: map[string]string{"Verpleegkundige": "VPK", "Arts": "ARTS"}})
	require.NoError(t, err)
	ds := directory.NewSimulator(clk.Now)
	dh := httptest.NewServer(ds)
	t.Cleanup(dh.Close)
	dc, err := directory.New(directory.Config{Name: "hsa", BaseURL: dh.URL, Organisation: "12345678", HTTPClient: dh.Client()})
	require.NoError(t, err)
	mc, err := mandate.New("mandates", auth, st, clk.Now)
	require.NoError(t, err)

	eng, err := iam.New(iam.Config{
		Rules: []iam.Rule{
			{Name: "staff", Entitlements: []iam.Entitlement{{Target: "ad"}, {Target: "mandates"}, {Target: "hsa"}, {Target: "hix", Permission: "login:ZKH"}}},
			{Name: "nurses", Conditions: []iam.Condition{{Field: "function", Values: []string{"Verpleegkundige"}}},
				Entitlements: []iam.Entitlement{{Target: "ysis", Permission: "Behandelaar"}, {Target: "hix", Permission: "group:VPK-Cardio"}}},
		},
		Targets: []iam.TargetConfig{
			{Name: "ad", DeleteAfterDays: 30},
			{Name: "ysis", CorrelationField: "email", DeleteAfterDays: 30},
			{Name: "hix"},
			{Name: "mandates", CorrelationField: "uzi", RequiredFields: []string{"uzi"}},
			{Name: "hsa", CorrelationField: "uzi", RequiredFields: []string{"uzi"}},
		},
		OutputThresholds: limits,
		RetryBase:        time.Millisecond,
	}, st, []iam.Connector{lc, sc, hc, mc, dc}, iam.Options{Now: clk.Now, NewID: ids()})
	require.NoError(t, err)
	return &allStand{eng: eng, st: st, auth: auth, scim: ss, hix: hs, dir: ds, clk: clk}
}

func person(id, emp, uzi, fn string, end time.Time) iam.Person {
	return iam.Person{ID: id, GivenName: "G" + id, FamilyName: "F" + id, Email: id + "@zorg.test", EmployeeNumber: emp, UZI: uzi,
		Contracts: []iam.Contract{{ID: id + "-c", Start: day(-100), End: end, Function: fn, Department: "Cardiologie", Manager: "boss"}}}
}

func TestEngineWithAllConnectors(t *testing.T) {
	a := newAllStand(t, nil)
	ctx := context.Background()
	_, err := a.eng.Import(ctx, "hr", []iam.Person{
		person("p1", "1001", "111111110", "Verpleegkundige", time.Time{}),
		person("p2", "1002", "222222220", "Arts", time.Time{}),
	}, "test")
	require.NoError(t, err)
	res, err := a.eng.Reconcile(ctx, iam.RunOptions{})
	require.NoError(t, err)
	require.Empty(t, res.Failed())

	assert.Len(t, a.scim.Users(), 1, "only the nurse gets Ysis")
	accs := a.hix.Accounts()
	require.Len(t, accs, 2)
	assert.Equal(t, []string{"ZKH"}, accs[0].LoginGroups)
	r, ok := a.dir.Role("111111110")
	require.True(t, ok)
	assert.True(t, r.Active)

	// second run: nothing to do (idempotent desired state)
	res, err = a.eng.Reconcile(ctx, iam.RunOptions{})
	require.NoError(t, err)
	assert.Empty(t, res.Plan.Actions)

	// p1 leaves: event-driven sync of just her
	require.NoError(t, a.auth.AddMandate(ctx, "m1", "111111110", "222222220"))
	_, err = a.eng.EndContracts(ctx, "hr", "p1", day(-1), "webhook")
	require.NoError(t, err)
	res, err = a.eng.SyncPerson(ctx, "p1", iam.Origin{Kind: iam.OriginPersonChange}, iam.RunOptions{})
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	n, err := a.auth.ValidMandates(ctx, "111111110")
	require.NoError(t, err)
	assert.Zero(t, n)
	r, _ = a.dir.Role("111111110")
	assert.False(t, r.Active, "deregistered")
	for _, h := range a.hix.Accounts() {
		if h.EmployeeNumber == "1001" {
			assert.False(t, h.Active)
			assert.Equal(t, "MWU", h.EmployeeType)
			assert.Empty(t, h.Groups, "managed groups revoked")
		}
	}
	u := a.scim.Users()[0]
	assert.False(t, *u.Active)

	// 31 days later: delete where allowed, HiX/directory/mandates keep (NoDelete)
	a.clk.Add(31 * 24 * time.Hour)
	res, err = a.eng.Reconcile(ctx, iam.RunOptions{})
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	var deleted []string
	for _, o := range res.Outcomes {
		if o.Action.Type == iam.ActDelete {
			deleted = append(deleted, o.Action.Target)
		}
	}
	assert.ElementsMatch(t, []string{"ad", "ysis"}, deleted)
	assert.Empty(t, a.scim.Users())
	assert.Len(t, a.hix.Accounts(), 2)
}

func TestOutputThresholdBlocksOnlyThatType(t *testing.T) {
	a := newAllStand(t, map[iam.ActionType]int{iam.ActDisable: 2})
	ctx := context.Background()
	var ps []iam.Person
	for i, id := range []string{"p1", "p2", "p3"} {
		ps = append(ps, person(id, "100"+string(rune('1'+i)), "", "Arts", time.Time{}))
	}
	_, err := a.eng.Import(ctx, "hr", ps, "test")
	require.NoError(t, err)
	_, err = a.eng.Reconcile(ctx, iam.RunOptions{})
	require.NoError(t, err)
	// everyone leaves, and a new person joins
	for i := range ps {
		ps[i].Contracts[0].End = day(-1)
	}
	ps = append(ps, person("p4", "1004", "", "Arts", time.Time{}))
	_, err = a.eng.Import(ctx, "hr", ps, "test")
	require.NoError(t, err)
	res, err := a.eng.Reconcile(ctx, iam.RunOptions{})
	require.NoError(t, err)
	assert.Equal(t, []iam.ActionType{iam.ActDisable}, res.Exceeded)
	assert.Len(t, res.Blocked, 6, "3 persons x (ad, hix) disables held back")
	created := 0
	for _, o := range res.Outcomes {
		assert.NotEqual(t, iam.ActDisable, o.Action.Type)
		if o.Action.Type == iam.ActCreate {
			created++
		}
	}
	assert.Equal(t, 2, created, "the joiner still gets ad + hix")
	// the administrator approves the type for one run
	res, err = a.eng.Reconcile(ctx, iam.RunOptions{Allow: map[iam.ActionType]bool{iam.ActDisable: true}, Actor: "admin"})
	require.NoError(t, err)
	assert.Empty(t, res.Blocked)
	assert.Empty(t, res.Failed())
}

func TestAttestationCampaignAndDueList(t *testing.T) {
	a := newAllStand(t, nil)
	ctx := context.Background()
	_, err := a.eng.Import(ctx, "hr", []iam.Person{
		person("p1", "1001", "111111110", "Arts", time.Time{}),
		person("p2", "1002", "222222220", "Arts", time.Time{}),
	}, "test")
	require.NoError(t, err)
	_, err = a.eng.Reconcile(ctx, iam.RunOptions{})
	require.NoError(t, err)
	g, err := a.eng.AddGrant(ctx, iam.Grant{PersonID: "p2", Entitlement: iam.Entitlement{Target: "hix", Permission: "group:Research"}, Reason: "study", Until: day(60), By: "admin"})
	require.NoError(t, err)
	_, err = a.eng.SyncPerson(ctx, "p2", iam.Origin{Kind: iam.OriginManualGrant}, iam.RunOptions{})
	require.NoError(t, err)
	_, err = a.eng.AddGrant(ctx, iam.Grant{PersonID: "p2", Entitlement: iam.Entitlement{Target: "hix", Permission: "group:X"}, Until: day(60), By: "admin"})
	assert.ErrorIs(t, err, iam.ErrInvalid, "a grant without reason is refused")

	c, err := a.eng.StartCampaign(ctx, "Q4", "admin", day(14))
	require.NoError(t, err)
	require.Len(t, c.Items, 3, "two employments and one manual grant")
	var grantItem, emp1 string
	for _, it := range c.Items {
		assert.Equal(t, "boss", it.Reviewer)
		if it.Kind == "grant" {
			grantItem = it.ID
		}
		if it.Kind == "employment" && it.PersonID == "p1" {
			emp1 = it.ID
		}
	}
	assert.ErrorIs(t, a.eng.AnswerAttestation(ctx, c.ID, grantItem, iam.DecisionRevoke, "not-the-boss"), iam.ErrInvalid)
	require.NoError(t, a.eng.AnswerAttestation(ctx, c.ID, grantItem, iam.DecisionRevoke, "boss"))
	_, err = a.eng.SyncPerson(ctx, "p2", iam.Origin{Kind: iam.OriginAttestation}, iam.RunOptions{})
	require.NoError(t, err)
	for _, h := range a.hix.Accounts() {
		assert.NotContains(t, h.Groups, "Research", "revoked grant removed from HiX")
	}
	grants, err := a.st.Grants(ctx)
	require.NoError(t, err)
	require.Len(t, grants, 1)
	assert.Equal(t, g.ID, grants[0].ID)
	assert.Equal(t, "boss", grants[0].RevokedBy)

	// quarter passes: p1's employment confirmed in the campaign refreshes the directory
	a.clk.Add(10 * 24 * time.Hour)
	require.NoError(t, a.eng.AnswerAttestation(ctx, c.ID, emp1, iam.DecisionConfirm, "boss"))
	a.clk.Add(85 * 24 * time.Hour)
	rep, err := a.eng.Report(ctx)
	require.NoError(t, err)
	require.Len(t, rep.Due, 1, "only p2 is due for confirmation")
	assert.Equal(t, "222222220", rep.Due[0].Ref)
	missed := 0
	for _, d := range rep.Deviations {
		if d.Type == iam.DevAttestationMissed {
			missed++
			assert.Equal(t, "p2", d.PersonID)
		}
	}
	assert.Equal(t, 1, missed, "p2's unanswered employment item became a deviation")
}
