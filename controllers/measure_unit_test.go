package controllers

import (
	"strings"
	"testing"
	"time"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
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

func groupTally(total, converted int64, revenue float64) *store.GroupTally {
	return &store.GroupTally{Total: total, Converted: converted, Revenue: revenue}
}

// TestRunMeasurement: per group, per variant, and "too few to say"
// instead of a number for a tiny holdout.
func TestRunMeasurement(t *testing.T) {
	t.Parallel()
	tally := &store.RunTally{
		Groups: map[store.TargetGroup]*store.GroupTally{store.GroupTreatment: groupTally(700, 56, 1400), store.GroupHoldout: groupTally(80, 3, 75)},
		Variants: map[store.TargetGroup]map[string]*store.GroupTally{
			store.GroupTreatment: {"discount": groupTally(350, 40, 1000), "reminder": groupTally(350, 16, 400)},
			store.GroupHoldout:   {"discount": groupTally(40, 1, 25), "reminder": groupTally(40, 2, 50)},
		},
	}
	m := runMeasurement(tally, false, "")
	if m.Treatment.RatePercent != "8.00" || m.Holdout.RatePercent != "3.75" || m.Treatment.RevenuePerCustomer != "2.00" || m.Uplift == nil ||
		m.Uplift.PercentagePoints != "4.25" || m.Uplift.Method != "NewcombeHybridScore" || !strings.HasPrefix(m.Verdict, "no significant difference") {
		t.Fatalf("measurement %+v uplift %+v", m, m.Uplift)
	}
	vs := variantConversions(tally)
	if len(vs) != 2 || vs[0].Name != "discount" || vs[0].Treatment.Converted != 40 || vs[1].Holdout.Converted != 2 {
		t.Fatalf("variants %+v", vs)
	}
	tally.Groups[store.GroupHoldout] = groupTally(7, 1, 0)
	if m := runMeasurement(tally, false, ""); m.Uplift != nil || !strings.HasPrefix(m.Verdict, "too few to say") {
		t.Fatalf("7 held out: %+v", m)
	}
	if m := runMeasurement(&store.RunTally{Groups: map[store.TargetGroup]*store.GroupTally{store.GroupTreatment: groupTally(5000, 900, 0), store.GroupHoldout: groupTally(5000, 500, 0)}}, true, "sample-ratio mismatch"); !strings.HasPrefix(m.Verdict, "untrustworthy (sample-ratio mismatch): the treatment converts better") {
		t.Fatalf("verdict %q", m.Verdict)
	}
}

// TestPoolRuns: one run is judged as the run itself is (Newcombe), not by
// a Wald-type interval that collapses on a holdout without conversions; a
// difference is claimed only where the interval and the test agree; runs
// with an empty group carry no comparison.
func TestPoolRuns(t *testing.T) {
	t.Parallel()
	stratum := func(tc, tn, hc, hn int64) store.RunStratum {
		return store.RunStratum{Treatment: store.StratumGroup{Assigned: tn, Converted: tc}, Holdout: store.StratumGroup{Assigned: hn, Converted: hc}}
	}
	for _, tc := range []struct {
		name    string
		strata  []store.RunStratum
		method  retentionv1.UpliftMethod
		verdict string
	}{
		// The demo's run: 11 of 127 against 0 of 13. Mantel–Haenszel with
		// Sato's variance gives 8.66 pp, CI 3.77 to 13.55, beside p = 0.27.
		{"one run, holdout without conversions", []store.RunStratum{stratum(11, 127, 0, 13)}, retentionv1.UpliftNewcombe,
			"no significant difference: 8.66 pp (95% CI -14.46 to 14.85 pp), p = 0.269, from 1 run"},
		{"one run and one without a holdout", []store.RunStratum{stratum(11, 127, 0, 13), stratum(5, 40, 0, 0)}, retentionv1.UpliftNewcombe,
			"no significant difference: 8.66 pp (95% CI -14.46 to 14.85 pp), p = 0.269, from 1 run"},
		{"two runs, holdouts without conversions: the interval excludes 0, the test does not", []store.RunStratum{stratum(11, 127, 0, 13), stratum(9, 120, 0, 12)}, retentionv1.UpliftMantelHaenszel,
			"no significant difference"},
		{"two runs, a clear effect", []store.RunStratum{stratum(200, 1000, 100, 1000), stratum(90, 500, 40, 500)}, retentionv1.UpliftMantelHaenszel,
			"the treatment converts better"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := poolRuns(tc.strata).status
			if m.Uplift == nil || m.Uplift.Method != tc.method || !strings.HasPrefix(m.Verdict, tc.verdict) {
				t.Fatalf("measurement %+v, uplift %+v; want method %s, verdict %q", m, m.Uplift, tc.method, tc.verdict)
			}
		})
	}
}
