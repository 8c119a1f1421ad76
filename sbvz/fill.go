package sbvz

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// FillClient is what Fill needs from a Client.
type FillClient interface {
	Lookup(ctx context.Context, q Query) (*Result, error)
	Verify(ctx context.Context, q Query) (*Result, error)
	CreateAppointment(ctx context.Context, expected int, description string) (string, error)
	DeleteAppointment(ctx context.Context, id string) error
}

var _ FillClient = (*Client)(nil)

// Errors of the initial fill.
var (
	// ErrInput is returned for an unusable input CSV (nothing is sent).
	ErrInput = errors.New("sbvz: fill input")
	// ErrState is returned for a journal that does not belong to the input or
	// is damaged beyond its last line.
	ErrState = errors.New("sbvz: fill state")
	// ErrUnfinished is returned when rows remain unanswered (transient errors);
	// run the fill again to retry exactly those rows.
	ErrUnfinished = errors.New("sbvz: fill unfinished")
)

// FillConfig configures one run of the initial fill.
type FillConfig struct {
	InPath, OutPath string
	// StatePath is the journal; default OutPath + ".state".
	StatePath string
	// Rate is the maximum number of SBV-Z questions per second; default 5.
	Rate float64
	// Appointment makes (once) and removes (at the end) the initial-fill
	// afspraak ([P]).
	Appointment bool
	// Workers is the number of questions in flight at once; default 1. The
	// rate limit holds across workers.
	Workers int
	// Attempts per row for transient errors (network, timeout, 5xx); default 3.
	Attempts int
	// Backoff between attempts; default 2s (doubling).
	Backoff time.Duration
	// Progress receives the progress display and the summary (nil: none).
	Progress io.Writer
	// Terminal draws a redrawn progress bar instead of periodic lines.
	Terminal bool
	// ProgressEvery is the interval of plain progress lines; default 10s.
	ProgressEvery time.Duration
	Now           func() time.Time
	Logger        *slog.Logger
}

// FillSummary reports one run.
type FillSummary struct {
	Total      int            // rows in the input
	Resumed    int            // rows already finished by an earlier run (not asked again)
	Asked      int            // rows asked in this run
	Counts     map[string]int // finished rows by status (G, A, F, invalid, fault, protocol)
	Unfinished int            // rows left for a next run
	Duration   time.Duration
	OutPath    string
}

// Row statuses in the journal and the output.
const (
	StatusInvalid    = "invalid"    // refused before sending (eleven-test, search path, format)
	StatusFault      = "fault"      // soap:Client fault: the question itself was refused
	StatusProtocol   = "protocol"   // answer broke the protocol (wrong LokaalKenmerk, other BSN, bad XML)
	StatusUnfinished = "unfinished" // not answered yet (output only)
)

// fillRow is one input row.
type fillRow struct {
	line int
	id   string
	q    Query
	err  error // parse error: invalid row
}

// journalEntry is one line of the state file.
type journalEntry struct {
	Kind        string   `json:"kind"` // header, afspraak, afspraak-removed, row
	InputSHA256 string   `json:"input_sha256,omitempty"`
	Afspraak    string   `json:"afspraak,omitempty"`
	ID          string   `json:"id,omitempty"`
	Status      string   `json:"status,omitempty"`
	BSN         string   `json:"bsn,omitempty"`
	Codes       []string `json:"codes,omitempty"`
	Deviating   []string `json:"deviating,omitempty"`
	Secret      bool     `json:"secret,omitempty"`
	Deceased    string   `json:"deceased,omitempty"`
	InOnderzoek bool     `json:"in_onderzoek,omitempty"`
	Suspension  string   `json:"suspension,omitempty"`
	Message     string   `json:"message,omitempty"`
	At          string   `json:"at,omitempty"`
}

// Fill runs (or resumes) the initial fill. Every finished row is appended to
// the journal and fsync'ed before the next question, so a crash or kill -9
// never makes SBV-Z answer a finished row twice; on restart rows in the
// journal are skipped. The output CSV is written from the journal (temp file,
// fsync, rename), so it is never torn.
func Fill(ctx context.Context, cfg FillConfig, client FillClient) (*FillSummary, error) {
	if cfg.StatePath == "" {
		cfg.StatePath = cfg.OutPath + ".state"
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 5
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.Workers > 64 {
		return nil, fmt.Errorf("%w: at most 64 workers", ErrInput)
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 3
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 2 * time.Second
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.InPath == "" || cfg.OutPath == "" {
		return nil, fmt.Errorf("%w: --in and --out are required", ErrInput)
	}
	start := cfg.Now()
	raw, err := os.ReadFile(cfg.InPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInput, err)
	}
	sum := sha256.Sum256(raw)
	inputHash := hex.EncodeToString(sum[:])
	rows, err := readFillCSV(raw)
	if err != nil {
		return nil, err
	}
	j, done, err := openJournal(cfg.StatePath, inputHash)
	if err != nil {
		return nil, err
	}
	defer j.close()

	s := &FillSummary{Total: len(rows), Counts: map[string]int{}, OutPath: cfg.OutPath}
	for _, r := range rows {
		if e, ok := done.rows[r.id]; ok {
			s.Resumed++
			s.Counts[e.Status]++
		}
	}
	todo := s.Total - s.Resumed
	prog := newProgress(cfg, todo, start)
	if cfg.Appointment && done.afspraak == "" && todo > 0 {
		id, err := client.CreateAppointment(ctx, todo, "aortagw initiële vulling")
		if err != nil {
			return nil, fmt.Errorf("sbvz: fill: create afspraak: %w", err)
		}
		if err := j.append(journalEntry{Kind: "afspraak", Afspraak: id}); err != nil {
			return nil, err
		}
		done.afspraak = id
	}
	lim := rate.NewLimiter(rate.Limit(cfg.Rate), 1)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu        sync.Mutex // guards s, done.rows, j, prog, journalEr
		journalEr error
		wg        sync.WaitGroup
		jobs      = make(chan fillRow)
	)
	var pending []fillRow // computed before the workers write done.rows
	for _, r := range rows {
		if _, ok := done.rows[r.id]; !ok {
			pending = append(pending, r)
		}
	}
	for range cfg.Workers {
		wg.Go(func() {
			for r := range jobs {
				e, finished := fillOne(runCtx, cfg, client, lim, r)
				mu.Lock()
				if finished && journalEr == nil {
					e.Kind, e.ID, e.At = "row", r.id, cfg.Now().UTC().Format(time.RFC3339)
					if err := j.append(e); err != nil {
						journalEr = err
						cancel() // stop asking: an answer we cannot record must not be asked for
					} else {
						done.rows[r.id] = e
						if e.Status != StatusInvalid {
							s.Asked++
						}
						s.Counts[e.Status]++
					}
				}
				prog.step(s, e.Status)
				mu.Unlock()
			}
		})
	}
feed:
	for _, r := range pending {
		select {
		case jobs <- r:
		case <-runCtx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if journalEr != nil {
		return nil, journalEr
	}
	s.Unfinished = s.Total - len(done.rows)
	if s.Unfinished == 0 && done.afspraak != "" && !done.afspraakRemoved {
		if err := client.DeleteAppointment(ctx, done.afspraak); err != nil {
			cfg.Logger.Warn("sbvz fill: afspraak not removed", "afspraak", done.afspraak, "error", err)
		} else if err := j.append(journalEntry{Kind: "afspraak-removed", Afspraak: done.afspraak}); err != nil {
			return nil, err
		}
	}
	if err := writeFillOutput(cfg.OutPath, rows, done.rows); err != nil {
		return nil, err
	}
	s.Duration = cfg.Now().Sub(start)
	prog.finish(s)
	if err := ctx.Err(); err != nil {
		return s, fmt.Errorf("sbvz: fill interrupted (unfinished=%d): run again to resume: %w", s.Unfinished, err)
	}
	if s.Unfinished > 0 {
		return s, fmt.Errorf("%w (rows=%d): run again to retry them", ErrUnfinished, s.Unfinished)
	}
	return s, nil
}

// fillOne asks one row; finished=false means a transient failure (retry later).
func fillOne(ctx context.Context, cfg FillConfig, c FillClient, lim *rate.Limiter, r fillRow) (journalEntry, bool) {
	if r.err != nil {
		return journalEntry{Status: StatusInvalid, Message: r.err.Error()}, true
	}
	verify := r.q.Person.BSN != ""
	if _, err := r.q.Validate(verify); err != nil {
		return journalEntry{Status: StatusInvalid, Message: err.Error()}, true
	}
	backoff := cfg.Backoff
	for attempt := 1; ; attempt++ {
		if err := lim.Wait(ctx); err != nil {
			return journalEntry{}, false
		}
		var res *Result
		var err error
		if verify {
			res, err = c.Verify(ctx, r.q)
		} else {
			res, err = c.Lookup(ctx, r.q)
		}
		if err == nil {
			e := journalEntry{Status: string(res.Outcome), BSN: res.BSN, Codes: res.Codes(), Deviating: res.Deviating(),
				Secret: res.Secret, InOnderzoek: res.InOnderzoek(), Suspension: res.SuspensionReason}
			if res.Deceased != nil {
				e.Deceased = res.Deceased.String()
			}
			if len(res.Messages) > 0 {
				e.Message = res.Messages[0].Text
			}
			return e, true
		}
		var f *FaultError
		switch {
		case errors.As(err, &f) && f.Client():
			return journalEntry{Status: StatusFault, Message: err.Error()}, true
		case errors.Is(err, ErrProtocol):
			return journalEntry{Status: StatusProtocol, Message: err.Error()}, true
		case errors.Is(err, ErrInvalidQuery), errors.Is(err, ErrInvalidBSN), errors.Is(err, ErrSearchPath):
			return journalEntry{Status: StatusInvalid, Message: err.Error()}, true
		}
		cfg.Logger.Warn("sbvz fill: transient error", "row", r.id, "attempt", attempt, "error", err)
		if attempt >= cfg.Attempts || ctx.Err() != nil {
			return journalEntry{}, false
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return journalEntry{}, false
		case <-t.C:
		}
		backoff *= 2
	}
}

// ---- journal ----

type journal struct {
	f *os.File
}

type journalState struct {
	rows            map[string]journalEntry
	afspraak        string
	afspraakRemoved bool
}

// openJournal opens (or creates) the state file, drops a torn last line and
// checks it belongs to this input.
func openJournal(path, inputHash string) (*journal, *journalState, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrState, err)
	}
	st := &journalState{rows: map[string]journalEntry{}}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%w: %w", ErrState, err)
	}
	good := 0
	header := false
	for off := 0; off < len(data); {
		nl := bytes.IndexByte(data[off:], '\n')
		if nl < 0 {
			break // torn last line: the row was not finished
		}
		line := data[off : off+nl]
		var e journalEntry
		if err := json.Unmarshal(line, &e); err != nil {
			if off+nl+1 == len(data) {
				break
			}
			f.Close()
			return nil, nil, fmt.Errorf("%w: damaged line at byte %d of %s", ErrState, off, path)
		}
		switch e.Kind {
		case "header":
			if e.InputSHA256 != inputHash {
				f.Close()
				return nil, nil, fmt.Errorf("%w: %s belongs to another input file (use a new --state)", ErrState, path)
			}
			header = true
		case "afspraak":
			st.afspraak = e.Afspraak
		case "afspraak-removed":
			st.afspraakRemoved = true
		case "row":
			st.rows[e.ID] = e
		}
		off += nl + 1
		good = off
	}
	if good != len(data) {
		if err := f.Truncate(int64(good)); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("%w: %w", ErrState, err)
		}
	}
	if _, err := f.Seek(int64(good), io.SeekStart); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%w: %w", ErrState, err)
	}
	j := &journal{f: f}
	if !header {
		if good != 0 {
			f.Close()
			return nil, nil, fmt.Errorf("%w: %s has no header", ErrState, path)
		}
		if err := j.append(journalEntry{Kind: "header", InputSHA256: inputHash}); err != nil {
			f.Close()
			return nil, nil, err
		}
		if err := syncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	return j, st, nil
}

func (j *journal) append(e journalEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	b = append(b, '\n')
	if _, err := j.f.Write(b); err != nil {
		return fmt.Errorf("%w: write: %w", ErrState, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("%w: fsync: %w", ErrState, err)
	}
	return nil
}

func (j *journal) close() { _ = j.f.Close() }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("%w: fsync dir: %w", ErrState, err)
	}
	return nil
}

// ---- CSV ----

// FillColumns are the input columns (header row, any order, case-insensitive;
// comma or semicolon separated). Only id is mandatory.
var FillColumns = []string{"id", "bsn", "voornamen", "voorletter", "voorvoegsel", "geslachtsnaam", "geboortedatum", "geslacht",
	"postcode", "huisnummer", "huisletter", "toevoeging"}

const maxFillRows = 2_000_000

func readFillCSV(raw []byte) ([]fillRow, error) {
	raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf"))
	firstLine, _, _ := bytes.Cut(raw, []byte("\n"))
	r := csv.NewReader(bytes.NewReader(raw))
	if bytes.Count(firstLine, []byte(";")) > bytes.Count(firstLine, []byte(",")) {
		r.Comma = ';'
	}
	r.ReuseRecord = false
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrInput, err)
	}
	col := map[string]int{}
	known := map[string]bool{}
	for _, c := range FillColumns {
		known[c] = true
	}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		if !known[h] {
			return nil, fmt.Errorf("%w: unknown column %q (known: %s)", ErrInput, clip(h), strings.Join(FillColumns, ","))
		}
		if _, dup := col[h]; dup {
			return nil, fmt.Errorf("%w: duplicate column %q", ErrInput, h)
		}
		col[h] = i
	}
	if _, ok := col["id"]; !ok {
		return nil, fmt.Errorf("%w: column id is required", ErrInput)
	}
	var rows []fillRow
	ids := map[string]int{}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInput, err)
		}
		line, _ := r.FieldPos(0)
		get := func(name string) string {
			if i, ok := col[name]; ok {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		row := fillRow{line: line, id: get("id")}
		if row.id == "" || len(row.id) > 64 {
			return nil, fmt.Errorf("%w: line %d: id must be 1-64 characters", ErrInput, line)
		}
		if prev, dup := ids[row.id]; dup {
			return nil, fmt.Errorf("%w: line %d: id %q already on line %d", ErrInput, line, clip(row.id), prev)
		}
		ids[row.id] = line
		if len(rows) >= maxFillRows {
			return nil, fmt.Errorf("%w: more than %d rows", ErrInput, maxFillRows)
		}
		row.q = Query{
			Person: Person{BSN: get("bsn"), GivenNames: get("voornamen"), Initial: get("voorletter"), SurnamePrefix: get("voorvoegsel"),
				Surname: get("geslachtsnaam"), Sex: strings.ToUpper(get("geslacht"))},
			Address: Address{PostalCode: strings.ToUpper(strings.ReplaceAll(get("postcode"), " ", "")), HouseNumber: get("huisnummer"),
				HouseLetter: get("huisletter"), HouseNumberSuffix: get("toevoeging")},
		}
		row.q.Person.BirthDate, row.err = normaliseDate(get("geboortedatum"))
		rows = append(rows, row)
	}
	return rows, nil
}

// normaliseDate accepts yyyyMMdd, yyyy-MM-dd and dd-MM-yyyy.
func normaliseDate(s string) (string, error) {
	switch {
	case s == "":
		return "", nil
	case len(s) == 10 && s[4] == '-' && s[7] == '-':
		s = s[:4] + s[5:7] + s[8:]
	case len(s) == 10 && s[2] == '-' && s[5] == '-':
		s = s[6:] + s[3:5] + s[:2]
	}
	if _, err := ParseDate(s); err != nil {
		return "", err
	}
	return s, nil
}

// writeFillOutput writes the output CSV from the journal, in input order.
func writeFillOutput(path string, rows []fillRow, done map[string]journalEntry) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".sbvz-fill-*.csv")
	if err != nil {
		return fmt.Errorf("sbvz: fill output: %w", err)
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriter(tmp)
	w := csv.NewWriter(bw)
	_ = w.Write([]string{"id", "status", "bsn", "codes", "afwijkend", "geheim", "overleden", "in_onderzoek", "opschorting", "melding"})
	for _, r := range rows {
		e, ok := done[r.id]
		if !ok {
			_ = w.Write([]string{r.id, StatusUnfinished, "", "", "", "", "", "", "", ""})
			continue
		}
		_ = w.Write([]string{r.id, e.Status, e.BSN, strings.Join(e.Codes, " "), strings.Join(e.Deviating, " "),
			yesNo(e.Secret), e.Deceased, yesNo(e.InOnderzoek), e.Suspension, csvSafe(e.Message)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		tmp.Close()
		return fmt.Errorf("sbvz: fill output: %w", err)
	}
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("sbvz: fill output: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sbvz: fill output: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("sbvz: fill output: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("sbvz: fill output: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// csvSafe keeps spreadsheet formula injection out of the output.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "ja"
	}
	return "nee"
}

// ---- progress ----

type progress struct {
	cfg       FillConfig
	todo      int
	n         int
	start     time.Time
	lastDraw  time.Time
	lastPrint time.Time
}

func newProgress(cfg FillConfig, todo int, start time.Time) *progress {
	return &progress{cfg: cfg, todo: todo, start: start, lastPrint: start}
}

func (p *progress) step(s *FillSummary, _ string) {
	p.n++
	if p.cfg.Progress == nil {
		return
	}
	now := p.cfg.Now()
	elapsed := now.Sub(p.start)
	var perSec float64
	if elapsed > 0 {
		perSec = float64(p.n) / elapsed.Seconds()
	}
	eta := "?"
	if perSec > 0 {
		eta = (time.Duration(float64(p.todo-p.n)/perSec) * time.Second).Round(time.Second).String()
	}
	pct := 100.0
	if p.todo > 0 {
		pct = 100 * float64(p.n) / float64(p.todo)
	}
	if p.cfg.Terminal {
		if now.Sub(p.lastDraw) < 100*time.Millisecond && p.n < p.todo {
			return
		}
		p.lastDraw = now
		const width = 30
		filled := int(pct / 100 * width)
		bar := strings.Repeat("=", filled) + strings.Repeat(" ", width-filled)
		fmt.Fprintf(p.cfg.Progress, "\r[%s] %d/%d %5.1f%% %.1f/s ETA %s ", bar, p.n, p.todo, pct, perSec, eta)
		return
	}
	if now.Sub(p.lastPrint) >= p.cfg.ProgressEvery || p.n == p.todo {
		p.lastPrint = now
		fmt.Fprintf(p.cfg.Progress, "sbvz fill: %d/%d (%.1f%%) %.1f/s ETA %s\n", p.n, p.todo, pct, perSec, eta)
	}
}

func (p *progress) finish(s *FillSummary) {
	if p.cfg.Progress == nil {
		return
	}
	if p.cfg.Terminal {
		fmt.Fprintln(p.cfg.Progress)
	}
	fmt.Fprint(p.cfg.Progress, s.String())
}

// String renders the summary for people.
func (s *FillSummary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sbvz fill summary: %d rows, %d resumed from the journal, %d asked now, %d unfinished, %s\n",
		s.Total, s.Resumed, s.Asked, s.Unfinished, s.Duration.Round(time.Millisecond))
	keys := make([]string, 0, len(s.Counts))
	for k := range s.Counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	label := map[string]string{"G": "G (gevonden)", "A": "A (afwijkend)", "F": "F (fout/niet gevonden)", StatusInvalid: "invalid (refused before sending)",
		StatusFault: "fault (soap:Client)", StatusProtocol: "protocol (answer refused)"}
	for _, k := range keys {
		l := label[k]
		if l == "" {
			l = k
		}
		fmt.Fprintf(&b, "  %-34s %d\n", l, s.Counts[k])
	}
	fmt.Fprintf(&b, "  output: %s\n", s.OutPath)
	return b.String()
}
