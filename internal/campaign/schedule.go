package campaign

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// The fields a ScheduleError can name.
const (
	// FieldSchedule is the campaign's spec.schedule.
	FieldSchedule = "schedule"
	// FieldTimeZone is the campaign's spec.timeZone.
	FieldTimeZone = "timeZone"
)

// Sentinel errors a *ScheduleError matches with errors.Is, one per field.
var (
	// ErrInvalidSchedule matches a ScheduleError about the cron spec.
	ErrInvalidSchedule = errors.New("campaign: invalid schedule")
	// ErrInvalidTimeZone matches a ScheduleError about the time zone.
	ErrInvalidTimeZone = errors.New("campaign: invalid time zone")
)

// ScheduleError says why a schedule or time zone can never work: the
// campaign is stalled until its spec changes.
type ScheduleError struct {
	// Field is FieldSchedule or FieldTimeZone.
	Field string
	// Value is the rejected value as given.
	Value string
	// Message says what is wrong, for a condition message.
	Message string
	// Err is the underlying error, if any (the cron parser's, or
	// time.LoadLocation's).
	Err error
}

// Error implements error.
func (e *ScheduleError) Error() string {
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Message)
}

// Unwrap returns the underlying error.
func (e *ScheduleError) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e's field
// (ErrInvalidSchedule or ErrInvalidTimeZone).
func (e *ScheduleError) Is(target error) bool {
	switch target {
	case ErrInvalidSchedule:
		return e.Field == FieldSchedule
	case ErrInvalidTimeZone:
		return e.Field == FieldTimeZone
	}
	return false
}

// Schedule is a parsed campaign schedule: a cron spec in a time zone.
// It is immutable and safe for concurrent use.
type Schedule struct {
	spec  string
	loc   *time.Location
	sched cron.Schedule
	// every is the period of an "@every" schedule, 0 for a cron spec.
	every time.Duration
}

// neverReference is the instant from which ParseSchedule checks that a
// schedule fires at all (robfig/cron gives up after five years).
var neverReference = time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC)

// ParseSchedule parses a campaign schedule as the Kubernetes CronJob
// controller does, with robfig/cron/v3's ParseStandard: five fields
// (minute hour day-of-month month day-of-week) or a descriptor (@yearly,
// @annually, @monthly, @weekly, @daily, @midnight, @hourly, @every <Go
// duration>). timeZone is an IANA name; "" means UTC, and "Local" is
// rejected because it would depend on the operator's machine.
//
// A zone inside the spec ("TZ=…" or "CRON_TZ=…") is rejected: the zone
// belongs in timeZone, as Kubernetes requires. A spec that can never fire
// (February 30th) is rejected too. Every error is a *ScheduleError.
func ParseSchedule(spec, timeZone string) (s *Schedule, err error) {
	loc, err := loadZone(timeZone)
	if err != nil {
		return nil, &ScheduleError{Field: FieldTimeZone, Value: timeZone, Message: "unknown time zone (want an IANA name such as Europe/Berlin)", Err: err}
	}
	bad := func(msg string, cause error) (*Schedule, error) {
		return nil, &ScheduleError{Field: FieldSchedule, Value: spec, Message: msg, Err: cause}
	}
	trimmed := strings.TrimSpace(spec)
	if trimmed == "" {
		return bad("empty schedule", nil)
	}
	if strings.Contains(trimmed, "TZ=") {
		return bad("set the time zone in timeZone, not in the schedule", nil)
	}
	// The parser has panicked on malformed input before (a TZ= prefix
	// without a space); a bad spec is an error here, never a crash.
	defer func() {
		if r := recover(); r != nil {
			s, err = bad(fmt.Sprintf("unparseable: %v", r), nil)
		}
	}()
	parsed, perr := cron.ParseStandard(trimmed)
	if perr != nil {
		return bad("unparseable: "+perr.Error(), perr)
	}
	s = &Schedule{spec: trimmed, loc: loc, sched: parsed}
	switch p := parsed.(type) {
	case *cron.SpecSchedule:
		// ParseStandard leaves time.Local, which means "the zone of the
		// time passed to Next"; pin the campaign's zone instead.
		p.Location = loc
	case cron.ConstantDelaySchedule:
		s.every = p.Delay
	}
	if s.every == 0 && s.sched.Next(neverReference).IsZero() {
		return bad("never fires (no such date)", nil)
	}
	return s, nil
}

// loadZone loads an IANA zone; "" is UTC and "Local" is refused.
func loadZone(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	if strings.EqualFold(name, "Local") {
		return nil, errors.New(`"Local" depends on the machine`)
	}
	return time.LoadLocation(name)
}

// String returns the spec as parsed (trimmed).
func (s *Schedule) String() string { return s.spec }

// Location returns the schedule's time zone.
func (s *Schedule) Location() *time.Location { return s.loc }

// Every returns the period of an "@every" schedule, and 0 for a cron spec.
func (s *Schedule) Every() time.Duration { return s.every }

// Next returns the first slot after t, in the schedule's zone, or the zero
// time if the schedule does not fire within five years of t. For "@every
// d" it is t+d (truncated to the second), as in robfig/cron: such slots
// are relative, and Due anchors them on its earliest time.
func (s *Schedule) Next(t time.Time) time.Time {
	n := s.sched.Next(t)
	if n.IsZero() {
		return n
	}
	return n.In(s.loc)
}

// TooManyMissed is the bound of the Kubernetes CronJob controller: when
// more slots than this are due at once, only the latest runs and the
// controller warns (Due.TooMany).
const TooManyMissed = 100

// Due is what a schedule owes at a given time.
type Due struct {
	// Slot is the most recent slot at or before now (and after the
	// earliest time, within the starting deadline): the run to start. It
	// is zero when none is due.
	Slot time.Time
	// Missed counts the other slots in the same window, older than Slot.
	// They are never run: only the latest slot runs, as in a CronJob.
	Missed int64
	// Expired counts the slots after the earliest time that are older
	// than the starting deadline (now - deadline); they were skipped
	// because they were missed by more than the deadline. Zero without a
	// deadline. Status's missedRuns adds Missed and Expired.
	Expired int64
	// Estimated is true when Missed or Expired was estimated rather than
	// counted, because the window holds more slots than Due walks (see
	// Due). Slot and Next are always exact.
	Estimated bool
	// TooMany is true when more than TooManyMissed slots were due
	// (Missed+1 > 100): the controller starts only Slot and warns.
	TooMany bool
	// Late is true when Slot is older than the starting deadline (now >
	// Slot + deadline): skip it and count it. This is the CronJob
	// controller's "too late" check. Since the window already starts at
	// now - deadline, a slot Due finds is never late; the check is kept,
	// as in the controller, so callers need no deadline logic of their own.
	Late bool
	// Next is the first slot after now (and after earliest): when to look
	// again. It is zero if the schedule does not fire within five years.
	Next time.Time
}

// walkLimit bounds how many slots Due steps through one by one before it
// estimates the rest of a window: enough to count exactly everything the
// TooManyMissed rule distinguishes, small enough to stay cheap.
const walkLimit = 1000

// Due tells which slot is due at now, with the semantics of the Kubernetes
// CronJob controller (pkg/controller/cronjob/utils.go,
// mostRecentScheduleTime, and the controller's starting deadline check).
//
// earliest is the last scheduled slot, or the campaign's creation time if
// it never ran. Without a starting deadline the window is (earliest, now];
// with one, it starts at now-deadline when that is later, and the slots
// before it are Expired. Slot is the latest slot in the window, Missed the
// others. Times are returned in the schedule's zone.
//
// The cost is bounded, whatever the gap: an "@every" schedule is counted
// by arithmetic (its slots are earliest + k·period, the first one as
// robfig/cron computes it, so a starting deadline does not move them, a
// small departure from Kubernetes, which re-anchors them on
// now-deadline); a cron spec is walked slot by slot up to walkLimit slots,
// then the rest is estimated from the mean interval of the walked slots and
// the most recent slot is found exactly by searching back from now.
func (s *Schedule) Due(earliest, now time.Time, startingDeadline *time.Duration) Due {
	var d Due
	from := earliest
	if startingDeadline != nil {
		cut := now.Add(-*startingDeadline)
		if cut.After(earliest) {
			n, _, est := s.span(earliest, earliest, cut)
			d.Expired, d.Estimated = n, est
			from = cut
		}
	}
	if now.After(from) {
		n, last, est := s.span(earliest, from, now)
		d.Estimated = d.Estimated || est
		if n > 0 {
			d.Slot = last.In(s.loc)
			d.Missed = n - 1
			d.TooMany = n > TooManyMissed
			if startingDeadline != nil && now.After(d.Slot.Add(*startingDeadline)) {
				d.Late = true
			}
		}
	}
	after := now
	if earliest.After(after) {
		after = earliest
	}
	d.Next = s.nextAfter(earliest, after)
	return d
}

// span counts the slots in (from, to], anchored on anchor for "@every"
// schedules, and returns the count, the last one and whether the count is
// an estimate.
func (s *Schedule) span(anchor, from, to time.Time) (n int64, last time.Time, estimated bool) {
	if !to.After(from) {
		return 0, time.Time{}, false
	}
	if s.every > 0 {
		n, last = s.everySpan(anchor, from, to)
		return n, last, false
	}
	return s.cronSpan(from, to)
}

// everySpan counts the slots first + k·every (k ≥ 0) in (from, to], where
// first is robfig/cron's Next(anchor).
func (s *Schedule) everySpan(anchor, from, to time.Time) (int64, time.Time) {
	first := s.sched.Next(anchor)
	if first.After(to) {
		return 0, time.Time{}
	}
	p := int64(s.every)
	hi := int64(to.Sub(first)) / p // the last k with slot <= to
	lo := int64(0)                 // the first k with slot > from
	if !from.Before(first) {
		lo = int64(from.Sub(first))/p + 1
	}
	if hi < lo {
		return 0, time.Time{}
	}
	return hi - lo + 1, first.Add(time.Duration(hi) * s.every)
}

// cronSpan counts a cron spec's slots in (from, to]: exactly up to
// walkLimit slots, then by estimate (see Due).
func (s *Schedule) cronSpan(from, to time.Time) (int64, time.Time, bool) {
	var n int64
	var first, last time.Time
	for t := s.sched.Next(from); !t.IsZero() && !t.After(to); t = s.sched.Next(t) {
		if n == 0 {
			first = t
		}
		n++
		last = t
		if n == walkLimit {
			break
		}
	}
	if n < walkLimit {
		return n, last, false
	}
	// Too many to walk: find the most recent slot by searching back from
	// `to` with a doubling window, walk that window exactly, and estimate
	// the slots between the walked head and the window.
	mean := last.Sub(first) / time.Duration(n-1)
	if mean <= 0 {
		mean = time.Second
	}
	for back := mean; ; back *= 2 {
		c := to.Add(-back)
		if !c.After(last) || back > 1<<61 {
			// The window reaches the walked head: walk on from it.
			tail, tailLast := s.walk(last, to)
			if tail == 0 {
				return n, last, true
			}
			return n + tail, tailLast, true
		}
		if t := s.sched.Next(c); !t.IsZero() && !t.After(to) {
			tail, tailLast := s.walk(c, to)
			mid := int64((c.Sub(last) + mean/2) / mean)
			return n + mid + tail, tailLast, true
		}
	}
}

// walk counts a cron spec's slots in (from, to] one by one.
func (s *Schedule) walk(from, to time.Time) (int64, time.Time) {
	var n int64
	var last time.Time
	for t := s.sched.Next(from); !t.IsZero() && !t.After(to); t = s.sched.Next(t) {
		n++
		last = t
	}
	return n, last
}

// nextAfter returns the first slot after t; "@every" slots are anchored on
// anchor, as in Due.
func (s *Schedule) nextAfter(anchor, t time.Time) time.Time {
	if s.every == 0 {
		return s.Next(t)
	}
	first := s.sched.Next(anchor)
	if first.After(t) {
		return first.In(s.loc)
	}
	k := int64(t.Sub(first))/int64(s.every) + 1
	return first.Add(time.Duration(k) * s.every).In(s.loc)
}
