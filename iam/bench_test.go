package iam_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/require"

	gwstore "github.com/aortagw/aortagw/gateway/store"
	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/iam/connector/mandate"
	"github.com/aortagw/aortagw/iam/internal/slapdtest"
	"github.com/aortagw/aortagw/iam/source"
	"github.com/aortagw/aortagw/iam/store"
)

// peakHeap samples the live heap while fn runs and returns the maximum.
func peakHeap(fn func()) uint64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	var mu sync.Mutex
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			mu.Lock()
			peak = max(peak, sample[0].Value.Uint64())
			mu.Unlock()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	fn()
	close(done)
	wg.Wait()
	return peak
}

var benchFunctions = []string{"Verpleegkundige", "Arts", "Zorgassistent", "Secretaresse", "Fysiotherapeut"}
var benchDepts = []string{"Cardiologie", "Longziekten", "SEH", "IC", "Chirurgie", "Neurologie", "Oncologie", "Kindergeneeskunde"}

// planInput100k builds 100,000 persons (1-3 contracts each, some shifts,
// some leavers) against three targets whose IST is in memory, with drift.
func planInput100k(n int) *iam.PlanInput {
	persons := make([]iam.Person, n)
	for i := range persons {
		emp := fmt.Sprint(100000 + i)
		p := iam.Person{ID: "p" + emp, GivenName: "G", FamilyName: "F" + emp, Email: emp + "@zorg.test", EmployeeNumber: emp}
		nc := 1 + i%3
		for c := range nc {
			ct := iam.Contract{ID: fmt.Sprintf("%s-%d", emp, c), Start: day(-400 + c*30), Function: benchFunctions[(i+c)%len(benchFunctions)],
				Department: benchDepts[(i*7+c)%len(benchDepts)], Location: []string{"Utrecht", "Amersfoort"}[i%2], FTE: float64(1+c) / 4}
			if i%20 == 0 {
				ct.End = day(-10) // 5 % leavers
			}
			if i%50 == 1 {
				ct.Shift = true
				ct.Start, ct.End = t0.Add(-2*time.Hour), t0.Add(6*time.Hour)
			}
			p.Contracts = append(p.Contracts, ct)
		}
		persons[i] = p
	}
	var rules []iam.Rule
	rules = append(rules, iam.Rule{Name: "everyone", Entitlements: []iam.Entitlement{{Target: "ad", Permission: "staff"}, {Target: "hix", Permission: "login:ZKH"}}, BeforeStartDays: 5, AfterEndDays: 1})
	for _, f := range benchFunctions {
		for _, d := range benchDepts {
			rules = append(rules, iam.Rule{Name: f + "-" + d, Conditions: []iam.Condition{{Field: "function", Values: []string{f}}, {Field: "department", Values: []string{d}}},
				Entitlements: []iam.Entitlement{{Target: "ad", Permission: "g-" + f + "-" + d}, {Target: "scim", Permission: f}, {Target: "hix", Permission: "group:" + d}}})
		}
	}
	rules = append(rules, iam.Rule{Name: "roster", ActiveShiftOnly: true, Entitlements: []iam.Entitlement{{Target: "hix", Permission: "login:SEH"}}})
	targets := []iam.TargetConfig{{Name: "ad", DeleteAfterDays: 30}, {Name: "scim", DeleteAfterDays: 30}, {Name: "hix", Capabilities: iam.Capabilities{NoDelete: true}}}
	policies := map[string]iam.TargetPolicy{}
	ist := map[string][]iam.Account{}
	for ti, t := range targets {
		accs := make([]iam.Account, 0, n)
		for i := range persons {
			p := &persons[i]
			if (i+ti)%25 == 3 {
				continue // 4 % missing accounts
			}
			da := iam.Desired(p, rules, nil, policies, t0, nil)[t.Name]
			a := iam.Account{Target: t.Name, Ref: fmt.Sprintf("%s-%d", t.Name, i), Key: p.EmployeeNumber, Enabled: true,
				Attributes: map[string]string{"displayName": p.Name(), "email": p.Email}}
			if da != nil {
				for perm := range da.Permissions {
					a.Permissions = append(a.Permissions, perm)
				}
				a.Attributes["function"] = da.Contract.Function
			}
			if i%40 == 7 {
				a.Permissions = append(a.Permissions, "staff") // drift: extra access
				a.Attributes["email"] = "old@zorg.test"        // drift: attribute
			}
			accs = append(accs, a)
		}
		for u := range n / 100 { // 1 % unmanaged accounts
			accs = append(accs, iam.Account{Target: t.Name, Ref: fmt.Sprintf("orphan-%d", u), Key: fmt.Sprint(900000 + u), Enabled: true})
		}
		ist[t.Name] = accs
	}
	return &iam.PlanInput{Now: t0, Persons: persons, Rules: rules, Targets: targets, IST: ist, Origin: iam.Origin{Kind: iam.OriginReconciliation}}
}

// BenchmarkFullReconciliation100k: plan computation over 100,000 persons and
// three targets with their IST in memory. Goal: < 10 s and < 1 GiB.
func BenchmarkFullReconciliation100k(b *testing.B) {
	in := planInput100k(100_000)
	runtime.GC()
	base := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(base)
	b.ReportAllocs()
	b.ResetTimer()
	var pl *iam.Plan
	var peak uint64
	for b.Loop() {
		peak = max(peak, peakHeap(func() { pl = iam.ComputePlan(in) }))
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(base[0].Value.Uint64())/(1<<20), "input-heap-MiB") // live heap holding the input before planning
	b.ReportMetric(float64(len(pl.Actions)), "actions")
	b.ReportMetric(float64(len(pl.Deviations)), "deviations")
}

func hrCSV(n int, leaver int, endLeaver bool, extra string) string {
	var sb strings.Builder
	sb.WriteString(hrHeader)
	for i := range n {
		end := ""
		if i == leaver && endLeaver {
			end = "2026-11-22"
		}
		uzi := ""
		if i == leaver {
			uzi = "123456782"
		}
		fmt.Fprintf(&sb, "p%d,G%d,F%d,p%d@zorg.test,,%d,%s,c%d,2020-01-01,%s,Arts,Longziekten,Utrecht\n", i, i, i, i, 10000+i, uzi, i, end)
	}
	sb.WriteString(extra)
	return sb.String()
}

// BenchmarkLeaverFileToGatewayMandate measures the real leaver path: the HR
// file is replaced (atomic rename) -> fsnotify watcher (20 ms debounce) ->
// import of the whole file -> engine event loop -> mandate connector ->
// gateway store (RevokeMandatesOf + BlockActor). Goal: < 1 s.
func BenchmarkLeaverFileToGatewayMandate(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("persons=%d", n), func(b *testing.B) {
			ctx := context.Background()
			dir := b.TempDir()
			clk := newClock(t0)
			gw, err := gwstore.Open(ctx, "sqlite:"+filepath.Join(dir, "gateway.db"), gwstore.Options{Now: clk.Now, Logger: slog.New(slog.DiscardHandler)})
			require.NoError(b, err)
			defer gw.Close()
			st, err := store.Open(ctx, filepath.Join(dir, "iam.db"))
			require.NoError(b, err)
			defer st.Close()
			mc, err := mandate.New("mandates", gw, st, clk.Now)
			require.NoError(b, err)
			eng, err := iam.New(iam.Config{
				Rules:   []iam.Rule{{Name: "uzi", Entitlements: []iam.Entitlement{{Target: "mandates"}}}},
				Targets: []iam.TargetConfig{{Name: "mandates", CorrelationField: "uzi", RequiredFields: []string{"uzi"}}},
			}, st, []iam.Connector{mc}, iam.Options{Now: clk.Now, NewID: ids()})
			require.NoError(b, err)
			path := filepath.Join(dir, "hr.csv")
			write := func(s string) {
				require.NoError(b, os.WriteFile(path+".tmp", []byte(s), 0o600))
				require.NoError(b, os.Rename(path+".tmp", path))
			}
			active, leaving := hrCSV(n, n/2, false, ""), hrCSV(n, n/2, true, "")
			write(active)
			runCtx, cancel := context.WithCancel(ctx)
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); _ = eng.Run(runCtx) }()
			go func() {
				defer wg.Done()
				_ = (&source.FileSource{Name: "hr", Path: path, Debounce: 20 * time.Millisecond}).Watch(runCtx, eng)
			}()
			defer func() { cancel(); wg.Wait() }()
			waitFor := func(want bool) {
				for {
					if blk, err := gw.ActorBlocked(ctx, "123456782"); err == nil && blk == want {
						return
					}
					time.Sleep(time.Millisecond)
				}
			}
			// wait for the initial import to register the actor
			for {
				if _, ok, _ := st.MandateActor(ctx, "123456782"); ok {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			seq := 0
			addMandate := func() {
				seq++
				require.NoError(b, gw.RegisterMandate(ctx, gwstore.Mandate{ID: fmt.Sprintf("_m%d", seq), Issuer: "CN=bench", URA: "12345678", GiverUZI: "123456782",
					GiverRole: "01.015", Mandated: []string{"987654321"}, ApplicationID: "xis", Context: "urn:ctx", IssueInstant: t0.Add(-time.Hour),
					NotBefore: t0.Add(-time.Hour), NotOnOrAfter: t0.AddDate(0, 6, 0), CertNotAfter: t0.AddDate(1, 0, 0), Raw: []byte("<a/>"), RegisteredBy: "bench"}))
			}
			addMandate()
			b.ResetTimer()
			for b.Loop() {
				write(leaving)
				waitFor(true)
				b.StopTimer()
				n, err := gw.RevokeMandatesOf(ctx, "123456782", "check")
				require.NoError(b, err)
				require.Zero(b, n, "the leaver's mandate was not revoked")
				addMandate()
				b.StartTimer()
				b.StopTimer()
				write(active) // re-joiner: unblock (not measured)
				waitFor(false)
				b.StartTimer()
			}
		})
	}
}

// BenchmarkJoinerFileToSlapd measures a joiner: a new row in the watched HR
// file -> watcher -> engine -> LDAP add in a real slapd. Goal: < 2 s.
func BenchmarkJoinerFileToSlapd(b *testing.B) {
	ctx := context.Background()
	s := slapdtest.Start(b)
	dir := b.TempDir()
	clk := newClock(t0)
	st, err := store.Open(ctx, filepath.Join(dir, "iam.db"))
	require.NoError(b, err)
	defer st.Close()
	lc := adConnector(b, s)
	eng, err := iam.New(iam.Config{
		Rules:   []iam.Rule{{Name: "all", Entitlements: []iam.Entitlement{{Target: "ad", Permission: "staff"}}}},
		Targets: []iam.TargetConfig{{Name: "ad"}},
	}, st, []iam.Connector{lc}, iam.Options{Now: clk.Now, NewID: ids()})
	require.NoError(b, err)
	const n = 1_000
	path := filepath.Join(dir, "hr.csv")
	write := func(s string) {
		require.NoError(b, os.WriteFile(path+".tmp", []byte(s), 0o600))
		require.NoError(b, os.Rename(path+".tmp", path))
	}
	write(hrCSV(n, -1, false, ""))
	// populate the directory first, synchronously, so the measured runs do
	// not compete with the initial load
	_, err = (&source.FileSource{Name: "hr", Path: path}).Load(ctx, eng)
	require.NoError(b, err)
	rr, err := eng.Reconcile(ctx, iam.RunOptions{})
	require.NoError(b, err)
	require.Empty(b, rr.Failed())
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = eng.Run(runCtx) }()
	go func() {
		defer wg.Done()
		_ = (&source.FileSource{Name: "hr", Path: path, Debounce: 20 * time.Millisecond}).Watch(runCtx, eng)
	}()
	defer func() { cancel(); wg.Wait() }()
	conn, err := goldap.DialURL(s.URL)
	require.NoError(b, err)
	defer conn.Close()
	require.NoError(b, conn.Bind(s.RootDN, s.Password))
	exists := func(uid string) bool {
		res, err := conn.Search(goldap.NewSearchRequest(s.PeopleDN, goldap.ScopeSingleLevel, goldap.NeverDerefAliases, 0, 0, false, "(uid="+uid+")", []string{"dn"}, nil))
		return err == nil && len(res.Entries) == 1
	}
	for !exists(fmt.Sprint(10000 + n - 1)) { // initial load of n accounts
		time.Sleep(20 * time.Millisecond)
	}
	var extra strings.Builder
	i := 0
	b.ResetTimer()
	for b.Loop() {
		i++
		emp := fmt.Sprint(500000 + i)
		fmt.Fprintf(&extra, "j%d,New,Joiner,j%d@zorg.test,,%s,,cj%d,2026-11-01,,Arts,SEH,Utrecht\n", i, i, emp, i)
		write(hrCSV(n, -1, false, extra.String()))
		for !exists(emp) {
			time.Sleep(time.Millisecond)
		}
	}
}
