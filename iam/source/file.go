// Package source holds iam's person sources: the HR file source (CSV or
// JSON, watched with fsnotify), the HR webhook (HMAC-signed or bearer
// authenticated joiner/mover/leaver events) and the staffing-platform REST
// source (OAuth2 client credentials, paging) with its strict simulator.
//
// Lifecycle: FileSource.Watch and Staffing.Poll own their goroutines and
// return after they exited once the context is cancelled. Parsers reject
// unknown columns/fields, oversized input and malformed dates: a file that
// does not parse changes nothing.
package source

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/aortagw/aortagw/iam"
)

// ErrParse is returned for a source file or event that does not parse.
var ErrParse = errors.New("iam/source: parse error")

// MaxFileBytes caps what a source file may hold.
const MaxFileBytes = 512 << 20

// Importer is the part of the engine a snapshot source feeds.
type Importer interface {
	Import(ctx context.Context, source string, persons []iam.Person, actor string) (*iam.ImportResult, error)
}

// csvColumns are the columns of the HR CSV format; one row per contract.
var csvColumns = []string{"id", "givenName", "familyName", "displayName", "email", "privateEmail", "employeeNumber", "uzi", "agb", "big",
	"roleCodes", "trained", "contractId", "start", "end", "function", "department", "location", "costCentre", "fte", "sequence", "manager"}

// ParseCSV reads the HR CSV format: a header naming a subset of csvColumns
// ("id" required), then one row per contract; rows of one person share the
// id and the person fields of the first row count. Dates are YYYY-MM-DD
// (or RFC 3339); an empty end means open-ended.
func ParseCSV(r io.Reader) ([]iam.Person, error) {
	cr := csv.NewReader(io.LimitReader(r, MaxFileBytes))
	cr.ReuseRecord = false
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%w: csv header: %v", ErrParse, err)
	}
	idx := map[string]int{}
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		if !slices.Contains(csvColumns, h) {
			return nil, fmt.Errorf("%w: unknown csv column (column=%q)", ErrParse, h)
		}
		if _, dup := idx[h]; dup {
			return nil, fmt.Errorf("%w: duplicate csv column (column=%q)", ErrParse, h)
		}
		idx[h] = i
	}
	if _, ok := idx["id"]; !ok {
		return nil, fmt.Errorf("%w: csv needs an id column", ErrParse)
	}
	var out []iam.Person
	pos := map[string]int{}
	line := 1
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line++
		if err != nil {
			return nil, fmt.Errorf("%w: csv (line=%d): %v", ErrParse, line, err)
		}
		get := func(col string) string {
			if i, ok := idx[col]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		id := get("id")
		if id == "" {
			return nil, fmt.Errorf("%w: csv row without id (line=%d)", ErrParse, line)
		}
		pi, seen := pos[id]
		if !seen {
			p := iam.Person{ID: id, GivenName: get("givenName"), FamilyName: get("familyName"), DisplayName: get("displayName"),
				Email: get("email"), PrivateEmail: get("privateEmail"), EmployeeNumber: get("employeeNumber"), UZI: get("uzi"),
				AGB: get("agb"), BIG: get("big")}
			if rc := get("roleCodes"); rc != "" {
				p.RoleCodes = strings.Split(rc, ";")
			}
			if tr := get("trained"); tr != "" {
				b, err := strconv.ParseBool(tr)
				if err != nil {
					return nil, fmt.Errorf("%w: trained must be true or false (line=%d)", ErrParse, line)
				}
				p.Trained = &b
			}
			out = append(out, p)
			pi = len(out) - 1
			pos[id] = pi
		}
		cid := get("contractId")
		if cid == "" && get("start") == "" {
			continue // a person row without contract
		}
		c := iam.Contract{ID: cid, Function: get("function"), Department: get("department"), Location: get("location"),
			CostCentre: get("costCentre"), Manager: get("manager")}
		if c.ID == "" {
			c.ID = fmt.Sprintf("%s-%d", id, len(out[pi].Contracts)+1)
		}
		if c.Start, err = parseDate(get("start")); err != nil || c.Start.IsZero() {
			return nil, fmt.Errorf("%w: contract start (line=%d value=%q)", ErrParse, line, get("start"))
		}
		if c.End, err = parseDate(get("end")); err != nil {
			return nil, fmt.Errorf("%w: contract end (line=%d value=%q)", ErrParse, line, get("end"))
		}
		if !c.End.IsZero() && c.End.Before(c.Start) {
			return nil, fmt.Errorf("%w: contract ends before it starts (line=%d)", ErrParse, line)
		}
		if v := get("fte"); v != "" {
			if c.FTE, err = strconv.ParseFloat(v, 64); err != nil || c.FTE < 0 || c.FTE > 2 {
				return nil, fmt.Errorf("%w: fte (line=%d value=%q)", ErrParse, line, v)
			}
		}
		if v := get("sequence"); v != "" {
			if c.Sequence, err = strconv.Atoi(v); err != nil {
				return nil, fmt.Errorf("%w: sequence (line=%d value=%q)", ErrParse, line, v)
			}
		}
		out[pi].Contracts = append(out[pi].Contracts, c)
	}
	return out, nil
}

// parseDate accepts YYYY-MM-DD (end of day is not implied: a contract that
// ends on a date runs through that whole day) or RFC 3339.
func parseDate(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Parse(time.RFC3339, s)
}

// endOfDay makes a date-only end inclusive.
func endOfDay(cs []iam.Contract) {
	for i := range cs {
		e := cs[i].End
		if !e.IsZero() && e.Hour() == 0 && e.Minute() == 0 && e.Second() == 0 && e.Nanosecond() == 0 {
			cs[i].End = e.Add(24*time.Hour - time.Nanosecond)
		}
	}
}

// ParseJSON reads a JSON array of persons (iam.Person's JSON form) and
// rejects unknown fields.
func ParseJSON(r io.Reader) ([]iam.Person, error) {
	dec := json.NewDecoder(io.LimitReader(r, MaxFileBytes))
	dec.DisallowUnknownFields()
	var ps []iam.Person
	if err := dec.Decode(&ps); err != nil {
		return nil, fmt.Errorf("%w: json: %v", ErrParse, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: json: trailing data", ErrParse)
	}
	for i := range ps {
		if ps[i].ID == "" {
			return nil, fmt.Errorf("%w: json person without id (index=%d)", ErrParse, i)
		}
		for _, c := range ps[i].Contracts {
			if c.Start.IsZero() || (!c.End.IsZero() && c.End.Before(c.Start)) {
				return nil, fmt.Errorf("%w: json contract dates (person=%s contract=%s)", ErrParse, ps[i].ID, c.ID)
			}
		}
	}
	return ps, nil
}

// ParseFile parses by extension (.csv or .json).
func ParseFile(path string) ([]iam.Person, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("iam/source: read (path=%s): %w", path, err)
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("%w: file too large (path=%s)", ErrParse, path)
	}
	var ps []iam.Person
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		ps, err = ParseCSV(bytes.NewReader(b))
	case ".json":
		ps, err = ParseJSON(bytes.NewReader(b))
	default:
		return nil, fmt.Errorf("%w: unknown file type (path=%s)", ErrParse, path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w (path=%s)", err, path)
	}
	for i := range ps {
		endOfDay(ps[i].Contracts)
	}
	return ps, nil
}

// FileSource is an HR export file, re-imported whenever it changes.
type FileSource struct {
	Name     string
	Path     string
	Debounce time.Duration // default 100ms
	Logger   *slog.Logger
}

// Load parses the file once and imports it.
func (f *FileSource) Load(ctx context.Context, imp Importer) (*iam.ImportResult, error) {
	ps, err := ParseFile(f.Path)
	if err != nil {
		return nil, err
	}
	return imp.Import(ctx, f.Name, ps, "source:"+f.Name)
}

// Watch imports the file now and again after every change. It watches the
// directory, so editors and exporters that write a temporary file and
// rename it over the original (atomic replace) are seen; events are
// debounced. A file that fails to parse or import is logged and changes
// nothing; the next change is tried again. Watch returns when ctx is
// cancelled, after its watcher goroutine has exited.
func (f *FileSource) Watch(ctx context.Context, imp Importer) error {
	log := f.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	deb := f.Debounce
	if deb <= 0 {
		deb = 100 * time.Millisecond
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("iam/source: watcher: %w", err)
	}
	defer w.Close()
	dir, base := filepath.Split(filepath.Clean(f.Path))
	if dir == "" {
		dir = "."
	}
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("iam/source: watch (dir=%s): %w", dir, err)
	}
	load := func() {
		if _, err := os.Stat(f.Path); err != nil {
			return // between remove and rename, or not there yet
		}
		if res, err := f.Load(ctx, imp); err != nil {
			log.Error("iam: source import failed", "source", f.Name, "err", err)
		} else {
			log.Info("iam: source imported", "source", f.Name, "added", len(res.Added), "changed", len(res.Changed), "removed", len(res.Removed), "blocked", len(res.Blocked))
		}
	}
	load()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if filepath.Base(ev.Name) != base || ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) == 0 {
				continue
			}
			timer.Reset(deb)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			log.Error("iam: watcher error", "source", f.Name, "err", err)
		case <-timer.C:
			load()
		}
	}
}
