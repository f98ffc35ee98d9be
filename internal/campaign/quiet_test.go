package campaign

import (
	"testing"
	"time"
)

func TestParseQuietHours(t *testing.T) {
	t.Parallel()
	tests := []struct {
		start, end       string
		wantStart, wantE int
		wantErr          bool
	}{
		{"21:00", "08:00", 21 * 60, 8 * 60, false},
		{"00:00", "23:59", 0, 23*60 + 59, false},
		{"12:30", "13:45", 12*60 + 30, 13*60 + 45, false},
		{"9:00", "10:00", 0, 0, true},
		{"24:00", "08:00", 0, 0, true},
		{"12:60", "08:00", 0, 0, true},
		{"21:00", "ab:cd", 0, 0, true},
		{"21-00", "08:00", 0, 0, true},
		{"", "08:00", 0, 0, true},
		{"08:00", "08:00", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.start+"-"+tt.end, func(t *testing.T) {
			t.Parallel()
			q, err := ParseQuietHours(tt.start, tt.end)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseQuietHours(%q, %q) = %v, want an error", tt.start, tt.end, q)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if q.Start != tt.wantStart || q.End != tt.wantE {
				t.Errorf("got %+v, want {%d %d}", q, tt.wantStart, tt.wantE)
			}
			if q.String() != tt.start+"-"+tt.end {
				t.Errorf("String() = %q", q.String())
			}
		})
	}
}

func TestQuietHoursNotBefore(t *testing.T) {
	t.Parallel()
	night := &QuietHours{Start: 21 * 60, End: 8 * 60}
	lunch := &QuietHours{Start: 12 * 60, End: 14 * 60}
	early := &QuietHours{Start: 60, End: 2*60 + 30} // 01:00-02:30, over the DST changes
	tests := []struct {
		name string
		q    *QuietHours
		zone string
		now  time.Time
		want time.Time // zero: send now
	}{
		{"evening, ends tomorrow", night, "UTC", utc("2026-01-10T22:00:00Z"), utc("2026-01-11T08:00:00Z")},
		{"at the start", night, "UTC", utc("2026-01-10T21:00:00Z"), utc("2026-01-11T08:00:00Z")},
		{"just before midnight", night, "UTC", utc("2026-01-10T23:59:59Z"), utc("2026-01-11T08:00:00Z")},
		{"after midnight, ends today", night, "UTC", utc("2026-01-11T03:00:00Z"), utc("2026-01-11T08:00:00Z")},
		{"half a minute before the end", night, "UTC", utc("2026-01-11T07:59:30Z"), utc("2026-01-11T08:00:00Z")},
		{"at the end", night, "UTC", utc("2026-01-11T08:00:00Z"), time.Time{}},
		{"daytime", night, "UTC", utc("2026-01-11T20:59:59Z"), time.Time{}},
		{"month end", night, "UTC", utc("2026-01-31T22:00:00Z"), utc("2026-02-01T08:00:00Z")},
		{"lunch", lunch, "UTC", utc("2026-01-11T13:00:00Z"), utc("2026-01-11T14:00:00Z")},
		{"before lunch", lunch, "UTC", utc("2026-01-11T11:59:00Z"), time.Time{}},
		{"after lunch", lunch, "UTC", utc("2026-01-11T14:00:00Z"), time.Time{}},
		// 16:00Z is 21:30 in India (UTC+5:30): wait until 08:00 IST.
		{"half-hour zone", night, "Asia/Kolkata", utc("2026-01-10T16:00:00Z"), utc("2026-01-11T02:30:00Z")},
		// 16:00Z is 03:00 in Auckland (UTC+13 in January).
		{"far east, after midnight", night, "Pacific/Auckland", utc("2026-01-10T14:00:00Z"), utc("2026-01-10T19:00:00Z")},
		// New York springs forward on 8 March 2026 at 02:00: 23:00 EST on
		// the 7th to 08:00 EDT is eight hours, not nine.
		{"New York, night of the spring change", night, "America/New_York", utc("2026-03-08T04:00:00Z"), utc("2026-03-08T12:00:00Z")},
		// Berlin falls back on 25 October 2026 at 03:00 CEST: 22:00 CEST
		// to 08:00 CET is eleven hours.
		{"Berlin, night of the autumn change", night, "Europe/Berlin", utc("2026-10-24T20:00:00Z"), utc("2026-10-25T07:00:00Z")},
		// 02:30 does not exist on 29 March 2026 in Berlin: the window ends
		// when the clock jumps from 02:00 CET to 03:00 CEST (01:00Z).
		{"end in the spring gap", early, "Europe/Berlin", utc("2026-03-29T00:30:00Z"), utc("2026-03-29T01:00:00Z")},
		// 02:30 happens twice on 25 October 2026: first at 00:30Z (CEST)...
		{"end twice, first pass", early, "Europe/Berlin", utc("2026-10-24T23:30:00Z"), utc("2026-10-25T00:30:00Z")},
		// ...then, with the clock back at 02:10 CET (01:10Z), at 01:30Z.
		{"end twice, second pass", early, "Europe/Berlin", utc("2026-10-25T01:10:00Z"), utc("2026-10-25T01:30:00Z")},
		// 02:45 CEST is outside the window (the wall clock says 02:45).
		{"between the two passes", early, "Europe/Berlin", utc("2026-10-25T00:45:00Z"), time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			loc := mustZone(t, tt.zone)
			got := tt.q.NotBefore(tt.now, loc)
			if !got.Equal(tt.want) {
				t.Fatalf("NotBefore(%s in %s) = %s, want %s", tt.now.In(loc), tt.zone, got.UTC(), tt.want)
			}
			if got.IsZero() {
				if tt.q.Contains(tt.now, loc) {
					t.Error("zero NotBefore inside the window")
				}
				return
			}
			if got.Location() != loc {
				t.Errorf("NotBefore in %s, want %s", got.Location(), loc)
			}
			if !got.After(tt.now) {
				t.Errorf("NotBefore %s is not after now %s", got, tt.now)
			}
			if tt.q.Contains(got, loc) {
				t.Errorf("NotBefore %s is still inside the window", got)
			}
		})
	}
}
