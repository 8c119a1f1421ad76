package gateway

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestScheduleNext(t *testing.T) {
	ams, err := time.LoadLocation("Europe/Amsterdam")
	require.NoError(t, err)
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, ams)
		require.NoError(t, err)
		return tm
	}
	tests := []struct {
		name, expr, from, want string
	}{
		{name: "every minute", expr: "* * * * *", from: "2026-11-23 10:00", want: "2026-11-23 10:01"},
		{name: "daily at 07:30", expr: "30 7 * * *", from: "2026-11-23 10:00", want: "2026-11-24 07:30"},
		{name: "every 15 minutes", expr: "*/15 * * * *", from: "2026-11-23 10:07", want: "2026-11-23 10:15"},
		{name: "weekdays only", expr: "0 8 * * 1-5", from: "2026-11-27 09:00", want: "2026-11-30 08:00"}, // Fri -> Mon
		{name: "sunday as 7", expr: "0 8 * * 7", from: "2026-11-23 09:00", want: "2026-11-29 08:00"},
		{name: "dom or dow when both restricted", expr: "0 0 1 * 1", from: "2026-11-24 00:00", want: "2026-11-30 00:00"},
		{name: "list and range with step", expr: "5,10-20/5 12 * * *", from: "2026-11-23 12:06", want: "2026-11-23 12:10"},
		{name: "month rollover", expr: "0 0 1 1 *", from: "2026-11-23 00:00", want: "2027-01-01 00:00"},
		{name: "over spring DST gap", expr: "30 2 * * *", from: "2026-03-28 03:00", want: "2026-03-30 02:30"},
		{name: "never", expr: "0 0 30 2 *", from: "2026-11-23 00:00", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSchedule(tt.expr)
			require.NoError(t, err)
			got := s.Next(at(tt.from))
			if tt.want == "" {
				assert.True(t, got.IsZero(), got.String())
				return
			}
			assert.Equal(t, at(tt.want), got)
		})
	}
}

func TestScheduleRefused(t *testing.T) {
	for _, expr := range []string{"", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *",
		"* * * 13 *", "* * * * 8", "5-1 * * * *", "*/0 * * * *", "a * * * *", "1,,2 * * * *",
		"@daily", "-1 * * * *", "01 * * * *", "*/61 * * * *", "* * * JAN *"} {
		_, err := ParseSchedule(expr)
		assert.ErrorIs(t, err, ErrCron, expr)
	}
}

func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"* * * * *", "*/5 1-3 1,15 * 1-5", "0 0 30 2 *"} {
		f.Add(s)
	}
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, expr string) {
		s, err := ParseSchedule(expr)
		if err != nil {
			return
		}
		n := s.Next(from)
		if !n.IsZero() && !n.After(from) {
			t.Fatalf("Next(%v)=%v not after", from, n)
		}
	})
}
