package campaign

import (
	"fmt"
	"slices"
	"time"
)

// QuietHours is a daily window of local wall-clock time in which nothing is
// sent: [Start, End), in minutes after midnight. Start > End is a window
// that crosses midnight (21:00 to 08:00).
type QuietHours struct {
	// Start is when the window opens, in minutes after midnight, in [0, 1440).
	Start int
	// End is when the window closes, in minutes after midnight, in [0, 1440).
	End int
}

// ParseQuietHours parses a window's start and end, each "HH:MM" on a 24-hour
// clock. A window whose start equals its end is an error (it would be
// either empty or the whole day).
func ParseQuietHours(start, end string) (*QuietHours, error) {
	s, err := parseClock(start)
	if err != nil {
		return nil, fmt.Errorf("quietHours start: %w", err)
	}
	e, err := parseClock(end)
	if err != nil {
		return nil, fmt.Errorf("quietHours end: %w", err)
	}
	if s == e {
		return nil, fmt.Errorf("quietHours start and end must differ (both %s)", start)
	}
	return &QuietHours{Start: s, End: e}, nil
}

// parseClock parses "HH:MM" (exactly two digits each) into minutes after
// midnight.
func parseClock(v string) (int, error) {
	if len(v) != 5 || v[2] != ':' || !isDigit(v[0]) || !isDigit(v[1]) || !isDigit(v[3]) || !isDigit(v[4]) {
		return 0, fmt.Errorf("%q is not HH:MM", v)
	}
	h := int(v[0]-'0')*10 + int(v[1]-'0')
	m := int(v[3]-'0')*10 + int(v[4]-'0')
	if h > 23 || m > 59 {
		return 0, fmt.Errorf("%q is not a time of day (00:00 to 23:59)", v)
	}
	return h*60 + m, nil
}

// isDigit reports whether c is an ASCII digit.
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// String returns the window as "HH:MM-HH:MM".
func (q *QuietHours) String() string {
	return fmt.Sprintf("%02d:%02d-%02d:%02d", q.Start/60, q.Start%60, q.End/60, q.End%60)
}

// Contains reports whether the wall clock of now in loc is inside the
// window.
func (q *QuietHours) Contains(now time.Time, loc *time.Location) bool {
	local := now.In(loc)
	m := local.Hour()*60 + local.Minute()
	if q.Start < q.End {
		return q.Start <= m && m < q.End
	}
	return m >= q.Start || m < q.End
}

// NotBefore returns when a message due at now may be sent to someone in
// loc: the zero time when now is outside the quiet window, else the moment
// the window ends, in loc.
//
// The end is the first instant after now at which the local wall clock
// reads End: today's End, or tomorrow's for a window that crosses midnight
// and is in its evening part. On a day when End happens twice (clocks fall
// back over it) it is the first occurrence after now; on a day when End
// does not exist (clocks spring forward over it) it is the instant of the
// jump, when the wall clock passes End.
func (q *QuietHours) NotBefore(now time.Time, loc *time.Location) time.Time {
	if !q.Contains(now, loc) {
		return time.Time{}
	}
	local := now.In(loc)
	day := local.Day()
	if q.Start > q.End && local.Hour()*60+local.Minute() >= q.Start {
		day++ // the window crosses midnight: it ends tomorrow
	}
	end := wallClockAfter(now, local.Year(), local.Month(), day, q.End/60, q.End%60, loc)
	if !end.After(now) {
		// Defensive: never defer into the past.
		return time.Time{}
	}
	return end
}

// wallClockAfter returns the first instant after now at which the wall
// clock in loc reads hour:minute on the given date (normalized as by
// time.Date), or, when that wall time does not exist, the instant the
// clock jumps over it.
func wallClockAfter(now time.Time, year int, month time.Month, day, hour, minute int, loc *time.Location) time.Time {
	// The date normalized (day 32 becomes the 1st of the next month).
	d := time.Date(year, month, day, 12, 0, 0, 0, time.UTC)
	y, mo, dd := d.Date()
	naive := time.Date(y, mo, dd, hour, minute, 0, 0, time.UTC)
	// The wall time at offset o is the instant naive - o. Offsets lie
	// within ±14h, so the offsets in force around naive are the only ones
	// that can apply.
	var best time.Time
	var seen []int
	for _, probe := range [...]time.Duration{-15 * time.Hour, 0, 15 * time.Hour} {
		_, off := naive.Add(probe).In(loc).Zone()
		if slices.Contains(seen, off) {
			continue
		}
		seen = append(seen, off)
		c := naive.Add(-time.Duration(off) * time.Second).In(loc)
		cy, cmo, cd := c.Date()
		if cy != y || cmo != mo || cd != dd || c.Hour() != hour || c.Minute() != minute {
			continue // not a real occurrence of the wall time
		}
		if c.After(now) && (best.IsZero() || c.Before(best)) {
			best = c
		}
	}
	if !best.IsZero() {
		return best
	}
	// No occurrence after now: the wall time falls in a gap. time.Date
	// puts it on one side of the jump; the jump is the boundary between.
	t := time.Date(y, mo, dd, hour, minute, 0, 0, loc)
	start, end := t.ZoneBounds()
	if t.Hour()*60+t.Minute() > hour*60+minute {
		return start.In(loc)
	}
	return end.In(loc)
}
