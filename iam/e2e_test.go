package iam_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/iam/connector/ldap"
	"github.com/aortagw/aortagw/iam/connector/mandate"
	"github.com/aortagw/aortagw/iam/internal/authoritytest"
	"github.com/aortagw/aortagw/iam/internal/slapdtest"
	"github.com/aortagw/aortagw/iam/source"
	"github.com/aortagw/aortagw/iam/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.ns.Store(t.UnixNano()); return c }
func (c *clock) Now() time.Time   { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Add(d time.Duration) {
	c.ns.Add(int64(d))
}

func ids() func() string {
	var n atomic.Int64
	return func() string { return fmt.Sprintf("id-%04d", n.Add(1)) }
}

type stand struct {
	eng   *iam.Engine
	st    *store.SQLite
	auth  *authoritytest.Authority
	ldap  *slapdtest.Server
	clock *clock
	dir   string
}

var testRules = []iam.Rule{
	{Name: "all-staff", Entitlements: []iam.Entitlement{{Target: "ad"}, {Target: "mandates"}}, BeforeStartDays: 5},
	{Name: "cardio-nurse", Conditions: []iam.Condition{{Field: "function", Values: []string{"Verpleegkundige"}}, {Field: "department", Values: []string{"Cardiologie", "Hartbewaking"}}},
		Entitlements: []iam.Entitlement{{Target: "ad", Permission: "EPD-Cardio"}}},
}

// openStores opens a fresh IAM store and a test gateway authority in a
// temporary directory, both closed when the test ends, with a clock at t0.
func openStores(t testing.TB) (*store.SQLite, *authoritytest.Authority, *clock) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	clk := newClock(t0)
	st, err := store.Open(ctx, filepath.Join(dir, "iam.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	auth, err := authoritytest.Open(ctx, filepath.Join(dir, "gateway.db"), clk.Now)
	require.NoError(t, err)
	t.Cleanup(func() { _ = auth.Close() })
	return st, auth, clk
}

// adConnector is the "ad" LDAP connector on slapd s, closed when the test ends.
func adConnector(t testing.TB, s *slapdtest.Server) *ldap.Connector {
	t.Helper()
	lc, err := ldap.New(ldap.Config{Name: "ad", URL: s.URL, BindDN: s.RootDN, Password: s.Password, PeopleDN: s.PeopleDN, DisabledDN: s.DisabledDN, GroupsDN: s.GroupsDN})
	require.NoError(t, err)
	t.Cleanup(func() { _ = lc.Close() })
	return lc
}

func newStand(t *testing.T, threshold iam.SourceThreshold) *stand {
	t.Helper()
	s := slapdtest.Start(t)
	st, auth, clk := openStores(t)
	lc := adConnector(t, s)
	mc, err := mandate.New("mandates", auth, st, clk.Now)
	require.NoError(t, err)
	eng, err := iam.New(iam.Config{
		Rules: testRules,
		Targets: []iam.TargetConfig{
			{Name: "ad", CorrelationField: "employeeNumber", DeleteAfterDays: 30},
			{Name: "mandates", CorrelationField: "uzi", RequiredFields: []string{"uzi"}},
		},
		Required:        []iam.RequiredField{{Field: "email", Fallbacks: []string{"privateEmail"}}, {Field: "employeeNumber"}},
		SourceThreshold: threshold,
		RetryBase:       time.Millisecond,
	}, st, []iam.Connector{lc, mc}, iam.Options{Now: clk.Now, NewID: ids()})
	require.NoError(t, err)
	return &stand{eng: eng, st: st, auth: auth, ldap: s, clock: clk, dir: t.TempDir()}
}

const hrHeader = "id,givenName,familyName,email,privateEmail,employeeNumber,uzi,contractId,start,end,function,department,location\n"

// writeAtomic replaces the file the way exporters do: temp file + rename.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

func (s *stand) entries(t *testing.T, base, filter string) []*goldap.Entry {
	t.Helper()
	conn, err := goldap.DialURL(s.ldap.URL)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.Bind(s.ldap.RootDN, s.ldap.Password))
	res, err := conn.Search(goldap.NewSearchRequest(base, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases, 0, 0, false, filter, []string{"*"}, nil))
	require.NoError(t, err)
	return res.Entries
}

func (s *stand) count(base, filter string) int {
	conn, err := goldap.DialURL(s.ldap.URL)
	if err != nil {
		return -1
	}
	defer conn.Close()
	if conn.Bind(s.ldap.RootDN, s.ldap.Password) != nil {
		return -1
	}
	res, err := conn.Search(goldap.NewSearchRequest(base, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases, 0, 0, false, filter, []string{"dn"}, nil))
	if err != nil {
		return -1
	}
	return len(res.Entries)
}

// TestJoinerMoverLeaverThroughWatchedFile runs the real path: an HR file
// rewritten atomically -> fsnotify watcher -> engine event loop -> slapd and
// the SQL-backed mandate authority.
func TestJoinerMoverLeaverThroughWatchedFile(t *testing.T) {
	s := newStand(t, iam.SourceThreshold{})
	path := filepath.Join(s.dir, "hr.csv")
	writeAtomic(t, path, hrHeader+
		"p1,Anna,Jansen,anna@zorg.test,,1001,123456782,c1,2020-01-01,,Verpleegkundige,Cardiologie,Utrecht\n"+
		"p2,Bram,de Vries,,bram@home.test,1002,,c2,2026-11-26,,Arts,Longziekten,Utrecht\n"+
		"p3,Cees,Bakker,,,1003,,c3,2020-01-01,,Arts,Longziekten,Utrecht\n")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs <- s.eng.Run(ctx) }()
	go func() {
		defer wg.Done()
		errs <- (&source.FileSource{Name: "hr", Path: path, Debounce: 20 * time.Millisecond}).Watch(ctx, s.eng)
	}()
	defer func() {
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			assert.NoError(t, err)
		}
	}()
	require.NoError(t, s.auth.AddMandate(context.Background(), "m1", "123456782", "987654321"))

	// joiner: Anna enabled with her group; Bram (starts in 3 days, rule 5 days ahead) created;
	// Cees blocked: no e-mail and no private e-mail.
	require.Eventually(t, func() bool {
		return s.count(s.ldap.GroupsDN, "(member=uid=1001,"+s.ldap.PeopleDN+")") == 1 && s.count(s.ldap.Suffix, "(uid=1002)") == 1
	}, 10*time.Second, 20*time.Millisecond)
	bram := s.entries(t, s.ldap.Suffix, "(uid=1002)")
	require.Len(t, bram, 1)
	assert.Equal(t, "bram@home.test", bram[0].GetAttributeValue("mail"), "private e-mail fallback")
	assert.Zero(t, s.count(s.ldap.Suffix, "(uid=1003)"), "blocked person gets nothing")
	blocked, err := s.st.Blocked(context.Background())
	require.NoError(t, err)
	require.Len(t, blocked, 1)
	assert.Equal(t, "p3", blocked[0].ID)

	// mover: Anna moves to Longziekten -> group revoked, department updated
	writeAtomic(t, path, hrHeader+
		"p1,Anna,Jansen,anna@zorg.test,,1001,123456782,c1,2020-01-01,,Verpleegkundige,Longziekten,Utrecht\n"+
		"p2,Bram,de Vries,,bram@home.test,1002,,c2,2026-11-26,,Arts,Longziekten,Utrecht\n"+
		"p3,Cees,Bakker,,,1003,,c3,2020-01-01,,Arts,Longziekten,Utrecht\n")
	require.Eventually(t, func() bool {
		return s.count(s.ldap.GroupsDN, "(member=uid=1001,"+s.ldap.PeopleDN+")") == 0 &&
			s.count(s.ldap.PeopleDN, "(&(uid=1001)(departmentNumber=Longziekten))") == 1
	}, 10*time.Second, 20*time.Millisecond)
	n, err := s.auth.ValidMandates(context.Background(), "123456782")
	require.NoError(t, err)
	assert.Equal(t, 1, n, "a mover keeps her mandates")

	// leaver: Anna's contract ended yesterday -> mandates revoked, actor blocked, account disabled
	writeAtomic(t, path, hrHeader+
		"p1,Anna,Jansen,anna@zorg.test,,1001,123456782,c1,2020-01-01,2026-11-22,Verpleegkundige,Longziekten,Utrecht\n"+
		"p2,Bram,de Vries,,bram@home.test,1002,,c2,2026-11-26,,Arts,Longziekten,Utrecht\n"+
		"p3,Cees,Bakker,,,1003,,c3,2020-01-01,,Arts,Longziekten,Utrecht\n")
	require.Eventually(t, func() bool {
		b, err := s.auth.Blocked(context.Background(), "123456782")
		return err == nil && b && s.count(s.ldap.DisabledDN, "(uid=1001)") == 1
	}, 10*time.Second, 20*time.Millisecond)
	n, err = s.auth.ValidMandates(context.Background(), "123456782")
	require.NoError(t, err)
	assert.Zero(t, n, "leaver's mandates must stop working")

	// the audit line is written right after the authority call returns
	var ev iam.AuditEvent
	require.Eventually(t, func() bool {
		log, err := s.st.AuditLog(context.Background(), 0)
		if err != nil {
			return false
		}
		for _, e := range log {
			if e.Action == "disable" && e.Target == "mandates" {
				ev = e
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "audit names the mandate revocation")
	assert.Equal(t, "p1", ev.PersonID)
	assert.Equal(t, "person-change", ev.Origin)
	assert.Contains(t, ev.Detail, "revoked 1 mandates")
}

func importCSV(t *testing.T, s *stand, csv string) (*iam.ImportResult, error) {
	t.Helper()
	ps, err := source.ParseCSV(strings.NewReader(csv))
	require.NoError(t, err)
	return s.eng.Import(context.Background(), "hr", ps, "test")
}

func TestReconcileDryRunWritesNothingThenFixesDrift(t *testing.T) {
	s := newStand(t, iam.SourceThreshold{})
	ctx := context.Background()
	_, err := importCSV(t, s, hrHeader+"p1,Anna,Jansen,anna@zorg.test,,1001,123456782,c1,2020-01-01,,Verpleegkundige,Cardiologie,Utrecht\n")
	require.NoError(t, err)

	dry, err := s.eng.Reconcile(ctx, iam.RunOptions{DryRun: true})
	require.NoError(t, err)
	counts := dry.Plan.Counts()
	assert.Equal(t, 2, counts[iam.ActCreate], "ad + mandates")
	assert.Equal(t, 1, counts[iam.ActGrant])
	assert.Empty(t, dry.Failed(), "connector code ran in dry run: %v", dry.Failed())
	assert.Zero(t, s.count(s.ldap.Suffix, "(uid=1001)"), "dry run wrote to slapd")
	actors, err := s.st.MandateActors(ctx)
	require.NoError(t, err)
	assert.Empty(t, actors)
	log, err := s.st.AuditLog(ctx, 0)
	require.NoError(t, err)
	for _, ev := range log {
		assert.NotContains(t, []string{"create", "grant"}, ev.Action, "dry run must not audit actions")
	}

	res, err := s.eng.Reconcile(ctx, iam.RunOptions{})
	require.NoError(t, err)
	assert.Empty(t, res.Failed())
	assert.Equal(t, 1, s.count(s.ldap.GroupsDN, "(&(cn=EPD-Cardio)(member=uid=1001,"+s.ldap.PeopleDN+"))"))

	// drift: someone adds an unmanaged account and takes Anna out of her group by hand
	conn, err := goldap.DialURL(s.ldap.URL)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.Bind(s.ldap.RootDN, s.ldap.Password))
	add := goldap.NewAddRequest("uid=ghost,"+s.ldap.PeopleDN, nil)
	add.Attribute("objectClass", []string{"inetOrgPerson"})
	add.Attribute("cn", []string{"Ghost"})
	add.Attribute("sn", []string{"Ghost"})
	add.Attribute("employeeNumber", []string{"9999"})
	require.NoError(t, conn.Add(add))
	mod := goldap.NewModifyRequest("cn=EPD-Cardio,"+s.ldap.GroupsDN, nil)
	mod.Delete("member", []string{"uid=1001," + s.ldap.PeopleDN})
	require.NoError(t, conn.Modify(mod))

	res, err = s.eng.Reconcile(ctx, iam.RunOptions{})
	require.NoError(t, err)
	types := map[iam.DeviationType]int{}
	for _, d := range res.Plan.Deviations {
		types[d.Type]++
	}
	assert.Equal(t, 1, types[iam.DevUnmanagedAccount])
	assert.Equal(t, 1, types[iam.DevMissingAccess])
	assert.Equal(t, 1, s.count(s.ldap.GroupsDN, "(&(cn=EPD-Cardio)(member=uid=1001,"+s.ldap.PeopleDN+"))"), "missing access restored")
	assert.Equal(t, 1, s.count(s.ldap.PeopleDN, "(uid=ghost)"), "unmanaged account is reported, not touched")

	// an administrator resolves the unmanaged account with "fix": it is disabled
	rep, err := s.eng.Report(ctx)
	require.NoError(t, err)
	var key string
	for _, d := range rep.Deviations {
		if d.Type == iam.DevUnmanagedAccount {
			key = d.Key
		}
	}
	require.NotEmpty(t, key)
	require.NoError(t, s.eng.Resolve(ctx, iam.Resolution{Key: key, Action: iam.ResolveFix, By: "admin-ria"}))
	_, err = s.eng.Reconcile(ctx, iam.RunOptions{})
	require.NoError(t, err)
	assert.Equal(t, 1, s.count(s.ldap.DisabledDN, "(uid=ghost)"))
}

func TestSourceThresholdBlocksWholeImportUntilApproved(t *testing.T) {
	s := newStand(t, iam.SourceThreshold{MaxRemoved: 1})
	ctx := context.Background()
	full := hrHeader +
		"p1,Anna,Jansen,a@z.test,,1001,,c1,2020-01-01,,Arts,X,U\n" +
		"p2,Bram,Vries,b@z.test,,1002,,c2,2020-01-01,,Arts,X,U\n" +
		"p3,Cees,Bakker,c@z.test,,1003,,c3,2020-01-01,,Arts,X,U\n"
	_, err := importCSV(t, s, full)
	require.NoError(t, err)
	// an export that lost two rows, and also changes p1
	res, err := importCSV(t, s, hrHeader+"p1,Anna,Jansen,new@z.test,,1001,,c1,2020-01-01,,Arts,X,U\n")
	require.ErrorIs(t, err, iam.ErrThreshold)
	require.NotEmpty(t, res.Pending)
	ps, err := s.st.SourcePersons(ctx, "hr")
	require.NoError(t, err)
	for _, p := range ps {
		assert.False(t, p.Removed, "nothing removed before approval")
		if p.ID == "p1" {
			assert.Equal(t, "a@z.test", p.Email, "blocked whole: not even p1's change applied")
		}
	}
	_, err = s.eng.ApproveImport(ctx, res.Pending, "admin-ria")
	require.NoError(t, err)
	ps, err = s.st.SourcePersons(ctx, "hr")
	require.NoError(t, err)
	removed := 0
	for _, p := range ps {
		if p.Removed {
			removed++
		}
	}
	assert.Equal(t, 2, removed)
	pend, err := s.st.PendingImports(ctx)
	require.NoError(t, err)
	assert.Empty(t, pend)
}

func TestDryRunOfAnImportWritesNothing(t *testing.T) {
	s := newStand(t, iam.SourceThreshold{})
	ctx := context.Background()
	ps, err := source.ParseCSV(strings.NewReader(hrHeader + "p1,Anna,Jansen,anna@zorg.test,,1001,123456782,c1,2020-01-01,,Verpleegkundige,Cardiologie,Utrecht\n" +
		"p2,Bram,Vries,,,1002,,c2,2020-01-01,,Arts,X,U\n"))
	require.NoError(t, err)
	res, eff, err := s.eng.PreviewImport(ctx, "hr", ps)
	require.NoError(t, err)
	assert.Equal(t, []string{"p1"}, res.Added)
	require.Len(t, res.Blocked, 1, "p2 lacks an e-mail")
	rr, err := s.eng.Reconcile(ctx, iam.RunOptions{DryRun: true, Overlay: map[string][]iam.Person{"hr": eff}})
	require.NoError(t, err)
	assert.Equal(t, 2, rr.Plan.Counts()[iam.ActCreate], "the preview plans p1 on ad and mandates")
	stored, err := s.st.AllSourcePersons(ctx)
	require.NoError(t, err)
	assert.Empty(t, stored)
	bl, err := s.st.Blocked(ctx)
	require.NoError(t, err)
	assert.Empty(t, bl)
	assert.Zero(t, s.count(s.ldap.Suffix, "(uid=1001)"))
}
