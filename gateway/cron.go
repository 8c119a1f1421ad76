package gateway

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrCron is wrapped by every refused schedule expression.
var ErrCron = errors.New("gateway: invalid schedule")

// Schedule is a parsed 5-field cron expression: minute hour day-of-month
// month day-of-week. Fields take *, numbers, ranges a-b, steps */n and
// a-b/n, and comma lists; day-of-week 0-7 (0 and 7 are Sunday). As in Vixie
// cron, when both day fields are restricted a day matches if either does.
// No names, no @macros, no seconds: a strict, small parser.
type Schedule struct {
	min, hour, dom, month, dow uint64
	domStar, dowStar           bool
	expr                       string
}

// ParseSchedule parses a 5-field cron expression.
func ParseSchedule(expr string) (*Schedule, error) {
	f := strings.Fields(expr)
	if len(f) != 5 {
		return nil, fmt.Errorf("%w: want 5 fields (minute hour day-of-month month day-of-week), got %d (expr=%q)", ErrCron, len(f), expr)
	}
	s := &Schedule{expr: strings.Join(f, " ")}
	var err error
	if s.min, err = cronField(f[0], 0, 59); err != nil {
		return nil, fmt.Errorf("%w: minute: %v (expr=%q)", ErrCron, err, expr)
	}
	if s.hour, err = cronField(f[1], 0, 23); err != nil {
		return nil, fmt.Errorf("%w: hour: %v (expr=%q)", ErrCron, err, expr)
	}
	if s.dom, err = cronField(f[2], 1, 31); err != nil {
		return nil, fmt.Errorf("%w: day-of-month: %v (expr=%q)", ErrCron, err, expr)
	}
	if s.month, err = cronField(f[3], 1, 12); err != nil {
		return nil, fmt.Errorf("%w: month: %v (expr=%q)", ErrCron, err, expr)
	}
	if s.dow, err = cronField(f[4], 0, 7); err != nil {
		return nil, fmt.Errorf("%w: day-of-week: %v (expr=%q)", ErrCron, err, expr)
	}
	if s.dow&(1<<7) != 0 {
		s.dow |= 1
		s.dow &^= 1 << 7
	}
	s.domStar = strings.HasPrefix(f[2], "*")
	s.dowStar = strings.HasPrefix(f[4], "*")
	return s, nil
}

// String returns the normalised expression.
func (s *Schedule) String() string { return s.expr }

func cronField(f string, lo, hi int) (uint64, error) {
	var bits uint64
	for _, part := range strings.Split(f, ",") {
		if part == "" {
			return 0, errors.New("empty list element")
		}
		rng, stepStr, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepStr)
			if err != nil || n < 1 || n > hi-lo+1 || stepStr != strconv.Itoa(n) {
				return 0, fmt.Errorf("bad step %q", stepStr)
			}
			step = n
		}
		var a, b int
		switch {
		case rng == "*":
			a, b = lo, hi
		case strings.Contains(rng, "-"):
			as, bs, _ := strings.Cut(rng, "-")
			var err1, err2 error
			a, err1 = cronNum(as, lo, hi)
			b, err2 = cronNum(bs, lo, hi)
			if err1 != nil || err2 != nil {
				return 0, fmt.Errorf("bad range %q (allowed %d-%d)", rng, lo, hi)
			}
			if a > b {
				return 0, fmt.Errorf("range %q runs backwards", rng)
			}
		default:
			n, err := cronNum(rng, lo, hi)
			if err != nil {
				return 0, err
			}
			a, b = n, n
			if hasStep {
				b = hi // "5/15" means 5-hi/15
			}
		}
		for i := a; i <= b; i += step {
			bits |= 1 << uint(i)
		}
	}
	return bits, nil
}

func cronNum(s string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || s != strconv.Itoa(n) || n < lo || n > hi {
		return 0, fmt.Errorf("value %q out of range %d-%d", s, lo, hi)
	}
	return n, nil
}

func (s *Schedule) dayMatches(t time.Time) bool {
	dom := s.dom&(1<<uint(t.Day())) != 0
	dow := s.dow&(1<<uint(t.Weekday())) != 0
	if s.domStar || s.dowStar {
		return dom && dow
	}
	return dom || dow
}

// Next returns the first time strictly after t (truncated to the minute)
// that matches, in t's location. It gives the zero time when nothing matches
// within five years (for example "0 0 30 2 *").
func (s *Schedule) Next(t time.Time) time.Time {
	t = t.Truncate(time.Minute).Add(time.Minute)
	limit := t.AddDate(5, 0, 0)
	for t.Before(limit) {
		if s.month&(1<<uint(t.Month())) == 0 {
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, t.Location())
			continue
		}
		if !s.dayMatches(t) {
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, t.Location())
			continue
		}
		if s.hour&(1<<uint(t.Hour())) == 0 {
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, t.Location())
			continue
		}
		if s.min&(1<<uint(t.Minute())) == 0 {
			t = t.Add(time.Minute)
			continue
		}
		return t
	}
	return time.Time{}
}
