package iam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SourceThreshold blocks a whole import that would remove more than
// MaxRemoved persons or more than MaxRemovedPercent of the source's persons.
// Zero values mean "no limit" for that measure.
type SourceThreshold struct {
	MaxRemoved        int     `yaml:"maxRemoved"`
	MaxRemovedPercent float64 `yaml:"maxRemovedPercent"`
}

// Config is the engine's configuration.
type Config struct {
	Rules            []Rule
	Targets          []TargetConfig
	Required         []RequiredField
	SourceOrder      []string // precedence of sources for person fields; others follow by name
	SourceThreshold  SourceThreshold
	OutputThresholds map[ActionType]int
	RetryAttempts    int           // default 4
	RetryBase        time.Duration // default 200ms, doubled per attempt
	ReconcileEvery   time.Duration // 0 disables the periodic reconciliation in Run
	SortOrder        []SortKey
}

// Options carries the injected dependencies.
type Options struct {
	Now        func() time.Time
	NewID      func() string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Engine computes and applies plans. Create it with New; Run owns the
// event and reconciliation loop.
type Engine struct {
	cfg    Config
	store  Store
	conns  map[string]Connector
	sems   map[string]chan struct{}
	now    func() time.Time
	newID  func() string
	log    *slog.Logger
	queue  chan string
	bulk   chan struct{} // a full reconciliation was requested (bulk change or queue overflow)
	pmu    sync.Mutex
	plocks map[string]*sync.Mutex

	actions *prometheus.CounterVec
	runs    *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

// New validates the configuration and builds an engine. It does no I/O.
func New(cfg Config, st Store, conns []Connector, opts Options) (*Engine, error) {
	if st == nil {
		return nil, fmt.Errorf("%w: engine needs a store", ErrInvalid)
	}
	if opts.Now == nil || opts.NewID == nil {
		return nil, fmt.Errorf("%w: engine needs a clock and an id generator", ErrInvalid)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RetryAttempts <= 0 {
		cfg.RetryAttempts = 4
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = 200 * time.Millisecond
	}
	e := &Engine{cfg: cfg, store: st, conns: map[string]Connector{}, sems: map[string]chan struct{}{},
		now: opts.Now, newID: opts.NewID, log: opts.Logger, queue: make(chan string, 4096), bulk: make(chan struct{}, 1), plocks: map[string]*sync.Mutex{}}
	for _, c := range conns {
		if _, dup := e.conns[c.Name()]; dup {
			return nil, fmt.Errorf("%w: duplicate connector (target=%s)", ErrInvalid, c.Name())
		}
		e.conns[c.Name()] = c
		n := c.Capabilities().Concurrency
		if n <= 0 {
			n = 4
		}
		e.sems[c.Name()] = make(chan struct{}, n)
	}
	for i := range e.cfg.Targets {
		t := &e.cfg.Targets[i]
		c, ok := e.conns[t.Name]
		if !ok {
			return nil, fmt.Errorf("%w: target without connector (target=%s)", ErrInvalid, t.Name)
		}
		t.Capabilities = c.Capabilities()
	}
	for i := range cfg.Rules {
		if err := cfg.Rules[i].Validate(); err != nil {
			return nil, err
		}
		for _, en := range cfg.Rules[i].Entitlements {
			if _, ok := e.conns[en.Target]; !ok {
				return nil, fmt.Errorf("%w: rule names an unknown target (rule=%s target=%s)", ErrInvalid, cfg.Rules[i].Name, en.Target)
			}
		}
	}
	e.actions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "aortagw", Subsystem: "iam", Name: "actions_total",
		Help: "IAM actions applied, by target, type and outcome."}, []string{"target", "type", "outcome"})
	e.runs = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "aortagw", Subsystem: "iam", Name: "runs_total",
		Help: "IAM runs, by kind (person, reconcile) and outcome."}, []string{"kind", "outcome"})
	e.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "aortagw", Subsystem: "iam", Name: "run_seconds",
		Help: "Duration of IAM runs (person: one event-driven sync; reconcile: a full run).", Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}},
		[]string{"kind"})
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{e.actions, e.runs, e.latency} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("iam: register metrics: %w", err)
			}
		}
	}
	return e, nil
}

// RunsCounter returns the runs counter for one kind and outcome (for tests
// and diagnostics).
func (e *Engine) RunsCounter(kind, outcome string) prometheus.Counter {
	return e.runs.WithLabelValues(kind, outcome)
}

// Store returns the engine's store.
func (e *Engine) Store() Store { return e.store }

// ImportResult summarises a source import.
type ImportResult struct {
	Source  string          `json:"source"`
	Added   []string        `json:"added"`
	Changed []string        `json:"changed"`
	Removed []string        `json:"removed"`
	Blocked []BlockedPerson `json:"blocked"`
	Pending string          `json:"pending,omitempty"` // ID of a held-back import
}

// Import takes a complete snapshot of one source. An import that would
// remove more persons than the source threshold allows is held back whole
// (ErrThreshold, with the pending ID in the result) until ApproveImport.
// Otherwise persons lacking required fields are held back one by one, the
// rest is saved and the changed persons are queued for propagation.
func (e *Engine) Import(ctx context.Context, source string, persons []Person, actor string) (*ImportResult, error) {
	res, _, err := e.importSnapshot(ctx, source, persons, actor, false, false)
	return res, err
}

// PreviewImport computes what Import would do, writing nothing, and returns
// the source's contributions as they would be afterwards (for a dry run:
// pass them in RunOptions.Overlay).
func (e *Engine) PreviewImport(ctx context.Context, source string, persons []Person) (*ImportResult, []Person, error) {
	return e.importSnapshot(ctx, source, persons, "preview", false, true)
}

func (e *Engine) importSnapshot(ctx context.Context, source string, persons []Person, actor string, approved, dry bool) (*ImportResult, []Person, error) {
	if source == "" {
		return nil, nil, fmt.Errorf("%w: import without source name", ErrInvalid)
	}
	old, err := e.store.SourcePersons(ctx, source)
	if err != nil {
		return nil, nil, err
	}
	oldBy := make(map[string]*Person, len(old))
	live := 0
	for i := range old {
		oldBy[old[i].ID] = &old[i]
		if !old[i].Removed {
			live++
		}
	}
	res := &ImportResult{Source: source}
	seen := make(map[string]bool, len(persons))
	for i := range persons {
		if persons[i].ID == "" {
			return nil, nil, fmt.Errorf("%w: person without id (source=%s index=%d)", ErrInvalid, source, i)
		}
		if seen[persons[i].ID] {
			return nil, nil, fmt.Errorf("%w: duplicate person id (source=%s id=%s)", ErrInvalid, source, persons[i].ID)
		}
		seen[persons[i].ID] = true
	}
	for _, o := range old {
		if !o.Removed && !seen[o.ID] {
			res.Removed = append(res.Removed, o.ID)
		}
	}
	now := e.now()
	if th := e.cfg.SourceThreshold; !approved && len(res.Removed) > 0 {
		pct := 0.0
		if live > 0 {
			pct = 100 * float64(len(res.Removed)) / float64(live)
		}
		if (th.MaxRemoved > 0 && len(res.Removed) > th.MaxRemoved) || (th.MaxRemovedPercent > 0 && pct > th.MaxRemovedPercent) {
			pi := PendingImport{ID: e.newID(), Source: source, At: now, Removed: res.Removed, Persons: persons,
				Reason: fmt.Sprintf("import removes %d of %d persons (%.1f%%); limits: %d persons, %.1f%%", len(res.Removed), live, pct, th.MaxRemoved, th.MaxRemovedPercent)}
			if dry {
				res.Pending = "(would be held back)"
				return res, old, fmt.Errorf("%w: %s (source=%s)", ErrThreshold, pi.Reason, source)
			}
			if err := e.store.SavePendingImport(ctx, pi); err != nil {
				return nil, nil, err
			}
			res.Pending = pi.ID
			_ = e.store.Audit(ctx, AuditEvent{At: now, Actor: actor, Action: "import-blocked", Detail: "source=" + source + " pending=" + pi.ID + ": " + pi.Reason, Outcome: "blocked"})
			return res, old, fmt.Errorf("%w: %s (source=%s pending=%s)", ErrThreshold, pi.Reason, source, pi.ID)
		}
	}
	var upsert []Person
	for i := range persons {
		p := persons[i]
		p.Source = source
		for ci := range p.Contracts {
			if p.Contracts[ci].Source == "" {
				p.Contracts[ci].Source = source
			}
		}
		missing := ApplyRequired(&p, e.cfg.Required)
		// A leaver is never held back: missing fields must not keep access alive.
		if len(missing) > 0 && p.StateAt(now) != StateLeaver {
			bp := BlockedPerson{Source: source, ID: p.ID, Missing: missing, At: now}
			res.Blocked = append(res.Blocked, bp)
			if dry {
				continue
			}
			if err := e.store.SetBlocked(ctx, bp); err != nil {
				return nil, nil, err
			}
			continue
		}
		if !dry {
			if err := e.store.SetBlocked(ctx, BlockedPerson{Source: source, ID: p.ID}); err != nil {
				return nil, nil, err
			}
		}
		o := oldBy[p.ID]
		switch {
		case o == nil:
			res.Added = append(res.Added, p.ID)
		case !samePerson(o, &p):
			res.Changed = append(res.Changed, p.ID)
		default:
			continue
		}
		upsert = append(upsert, p)
	}
	if dry {
		return res, applySnapshot(old, upsert, res.Removed), nil
	}
	if err := e.store.SaveSourcePersons(ctx, source, upsert, res.Removed); err != nil {
		return nil, nil, err
	}
	_ = e.store.Audit(ctx, AuditEvent{At: now, Actor: actor, Action: "import", Detail: fmt.Sprintf("source=%s added=%d changed=%d removed=%d blocked=%d",
		source, len(res.Added), len(res.Changed), len(res.Removed), len(res.Blocked)), Outcome: "ok"})
	if n := len(res.Added) + len(res.Changed) + len(res.Removed); n > BulkThreshold {
		e.requestReconcile() // one full run beats thousands of single-person runs
	} else {
		e.Notify(res.Added...)
		e.Notify(res.Changed...)
		e.Notify(res.Removed...)
	}
	return res, nil, nil
}

// UpsertPerson applies one person event (webhook): joiner, mover or leaver.
// It bypasses the removal threshold (one person) but not required fields.
func (e *Engine) UpsertPerson(ctx context.Context, source string, p Person, actor string) (*ImportResult, error) {
	if p.ID == "" {
		return nil, fmt.Errorf("%w: person without id (source=%s)", ErrInvalid, source)
	}
	old, err := e.store.SourcePersons(ctx, source)
	if err != nil {
		return nil, err
	}
	snap := make([]Person, 0, len(old)+1)
	for _, o := range old {
		if o.ID != p.ID && !o.Removed {
			snap = append(snap, o)
		}
	}
	snap = append(snap, p)
	res, _, err := e.importSnapshot(ctx, source, snap, actor, true, false)
	return res, err
}

// ApproveImport applies a held-back import.
func (e *Engine) ApproveImport(ctx context.Context, id, by string) (*ImportResult, error) {
	pi, err := e.store.PendingImport(ctx, id)
	if err != nil {
		return nil, err
	}
	res, _, err := e.importSnapshot(ctx, pi.Source, pi.Persons, by, true, false)
	if err != nil {
		return nil, err
	}
	if err := e.store.DeletePendingImport(ctx, id); err != nil {
		return nil, err
	}
	return res, e.store.Audit(ctx, AuditEvent{At: e.now(), Actor: by, Action: "import-approved", Detail: "pending=" + id + " source=" + pi.Source, Outcome: "ok"})
}

// applySnapshot returns old with upserts replaced/added and removed IDs tombstoned.
func applySnapshot(old, upsert []Person, removed []string) []Person {
	by := map[string]int{}
	out := append([]Person(nil), old...)
	for i := range out {
		by[out[i].ID] = i
	}
	for _, p := range upsert {
		if i, ok := by[p.ID]; ok {
			out[i] = p
		} else {
			by[p.ID] = len(out)
			out = append(out, p)
		}
	}
	for _, id := range removed {
		if i, ok := by[id]; ok {
			out[i].Removed = true
		}
	}
	return out
}

func samePerson(a, b *Person) bool {
	if a.Removed != b.Removed || a.GivenName != b.GivenName || a.FamilyName != b.FamilyName || a.DisplayName != b.DisplayName ||
		a.Email != b.Email || a.PrivateEmail != b.PrivateEmail || a.EmployeeNumber != b.EmployeeNumber || a.UZI != b.UZI ||
		a.AGB != b.AGB || a.BIG != b.BIG || !slices.Equal(a.RoleCodes, b.RoleCodes) || len(a.Contracts) != len(b.Contracts) ||
		len(a.Cards) != len(b.Cards) || (a.Trained == nil) != (b.Trained == nil) || (a.Trained != nil && *a.Trained != *b.Trained) {
		return false
	}
	for i := range a.Contracts {
		x, y := a.Contracts[i], b.Contracts[i]
		if x.ID != y.ID || !x.Start.Equal(y.Start) || !x.End.Equal(y.End) || x.Function != y.Function || x.Department != y.Department ||
			x.Location != y.Location || x.CostCentre != y.CostCentre || x.Shift != y.Shift || x.FTE != y.FTE || x.Sequence != y.Sequence || x.Manager != y.Manager {
			return false
		}
	}
	for i := range a.Cards {
		if a.Cards[i].Serial != b.Cards[i].Serial || a.Cards[i].Type != b.Cards[i].Type || !a.Cards[i].NotAfter.Equal(b.Cards[i].NotAfter) {
			return false
		}
	}
	return true
}

// MergePersons merges the contributions of several sources by person ID:
// person fields come from the first source in order that has them, contracts
// are concatenated. A person is removed only when every source removed them.
func MergePersons(contribs []Person, order []string) []Person {
	rank := func(s string) int {
		if i := slices.Index(order, s); i >= 0 {
			return i
		}
		return len(order)
	}
	sort.SliceStable(contribs, func(i, j int) bool {
		if contribs[i].ID != contribs[j].ID {
			return contribs[i].ID < contribs[j].ID
		}
		ri, rj := rank(contribs[i].Source), rank(contribs[j].Source)
		if ri != rj {
			return ri < rj
		}
		return contribs[i].Source < contribs[j].Source
	})
	out := make([]Person, 0, len(contribs))
	for i := 0; i < len(contribs); {
		j := i + 1
		for j < len(contribs) && contribs[j].ID == contribs[i].ID {
			j++
		}
		if j == i+1 {
			out = append(out, contribs[i])
			i = j
			continue
		}
		m := contribs[i]
		m.Contracts = append([]Contract(nil), m.Contracts...)
		removed := m.Removed
		for _, c := range contribs[i+1 : j] {
			removed = removed && c.Removed
			if c.Removed {
				continue
			}
			if m.Removed { // the first live contribution gives the fields
				cs := m.Contracts
				m = c
				m.Contracts = append(cs, c.Contracts...)
				m.Removed = false
				continue
			}
			fill(&m.GivenName, c.GivenName)
			fill(&m.FamilyName, c.FamilyName)
			fill(&m.DisplayName, c.DisplayName)
			fill(&m.Email, c.Email)
			fill(&m.PrivateEmail, c.PrivateEmail)
			fill(&m.EmployeeNumber, c.EmployeeNumber)
			fill(&m.UZI, c.UZI)
			fill(&m.AGB, c.AGB)
			fill(&m.BIG, c.BIG)
			m.Contracts = append(m.Contracts, c.Contracts...)
		}
		m.Removed = removed
		out = append(out, m)
		i = j
	}
	return out
}

func fill(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

func (e *Engine) persons(ctx context.Context) ([]Person, error) {
	all, err := e.store.AllSourcePersons(ctx)
	if err != nil {
		return nil, err
	}
	return MergePersons(all, e.cfg.SourceOrder), nil
}

// Outcome is the result of one applied action.
type Outcome struct {
	Action   Action `json:"action"`
	Result   Result `json:"result"`
	Err      string `json:"error,omitempty"`
	Attempts int    `json:"attempts"`
}

// RunResult is what a sync run did (or, in dry run, would do).
type RunResult struct {
	DryRun   bool         `json:"dryRun"`
	Plan     *Plan        `json:"plan"`
	Outcomes []Outcome    `json:"outcomes"`
	Blocked  []Action     `json:"blocked,omitempty"`
	Exceeded []ActionType `json:"exceeded,omitempty"`
}

// Failed returns the outcomes that ended in an error.
func (r *RunResult) Failed() []Outcome {
	var out []Outcome
	for _, o := range r.Outcomes {
		if o.Err != "" {
			out = append(out, o)
		}
	}
	return out
}

// RunOptions tune one run.
type RunOptions struct {
	DryRun bool
	Allow  map[ActionType]bool // action types whose threshold an admin overrides for this run
	Actor  string
	// Overlay replaces the stored contributions of the named sources for
	// this run only (a dry run of a source import, see PreviewImport).
	Overlay map[string][]Person
}

func (e *Engine) planInput(ctx context.Context, persons []Person, ist map[string][]Account, origin Origin, partial bool) (*PlanInput, error) {
	grants, err := e.store.Grants(ctx)
	if err != nil {
		return nil, err
	}
	excl, err := e.store.Exclusions(ctx)
	if err != nil {
		return nil, err
	}
	dis, err := e.store.DisabledSince(ctx)
	if err != nil {
		return nil, err
	}
	res, err := e.store.Resolutions(ctx)
	if err != nil {
		return nil, err
	}
	failed, err := e.store.Failed(ctx)
	if err != nil {
		return nil, err
	}
	return &PlanInput{Now: e.now(), Persons: persons, Rules: e.cfg.Rules, Grants: grants, Exclusions: excl, Targets: e.cfg.Targets,
		IST: ist, DisabledSince: dis, Resolutions: res, Failed: failed, Origin: origin, Partial: partial, SortOrder: e.cfg.SortOrder}, nil
}

// ImportIST reads every target's accounts concurrently.
func (e *Engine) ImportIST(ctx context.Context) (map[string][]Account, error) {
	type r struct {
		name string
		accs []Account
		err  error
	}
	ch := make(chan r, len(e.cfg.Targets))
	for _, t := range e.cfg.Targets {
		go func() {
			accs, err := e.conns[t.Name].ImportAll(ctx)
			ch <- r{t.Name, accs, err}
		}()
	}
	out := map[string][]Account{}
	var errs []error
	for range e.cfg.Targets {
		x := <-ch
		if x.err != nil {
			errs = append(errs, fmt.Errorf("iam: import-all (target=%s): %w", x.name, x.err))
			continue
		}
		out[x.name] = x.accs
	}
	return out, errors.Join(errs...)
}

// Reconcile runs a full IST-SOLL comparison over every person and target,
// stores the deviation report (not in dry run) and applies the plan.
func (e *Engine) Reconcile(ctx context.Context, ro RunOptions) (*RunResult, error) {
	defer e.observe("reconcile", time.Now())
	ist, err := e.ImportIST(ctx)
	if err != nil {
		e.runs.WithLabelValues("reconcile", "error").Inc()
		return nil, err // never plan against a partial IST: a missing target would look like missing accounts
	}
	all, err := e.store.AllSourcePersons(ctx)
	if err != nil {
		return nil, err
	}
	if len(ro.Overlay) > 0 {
		kept := make([]Person, 0, len(all))
		for _, p := range all {
			if _, over := ro.Overlay[p.Source]; !over {
				kept = append(kept, p)
			}
		}
		for src, ps := range ro.Overlay {
			for _, p := range ps {
				p.Source = src
				kept = append(kept, p)
			}
		}
		all = kept
	}
	persons := MergePersons(all, e.cfg.SourceOrder)
	in, err := e.planInput(ctx, persons, ist, Origin{Kind: OriginReconciliation}, false)
	if err != nil {
		return nil, err
	}
	pl := ComputePlan(in)
	if !ro.DryRun {
		if err := e.store.SaveDeviations(ctx, pl.Deviations); err != nil {
			return nil, err
		}
	}
	rr := e.execute(ctx, pl, ro)
	e.runs.WithLabelValues("reconcile", "ok").Inc()
	return rr, nil
}

// SyncPerson recomputes one person and applies the result: the event-driven
// path. The IST is read per correlation value where the connector supports
// AccountLookup.
func (e *Engine) SyncPerson(ctx context.Context, id string, origin Origin, ro RunOptions) (*RunResult, error) {
	defer e.observe("person", time.Now())
	lk := e.personLock(id)
	lk.Lock()
	defer lk.Unlock()
	contribs, err := e.store.PersonContributions(ctx, id)
	if err != nil {
		return nil, err
	}
	if len(contribs) == 0 {
		return nil, fmt.Errorf("%w: person (id=%s)", ErrNotFound, id)
	}
	persons := MergePersons(contribs, e.cfg.SourceOrder)
	p := &persons[0]
	ist := map[string][]Account{}
	for _, t := range e.cfg.Targets {
		key := p.Field(t.corrField())
		if key == "" {
			continue
		}
		c := e.conns[t.Name]
		var accs []Account
		if lu, ok := c.(AccountLookup); ok {
			accs, err = lu.Lookup(ctx, key)
		} else {
			var all []Account
			all, err = c.ImportAll(ctx)
			for _, a := range all {
				if a.Key == key {
					accs = append(accs, a)
				}
			}
		}
		if err != nil {
			e.runs.WithLabelValues("person", "error").Inc()
			return nil, fmt.Errorf("iam: read account (target=%s person=%s): %w", t.Name, id, err)
		}
		ist[t.Name] = accs
	}
	in, err := e.planInput(ctx, persons, ist, origin, true)
	if err != nil {
		return nil, err
	}
	rr := e.execute(ctx, ComputePlan(in), ro)
	e.runs.WithLabelValues("person", "ok").Inc()
	return rr, nil
}

// observe records a run's wall-clock duration (real time, not the injected
// clock: this is a performance metric).
func (e *Engine) observe(kind string, start time.Time) {
	e.latency.WithLabelValues(kind).Observe(time.Since(start).Seconds())
}

func (e *Engine) personLock(id string) *sync.Mutex {
	e.pmu.Lock()
	defer e.pmu.Unlock()
	m := e.plocks[id]
	if m == nil {
		m = &sync.Mutex{}
		e.plocks[id] = m
	}
	return m
}

// BulkThreshold is the number of changed persons in one import above which
// the engine runs one full reconciliation instead of per-person syncs.
const BulkThreshold = 256

// Notify queues persons for event-driven propagation by Run. It never
// blocks: when the queue is full a full reconciliation is requested
// instead, so no change is lost.
func (e *Engine) Notify(ids ...string) {
	for _, id := range ids {
		select {
		case e.queue <- id:
		default:
			e.log.Warn("iam: event queue full; full reconciliation requested", "person", id)
			e.requestReconcile()
			return
		}
	}
}

func (e *Engine) requestReconcile() {
	select {
	case e.bulk <- struct{}{}:
	default: // already requested
	}
}

// Run consumes queued person events and runs a full reconciliation every
// ReconcileEvery (and when a bulk import or a queue overflow asks for one).
// A reconciliation runs in its own goroutine, at most one at a time, so
// person events (a leaver!) keep being applied while a long reconciliation
// is under way; both paths are idempotent, so an action that both plan
// ends as "no change" for the second. Run returns when ctx is cancelled,
// after in-flight work has finished.
func (e *Engine) Run(ctx context.Context) error {
	var tick <-chan time.Time
	if e.cfg.ReconcileEvery > 0 {
		t := time.NewTicker(e.cfg.ReconcileEvery)
		defer t.Stop()
		tick = t.C
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	running := make(chan struct{}, 1) // holds a token while a reconciliation runs
	var pending atomic.Bool
	startReconcile := func() {
		select {
		case running <- struct{}{}:
		default:
			pending.Store(true) // one more run after the current one
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.Reconcile(ctx, RunOptions{Actor: "engine"}); err != nil && ctx.Err() == nil {
				e.log.Error("iam: reconciliation failed", "err", err)
			}
			<-running
			if pending.Swap(false) {
				e.requestReconcile()
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case id := <-e.queue:
			batch := map[string]bool{id: true}
		drain:
			for {
				select {
				case more := <-e.queue:
					batch[more] = true
				default:
					break drain
				}
			}
			for _, pid := range sortedKeys(batch) {
				if _, err := e.SyncPerson(ctx, pid, Origin{Kind: OriginPersonChange}, RunOptions{Actor: "engine"}); err != nil && ctx.Err() == nil {
					e.log.Error("iam: person sync failed", "person", pid, "err", err)
				}
			}
		case <-e.bulk:
			startReconcile()
		case <-tick:
			startReconcile()
		}
	}
}

// execute applies thresholds and the plan. Targets run concurrently; within
// a target, one person's actions run in order and persons run concurrently
// up to the connector's concurrency limit.
func (e *Engine) execute(ctx context.Context, pl *Plan, ro RunOptions) *RunResult {
	rr := &RunResult{DryRun: ro.DryRun, Plan: pl}
	run, blocked, exceeded := ApplyThresholds(pl.Actions, e.cfg.OutputThresholds, ro.Allow)
	rr.Blocked, rr.Exceeded = blocked, exceeded
	actor := ro.Actor
	if actor == "" {
		actor = "engine"
	}
	if len(blocked) > 0 && !ro.DryRun {
		_ = e.store.Audit(ctx, AuditEvent{At: e.now(), Actor: actor, Action: "plan-blocked", Outcome: "blocked",
			Detail: fmt.Sprintf("output threshold exceeded for %v: %d actions held back", exceeded, len(blocked))})
	}
	type seqKey struct{ target, owner string }
	var order []seqKey
	seqs := map[seqKey][]Action{}
	for _, a := range run {
		owner := a.PersonID
		if owner == "" {
			owner = "ref:" + a.Ref
		}
		k := seqKey{a.Target, owner}
		if _, ok := seqs[k]; !ok {
			order = append(order, k)
		}
		seqs[k] = append(seqs[k], a)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, k := range order {
		sem := e.sems[k.target]
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			outs := e.runSequence(ctx, seqs[k], ro.DryRun, actor)
			mu.Lock()
			rr.Outcomes = append(rr.Outcomes, outs...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.SliceStable(rr.Outcomes, func(i, j int) bool {
		a, b := &rr.Outcomes[i].Action, &rr.Outcomes[j].Action
		if a.Target != b.Target {
			return a.Target < b.Target
		}
		if a.PersonID != b.PersonID {
			return a.PersonID < b.PersonID
		}
		return actionRank(a.Type) < actionRank(b.Type)
	})
	return rr
}

func (e *Engine) runSequence(ctx context.Context, acts []Action, dryRun bool, actor string) []Outcome {
	var outs []Outcome
	ref := ""
	dryCreated := false
	for _, a := range acts {
		if a.Ref == "" {
			a.Ref = ref
		}
		if dryCreated {
			// The account exists only in the preview: nothing to read back.
			outs = append(outs, Outcome{Action: a, Result: Result{Ref: ref, Audit: []string{"after the create (preview)"}}, Attempts: 0})
			continue
		}
		o := e.apply(ctx, a, dryRun, actor)
		if a.Type == ActCreate {
			if o.Err != "" {
				// nothing else can run for this account
				outs = append(outs, o)
				break
			}
			ref = o.Result.Ref
			dryCreated = dryRun && !o.Result.Correlated
		}
		outs = append(outs, o)
	}
	return outs
}

func (e *Engine) apply(ctx context.Context, a Action, dryRun bool, actor string) Outcome {
	c := e.conns[a.Target]
	req := AccountRequest{Ref: a.Ref, Key: a.Key, Person: a.Person, Attributes: a.Attributes, Enabled: a.Enabled, Origin: a.Origin, Reason: a.Reason, DryRun: dryRun}
	if req.Reason == "" {
		req.Reason = a.Origin.String()
	}
	o := Outcome{Action: a}
	var err error
	for attempt := 1; attempt <= e.cfg.RetryAttempts; attempt++ {
		o.Attempts = attempt
		o.Result, err = e.call(ctx, c, a, req)
		if err == nil || !errors.Is(err, ErrTransient) || attempt == e.cfg.RetryAttempts {
			break
		}
		d := e.cfg.RetryBase << (attempt - 1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			err = errors.Join(err, ctx.Err())
			attempt = e.cfg.RetryAttempts
		case <-t.C:
		}
	}
	outcome := "ok"
	switch {
	case err != nil:
		o.Err = err.Error()
		outcome = "failed"
	case o.Result.NoChange:
		outcome = "nochange"
	}
	e.actions.WithLabelValues(a.Target, string(a.Type), outcome).Inc()
	if dryRun {
		return o // preview writes nothing, not even audit or bookkeeping
	}
	now := e.now()
	if err != nil {
		_ = e.store.SetFailed(ctx, a.ID(), true, err.Error())
		e.log.Warn("iam: action failed", "type", a.Type, "target", a.Target, "person", a.PersonID, "err", err)
	} else {
		_ = e.store.SetFailed(ctx, a.ID(), false, "")
		ref := a.Ref
		if a.Type == ActCreate {
			ref = o.Result.Ref
		}
		switch a.Type {
		case ActDisable:
			_ = e.store.SetDisabledSince(ctx, a.Target, ref, now)
		case ActEnable, ActDelete:
			_ = e.store.SetDisabledSince(ctx, a.Target, ref, time.Time{})
		case ActCreate:
			if !a.Enabled {
				_ = e.store.SetDisabledSince(ctx, a.Target, ref, now)
			}
		}
	}
	detail := strings.Join(o.Result.Audit, "; ")
	if a.Permission != "" {
		detail = strings.TrimSpace("permission=" + a.Permission + " " + detail)
	}
	if o.Err != "" {
		detail = strings.TrimSpace(detail + " error: " + o.Err)
	}
	ref := a.Ref
	if ref == "" {
		ref = o.Result.Ref
	}
	_ = e.store.Audit(ctx, AuditEvent{At: now, Actor: actor, Action: string(a.Type), PersonID: a.PersonID, Target: a.Target, Ref: ref,
		Origin: a.Origin.String(), Detail: detail, Outcome: outcome})
	return o
}

func (e *Engine) call(ctx context.Context, c Connector, a Action, req AccountRequest) (Result, error) {
	switch a.Type {
	case ActCreate:
		return c.CreateOrCorrelate(ctx, req)
	case ActUpdate:
		return c.Update(ctx, req)
	case ActEnable:
		return c.Enable(ctx, req)
	case ActDisable:
		return c.Disable(ctx, req)
	case ActDelete:
		if c.Capabilities().NoDelete {
			return Result{}, fmt.Errorf("%w: delete (target=%s)", ErrUnsupported, a.Target)
		}
		return c.Delete(ctx, req)
	case ActGrant:
		return c.Grant(ctx, req, a.Permission)
	case ActRevoke:
		return c.Revoke(ctx, req, a.Permission)
	}
	return Result{}, fmt.Errorf("%w: action type (type=%s)", ErrInvalid, a.Type)
}

// AddGrant validates, stores and audits a manual grant, then propagates it.
func (e *Engine) AddGrant(ctx context.Context, g Grant) (Grant, error) {
	now := e.now()
	if g.ID == "" {
		g.ID = e.newID()
	}
	g.CreatedAt = now
	if err := g.Validate(now); err != nil {
		return Grant{}, err
	}
	if _, ok := e.conns[g.Entitlement.Target]; !ok {
		return Grant{}, fmt.Errorf("%w: unknown target (target=%s)", ErrInvalid, g.Entitlement.Target)
	}
	contribs, err := e.store.PersonContributions(ctx, g.PersonID)
	if err != nil {
		return Grant{}, err
	}
	if len(contribs) == 0 {
		return Grant{}, fmt.Errorf("%w: person (id=%s)", ErrNotFound, g.PersonID)
	}
	if err := e.store.AddGrant(ctx, g); err != nil {
		return Grant{}, err
	}
	e.Notify(g.PersonID)
	return g, e.store.Audit(ctx, AuditEvent{At: now, Actor: g.By, Action: "grant-manual", PersonID: g.PersonID, Target: g.Entitlement.Target,
		Origin: string(OriginManualGrant) + ":" + g.ID, Detail: fmt.Sprintf("entitlement=%s until=%s reason=%s", g.Entitlement, g.Until.Format(time.DateOnly), g.Reason), Outcome: "ok"})
}

// AddExclusion freezes a person and audits it.
func (e *Engine) AddExclusion(ctx context.Context, x Exclusion) error {
	if x.PersonID == "" || strings.TrimSpace(x.Reason) == "" || x.By == "" {
		return fmt.Errorf("%w: exclusion needs person, reason and administrator", ErrInvalid)
	}
	if err := e.store.AddExclusion(ctx, x); err != nil {
		return err
	}
	return e.store.Audit(ctx, AuditEvent{At: e.now(), Actor: x.By, Action: "exclude", PersonID: x.PersonID, Detail: x.Reason, Outcome: "ok"})
}

// Resolve records an administrator's resolution of a deviation.
func (e *Engine) Resolve(ctx context.Context, r Resolution) error {
	switch r.Action {
	case ResolveFix, ResolveAccept:
	case ResolveExclude:
		if !r.Until.After(e.now()) {
			return fmt.Errorf("%w: exclude needs a future date (key=%s)", ErrInvalid, r.Key)
		}
	default:
		return fmt.Errorf("%w: resolution must be fix, accept or exclude (action=%s)", ErrInvalid, r.Action)
	}
	if r.Key == "" || r.By == "" {
		return fmt.Errorf("%w: resolution needs a deviation key and an administrator", ErrInvalid)
	}
	r.At = e.now()
	if err := e.store.AddResolution(ctx, r); err != nil {
		return err
	}
	return e.store.Audit(ctx, AuditEvent{At: r.At, Actor: r.By, Action: "resolve-" + string(r.Action), Detail: r.Key + " " + r.Note, Outcome: "ok"})
}

// DueReporter is an optional connector capability: items due for a periodic
// confirmation (the national directory's quarterly employment check).
type DueReporter interface {
	Due(ctx context.Context, now time.Time) ([]DueItem, error)
}

// Confirmer is an optional connector capability: record that a manager
// confirmed a person's employment (the directory's periodic confirmation).
type Confirmer interface {
	ConfirmEmployment(ctx context.Context, key string) error
}

// DueItem is one confirmation that is due.
type DueItem struct {
	Target   string    `json:"target"`
	Ref      string    `json:"ref"`
	PersonID string    `json:"personId,omitempty"`
	DueAt    time.Time `json:"dueAt"`
	What     string    `json:"what"`
}

// Report is the deviation report.
type Report struct {
	At         time.Time       `json:"at"`
	Deviations []Deviation     `json:"deviations"`
	Blocked    []BlockedPerson `json:"blocked"`
	Pending    []PendingImport `json:"pendingImports"`
	Due        []DueItem       `json:"due"`
}

// Report assembles the deviation report from the last reconciliation,
// attestation campaigns, blocked persons, pending imports and due lists.
func (e *Engine) Report(ctx context.Context) (*Report, error) {
	now := e.now()
	ds, err := e.store.Deviations(ctx)
	if err != nil {
		return nil, err
	}
	cs, err := e.store.Campaigns(ctx)
	if err != nil {
		return nil, err
	}
	res, err := e.store.Resolutions(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range attestationDeviations(cs, now) {
		if r, ok := res[d.Key]; ok {
			rr := r
			d.Resolution = &rr
			if r.Suppresses(now) {
				continue
			}
		}
		ds = append(ds, d)
	}
	bl, err := e.store.Blocked(ctx)
	if err != nil {
		return nil, err
	}
	pend, err := e.store.PendingImports(ctx)
	if err != nil {
		return nil, err
	}
	for i := range pend {
		pend[i].Persons = nil // the report lists the import, not its payload
	}
	rep := &Report{At: now, Deviations: append([]Deviation{}, ds...), Blocked: append([]BlockedPerson{}, bl...), Pending: append([]PendingImport{}, pend...), Due: []DueItem{}}
	for _, t := range e.cfg.Targets {
		if dr, ok := e.conns[t.Name].(DueReporter); ok {
			due, err := dr.Due(ctx, now)
			if err != nil {
				return nil, fmt.Errorf("iam: due list (target=%s): %w", t.Name, err)
			}
			rep.Due = append(rep.Due, due...)
		}
	}
	return rep, nil
}

// EndContracts ends a person's contracts in one source at `at` (a leaver
// event that carries only the person's ID) and propagates.
func (e *Engine) EndContracts(ctx context.Context, source, id string, at time.Time, actor string) (*ImportResult, error) {
	ps, err := e.store.SourcePersons(ctx, source)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if p.ID != id || p.Removed {
			continue
		}
		p.Contracts = append([]Contract(nil), p.Contracts...)
		for i := range p.Contracts {
			c := &p.Contracts[i]
			if c.End.IsZero() || c.End.After(at) {
				c.End = at
			}
			if c.Start.After(at) {
				c.Start = at
			}
		}
		return e.UpsertPerson(ctx, source, p, actor)
	}
	return nil, fmt.Errorf("%w: person in source (source=%s id=%s)", ErrNotFound, source, id)
}
