package controllers

import (
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/store"
)

func TestWindowDone(t *testing.T) {
	t.Parallel()
	end := time.Date(2026, 12, 12, 14, 0, 0, 0, time.UTC)
	snap := func(id int64, at time.Time) *store.Snapshot { return &store.Snapshot{ID: id, CreatedAt: at} }
	for _, tc := range []struct {
		name              string
		now               time.Time
		cur               *store.Snapshot
		measured          int64
		final, seenEndWas bool
	}{
		{"window open", end.Add(-time.Minute), snap(3, end.Add(-time.Hour)), 3, false, false},
		{"closed, last snapshot before the end", end.Add(time.Hour), snap(3, end.Add(-time.Hour)), 3, false, false},
		{"closed, snapshot after the end measured", end.Add(time.Hour), snap(4, end.Add(time.Minute)), 4, true, true},
		{"closed, snapshot at the end measured", end, snap(4, end), 4, true, true},
		{"closed, snapshot after the end not yet measured", end.Add(time.Hour), snap(4, end.Add(time.Minute)), 3, false, false},
		{"grace passed without one", end.Add(measureGrace), snap(3, end.Add(-time.Hour)), 3, true, false},
		{"source gone, grace passed", end.Add(measureGrace + time.Second), nil, 3, true, false},
		{"source gone, within grace", end.Add(time.Hour), nil, 3, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			final, seen := windowDone(tc.now, end, tc.cur, tc.measured)
			if final != tc.final || seen != tc.seenEndWas {
				t.Errorf("windowDone = %v, %v; want %v, %v", final, seen, tc.final, tc.seenEndWas)
			}
		})
	}
}
