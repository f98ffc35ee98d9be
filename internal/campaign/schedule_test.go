package campaign

import (
	"errors"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func utc(s string) time.Time {
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return v.UTC()
}

func dur(d time.Duration) *time.Duration { return &d }

func TestParseSchedule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, spec, zone string
		wantErr          error // nil: valid
	}{
		{"five fields", "0 9 * * 1-5", "", nil},
		{"zone", "0 9 * * *", "Europe/Berlin", nil},
		{"daily", "@daily", "America/New_York", nil},
		{"hourly", "@hourly", "", nil},
		{"every", "@every 90m", "", nil},
		{"names", "0 9 * JAN-MAR MON", "UTC", nil},
		{"leap day fires", "0 0 29 2 *", "", nil},
		{"padded", "  0 9 * * *  ", "", nil},
		{"empty", "", "", ErrInvalidSchedule},
		{"blank", "   ", "", ErrInvalidSchedule},
		{"four fields", "0 9 * *", "", ErrInvalidSchedule},
		{"seconds field", "0 0 9 * * *", "", ErrInvalidSchedule},
		{"minute out of range", "60 9 * * *", "", ErrInvalidSchedule},
		{"garbage", "every day at nine", "", ErrInvalidSchedule},
		{"unknown descriptor", "@fortnightly", "", ErrInvalidSchedule},
		{"bad every", "@every soon", "", ErrInvalidSchedule},
		{"TZ prefix", "TZ=Europe/Berlin 0 9 * * *", "", ErrInvalidSchedule},
		{"CRON_TZ prefix", "CRON_TZ=UTC 0 9 * * *", "", ErrInvalidSchedule},
		{"TZ without space (panics in the parser)", "TZ=Europe/Berlin", "", ErrInvalidSchedule},
		{"never fires", "0 0 30 2 *", "", ErrInvalidSchedule},
		{"unknown zone", "0 9 * * *", "Mars/Olympus_Mons", ErrInvalidTimeZone},
		{"Local zone", "0 9 * * *", "Local", ErrInvalidTimeZone},
		{"zone and bad spec: zone first", "nope", "Nowhere/City", ErrInvalidTimeZone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := ParseSchedule(tt.spec, tt.zone)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ParseSchedule(%q, %q): %v", tt.spec, tt.zone, err)
				}
				want := "UTC"
				if tt.zone != "" {
					want = tt.zone
				}
				if s.Location().String() != want {
					t.Errorf("zone = %s, want %s", s.Location(), want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseSchedule(%q, %q) = %v, want an error", tt.spec, tt.zone, s)
			}
			var se *ScheduleError
			if !errors.As(err, &se) {
				t.Fatalf("error %T %v is not a *ScheduleError", err, err)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v (field %s) is not %v", err, se.Field, tt.wantErr)
			}
			wantField := FieldSchedule
			if tt.wantErr == ErrInvalidTimeZone {
				wantField = FieldTimeZone
			}
			if se.Field != wantField || se.Message == "" {
				t.Errorf("error %+v, want field %s and a message", se, wantField)
			}
		})
	}
}

func TestScheduleNextAcrossDST(t *testing.T) {
	t.Parallel()
	berlin := mustZone(t, "Europe/Berlin")
	s, err := ParseSchedule("0 9 * * *", "Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		after time.Time
		want  time.Time
	}{
		// The day before the spring change: 09:00 CET is 08:00 UTC.
		{utc("2026-03-27T10:00:00Z"), utc("2026-03-28T08:00:00Z")},
		// The change (02:00 → 03:00 on 29 March): 09:00 CEST is 07:00 UTC.
		{utc("2026-03-28T08:00:00Z"), utc("2026-03-29T07:00:00Z")},
		// The autumn change (25 October): back to 08:00 UTC.
		{utc("2026-10-24T07:00:00Z"), utc("2026-10-25T08:00:00Z")},
	}
	for _, tt := range tests {
		got := s.Next(tt.after)
		if !got.Equal(tt.want) {
			t.Errorf("Next(%s) = %s, want %s", tt.after, got.UTC(), tt.want)
		}
		if got.Location() != berlin && got.Location().String() != "Europe/Berlin" {
			t.Errorf("Next in %s, want Europe/Berlin", got.Location())
		}
		if got.Hour() != 9 {
			t.Errorf("Next(%s) is %s local, want 09:00", tt.after, got)
		}
	}
}

func TestScheduleDue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		spec     string
		zone     string
		earliest time.Time
		now      time.Time
		deadline *time.Duration
		want     Due
	}{
		{
			name: "three days missed across the DST change, Berlin",
			spec: "0 9 * * *", zone: "Europe/Berlin",
			earliest: utc("2026-03-27T08:00:00Z"), // the last run, 09:00 CET
			now:      utc("2026-03-30T08:00:00Z"), // 10:00 CEST
			// Slots: 28th 08:00Z (CET), 29th and 30th 07:00Z (CEST).
			want: Due{Slot: utc("2026-03-30T07:00:00Z"), Missed: 2, Next: utc("2026-03-31T07:00:00Z")},
		},
		{
			name: "deadline excludes the older slots",
			spec: "0 9 * * *", zone: "Europe/Berlin",
			earliest: utc("2026-03-27T08:00:00Z"),
			now:      utc("2026-03-30T08:00:00Z"),
			deadline: dur(2 * time.Hour),
			want:     Due{Slot: utc("2026-03-30T07:00:00Z"), Expired: 2, Next: utc("2026-03-31T07:00:00Z")},
		},
		{
			name: "deadline excludes every slot",
			spec: "0 9 * * *", zone: "Europe/Berlin",
			earliest: utc("2026-03-27T08:00:00Z"),
			now:      utc("2026-03-30T08:00:00Z"),
			deadline: dur(30 * time.Minute),
			want:     Due{Expired: 3, Next: utc("2026-03-31T07:00:00Z")},
		},
		{
			name: "deadline earlier than the last run changes nothing",
			spec: "0 9 * * *", zone: "UTC",
			earliest: utc("2026-03-29T09:00:00Z"),
			now:      utc("2026-03-30T09:10:00Z"),
			deadline: dur(48 * time.Hour),
			want:     Due{Slot: utc("2026-03-30T09:00:00Z"), Next: utc("2026-03-31T09:00:00Z")},
		},
		{
			name: "a zero deadline expires even a slot at now (as a CronJob's)",
			spec: "0 9 * * *", zone: "",
			earliest: utc("2026-03-29T09:00:00Z"),
			now:      utc("2026-03-30T09:00:00Z"),
			deadline: dur(0),
			want:     Due{Expired: 1, Next: utc("2026-03-31T09:00:00Z")},
		},
		{
			name: "slot exactly now is due without a deadline",
			spec: "0 9 * * *", zone: "",
			earliest: utc("2026-03-29T09:00:00Z"),
			now:      utc("2026-03-30T09:00:00Z"),
			want:     Due{Slot: utc("2026-03-30T09:00:00Z"), Next: utc("2026-03-31T09:00:00Z")},
		},
		{
			name: "exactly 100 due is not too many",
			spec: "@hourly", zone: "",
			earliest: utc("2026-01-01T00:00:00Z"),
			now:      utc("2026-01-05T04:30:00Z"), // 100 hours later
			want:     Due{Slot: utc("2026-01-05T04:00:00Z"), Missed: 99, Next: utc("2026-01-05T05:00:00Z")},
		},
		{
			name: "101 due is too many",
			spec: "@hourly", zone: "",
			earliest: utc("2026-01-01T00:00:00Z"),
			now:      utc("2026-01-05T05:00:00Z"),
			want:     Due{Slot: utc("2026-01-05T05:00:00Z"), Missed: 100, TooMany: true, Next: utc("2026-01-05T06:00:00Z")},
		},
		{
			name: "more than 100 missed, a deadline brings it back under",
			spec: "@hourly", zone: "",
			earliest: utc("2026-01-01T00:00:00Z"),
			now:      utc("2026-01-06T00:30:00Z"),
			deadline: dur(90 * time.Minute),
			want:     Due{Slot: utc("2026-01-06T00:00:00Z"), Expired: 119, Next: utc("2026-01-06T01:00:00Z")},
		},
		{
			name: "created after today's slot: nothing until tomorrow",
			spec: "0 9 * * *", zone: "",
			earliest: utc("2026-05-01T10:00:00Z"),
			now:      utc("2026-05-01T11:00:00Z"),
			want:     Due{Next: utc("2026-05-02T09:00:00Z")},
		},
		{
			name: "a yearly schedule that fires only next year",
			spec: "0 0 1 1 *", zone: "Asia/Tokyo",
			earliest: utc("2026-03-01T00:00:00Z"),
			now:      utc("2026-06-01T00:00:00Z"),
			want:     Due{Next: utc("2026-12-31T15:00:00Z")},
		},
		{
			name: "every 90m",
			spec: "@every 90m", zone: "",
			earliest: utc("2026-01-01T00:00:00Z"),
			now:      utc("2026-01-01T05:00:00Z"),
			// 01:30, 03:00, 04:30.
			want: Due{Slot: utc("2026-01-01T04:30:00Z"), Missed: 2, Next: utc("2026-01-01T06:00:00Z")},
		},
		{
			name: "every 90m keeps its lattice under a deadline",
			spec: "@every 90m", zone: "Europe/Berlin",
			earliest: utc("2026-01-01T00:00:00Z"),
			now:      utc("2026-01-01T05:00:00Z"),
			deadline: dur(time.Hour),
			want:     Due{Slot: utc("2026-01-01T04:30:00Z"), Expired: 2, Next: utc("2026-01-01T06:00:00Z")},
		},
		{
			name: "every 90m, first slot not reached",
			spec: "@every 90m", zone: "",
			earliest: utc("2026-01-01T00:00:00Z"),
			now:      utc("2026-01-01T01:00:00Z"),
			want:     Due{Next: utc("2026-01-01T01:30:00Z")},
		},
		{
			name: "earliest after now (clock skew): nothing due",
			spec: "0 * * * *", zone: "",
			earliest: utc("2026-01-01T10:00:00Z"),
			now:      utc("2026-01-01T09:30:00Z"),
			want:     Due{Next: utc("2026-01-01T11:00:00Z")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := ParseSchedule(tt.spec, tt.zone)
			if err != nil {
				t.Fatal(err)
			}
			got := s.Due(tt.earliest, tt.now, tt.deadline)
			if !sameDue(got, tt.want) {
				t.Errorf("Due =\n %+v\nwant\n %+v", got, tt.want)
			}
			if !got.Slot.IsZero() && got.Slot.Location() != s.Location() {
				t.Errorf("Slot in %s, want %s", got.Slot.Location(), s.Location())
			}
		})
	}
}

func sameDue(a, b Due) bool {
	return a.Slot.Equal(b.Slot) && a.Next.Equal(b.Next) && a.Missed == b.Missed &&
		a.Expired == b.Expired && a.TooMany == b.TooMany && a.Late == b.Late && a.Estimated == b.Estimated
}

// bruteDue is the reference: every slot walked one by one.
func bruteDue(s *Schedule, earliest, now time.Time, deadline *time.Duration) Due {
	var d Due
	from := earliest
	if deadline != nil && now.Add(-*deadline).After(earliest) {
		from = now.Add(-*deadline)
	}
	var n int64
	next := func(t time.Time) time.Time { return s.sched.Next(t) }
	for t := next(earliest); !t.IsZero() && !t.After(now); t = next(t) {
		if !t.After(from) {
			d.Expired++
			continue
		}
		n++
		d.Slot = t
	}
	if n > 0 {
		d.Missed = n - 1
		d.TooMany = n > TooManyMissed
	}
	after := now
	if earliest.After(now) {
		after = earliest
	}
	for t := next(earliest); !t.IsZero(); t = next(t) {
		if t.After(after) {
			d.Next = t
			break
		}
	}
	return d
}

// TestScheduleDueMatchesWalk compares Due with walking every slot, for
// windows small enough to be counted exactly.
func TestScheduleDueMatchesWalk(t *testing.T) {
	t.Parallel()
	specs := []struct{ spec, zone string }{
		{"*/15 * * * *", "UTC"},
		{"30 2 * * *", "Europe/Berlin"}, // 02:30 does not exist on the spring change day
		{"30 6-16/4 * * 1-5", "America/New_York"},
		{"0 0 1,15 * *", "Australia/Lord_Howe"},
		{"@every 7m", "UTC"},
		{"@weekly", "Asia/Kolkata"},
	}
	earliest := utc("2026-03-20T11:22:33Z")
	for _, sp := range specs {
		t.Run(sp.spec, func(t *testing.T) {
			t.Parallel()
			s, err := ParseSchedule(sp.spec, sp.zone)
			if err != nil {
				t.Fatal(err)
			}
			for _, after := range []time.Duration{0, time.Minute, 3 * time.Hour, 49 * time.Hour, 9 * 24 * time.Hour} {
				for _, deadline := range []*time.Duration{nil, dur(0), dur(20 * time.Minute), dur(26 * time.Hour)} {
					now := earliest.Add(after)
					got, want := s.Due(earliest, now, deadline), bruteDue(s, earliest, now, deadline)
					if !sameDue(got, want) {
						t.Errorf("now=+%s deadline=%v:\n got %+v\nwant %+v", after, deadline, got, want)
					}
				}
			}
		})
	}
}

// TestScheduleDueBounded checks that huge gaps cost little and that Slot
// and Next stay exact when the counts are estimated.
func TestScheduleDueBounded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, spec, zone string
		earliest, now    time.Time
		wantSlots        int64 // exact number of slots in the window
		wantSlot         time.Time
		wantNext         time.Time
		exact            bool
	}{
		{
			name: "every second for a year", spec: "@every 1s",
			earliest: utc("2025-01-01T00:00:00Z"), now: utc("2026-01-01T00:00:00Z"),
			wantSlots: 365 * 86400, wantSlot: utc("2026-01-01T00:00:00Z"), wantNext: utc("2026-01-01T00:00:01Z"), exact: true,
		},
		{
			name: "every minute for a year", spec: "* * * * *",
			earliest: utc("2025-01-01T00:00:00Z"), now: utc("2026-01-01T00:00:30Z"),
			wantSlots: 365 * 1440, wantSlot: utc("2026-01-01T00:00:00Z"), wantNext: utc("2026-01-01T00:01:00Z"),
		},
		{
			name: "daily in Berlin for ten years", spec: "0 9 * * *", zone: "Europe/Berlin",
			earliest: utc("2016-01-01T00:00:00Z"), now: utc("2026-01-01T00:00:00Z"),
			wantSlots: 3653, wantSlot: utc("2025-12-31T08:00:00Z"), wantNext: utc("2026-01-01T08:00:00Z"),
		},
		{
			name: "irregular weekday schedule, now on a Sunday", spec: "30 6-16/4 * * 1-5", zone: "UTC",
			earliest: utc("2024-01-01T00:00:00Z"), now: utc("2026-03-08T12:00:00Z"),
			wantSlot: utc("2026-03-06T14:30:00Z"), wantNext: utc("2026-03-09T06:30:00Z"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := ParseSchedule(tt.spec, tt.zone)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantSlots == 0 {
				// Count by walking (a few thousand slots).
				sched, _ := cron.ParseStandard(tt.spec)
				for t2 := sched.Next(tt.earliest); !t2.After(tt.now); t2 = sched.Next(t2) {
					tt.wantSlots++
				}
			}
			start := time.Now()
			d := s.Due(tt.earliest, tt.now, nil)
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("Due took %s", el)
			}
			if !d.Slot.Equal(tt.wantSlot) || !d.Next.Equal(tt.wantNext) {
				t.Errorf("Slot %s Next %s, want %s and %s", d.Slot.UTC(), d.Next.UTC(), tt.wantSlot, tt.wantNext)
			}
			if !d.TooMany {
				t.Error("TooMany = false")
			}
			if d.Estimated == tt.exact {
				t.Errorf("Estimated = %v", d.Estimated)
			}
			wantMissed := tt.wantSlots - 1
			tol := int64(0)
			if !tt.exact {
				tol = wantMissed / 100
			}
			if diff := d.Missed - wantMissed; diff > tol || diff < -tol {
				t.Errorf("Missed = %d, want %d ± %d", d.Missed, wantMissed, tol)
			}
		})
	}
}

// TestScheduleDueLate documents that a slot inside the window is never
// late, and that Late follows the controller's check.
func TestScheduleDueLate(t *testing.T) {
	t.Parallel()
	s, err := ParseSchedule("0 9 * * *", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, deadline := range []time.Duration{time.Second, time.Hour, 100 * time.Hour} {
		d := s.Due(utc("2026-01-01T00:00:00Z"), utc("2026-01-10T10:00:00Z"), &deadline)
		if d.Late {
			t.Errorf("deadline %s: Late for slot %s", deadline, d.Slot)
		}
		if !d.Slot.IsZero() && d.Slot.Add(deadline).Before(utc("2026-01-10T10:00:00Z")) {
			t.Errorf("deadline %s: slot %s is older than the deadline", deadline, d.Slot)
		}
	}
}
