package storetest

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
)

// bought returns Customer(i) after n more purchases worth spend each, the
// last on day.
func bought(i, n int, spend float64, day time.Time) *customer.Scored {
	var c customer.Scored
	Customer(i, &c)
	out := clone(&c)
	out.Features.Transactions += int32(n)
	out.Features.TotalSpend += float64(n) * spend
	out.Features.LastPurchase = day
	return &out
}

// snapshotOf writes a snapshot of source with customers 0..n-1, where
// changed replaces some of them and those of the ids in gone are left out.
func snapshotOf(e *env, source string, n int, gone map[string]bool, changed ...*customer.Scored) *store.Snapshot {
	e.t.Helper()
	byID := map[string]*customer.Scored{}
	for _, c := range changed {
		byID[c.ID] = c
	}
	var all []*customer.Scored
	for i := 0; i < n; i++ {
		id := cid(i)
		if gone[id] {
			continue
		}
		if c, ok := byID[id]; ok {
			all = append(all, c)
			continue
		}
		var c customer.Scored
		Customer(i, &c)
		cc := clone(&c)
		all = append(all, &cc)
	}
	return writeSnapshot(e, e.s, source, 0, 0, all...)
}

// near compares money sums.
func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

// purchasesBeyondBaseline is a conversion rule for the tests: more
// transactions than the baseline, the last on or after the reference
// day; the revenue is the spend beyond the baseline.
func purchasesBeyondBaseline(b *store.Baseline, c *customer.Scored) store.Measured {
	var m store.Measured
	if int64(c.Features.Transactions) > b.Transactions && !c.Features.LastPurchase.Before(b.ReferenceAt.Truncate(24*time.Hour)) {
		m.ConvertedAt = c.Features.LastPurchase
		m.Revenue, m.SetRevenue = c.Features.TotalSpend-b.Spend, true
	}
	return m
}

func exerciseMeasure(ctx context.Context, t *testing.T, d *Driver) {
	t.Run("ConversionsRevenueAndStrata", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		const src = "ns/shop"
		s1 := snapshotOf(e, src, 20, nil)
		applySegment(e, "ns/all", s1.ID, cids(0, 20))
		createCampaignRun(e, e.s, runSpec{id: "r1", campaignUID: "uid-m", channel: "ns/mail", segment: "ns/all", snapshot: s1.ID})
		pl := &planner{holdout: func(i int) bool { return i%4 == 0 }} // 0 4 8 12 16 held out
		pl2 := func(m *store.AudienceMember, tg *store.NewTarget) error {
			if err := pl.plan(m, tg); err != nil {
				return err
			}
			if m.Customer.ID == cid(19) {
				tg.Group, tg.Reason = store.GroupExcluded, store.ReasonCapped
			}
			return nil
		}
		materialize(e, e.s, &store.RunMaterializeParams{RunID: "r1", Plan: pl2})
		measure := func(snap int64) (*store.RunMeasureResult, error) {
			return e.s.RunMeasure(ctx, &store.RunMeasureParams{RunID: "r1", SnapshotID: snap, Measure: purchasesBeyondBaseline})
		}

		// Not sent yet: no reference time, nothing measured.
		day := time.Date(2025, 3, 10, 0, 0, 0, 0, time.UTC)
		s2 := snapshotOf(e, src, 20, nil, bought(1, 1, 30, day), bought(4, 2, 10, day))
		if res, err := measure(s2.ID); err != nil || !res.Skipped {
			t.Fatalf("measuring an unsent run = %+v, %v; want skipped", res, err)
		}
		ref := day.Add(15 * time.Hour) // sent in the afternoon of the purchase day
		if ok, err := e.s.RunSetPhase(ctx, &store.RunSetPhaseParams{RunID: "r1", To: store.PhaseMeasuring, ReferenceAt: ref}); err != nil || !ok {
			t.Fatal(ok, err)
		}
		run, _ := e.s.RunGet(ctx, "r1")
		if run.Source != src || run.MeasuredSnapshot != 0 {
			t.Fatalf("run source %q measured %d", run.Source, run.MeasuredSnapshot)
		}

		// s2: treatment c1 and holdout c4 bought on the reference day.
		res, err := measure(s2.ID)
		if err != nil || res.Skipped || res.Measured != 19 || res.Missing != 0 || res.Converted != 2 || res.Updated != 2 {
			t.Fatalf("measure s2 = %+v, %v; want 19 measured (the excluded one never), 2 converted", res, err)
		}
		// s3: c1 buys again (revenue grows, conversion stays the first);
		// treatment c2 converts; c19 (excluded) buys; c3 is gone from the
		// snapshot (missing, not measured).
		later := day.AddDate(0, 0, 3)
		s3 := snapshotOf(e, src, 20, map[string]bool{cid(3): true},
			bought(1, 2, 30, later), bought(2, 1, 50, later), bought(4, 2, 10, day), bought(19, 1, 99, later))
		res, err = measure(s3.ID)
		if err != nil || res.Measured != 18 || res.Missing != 1 || res.Converted != 1 || res.Updated != 2 {
			t.Fatalf("measure s3 = %+v, %v; want 18 measured, 1 missing, 1 new conversion, 2 revenues", res, err)
		}
		// Older or the same snapshot: nothing moves back.
		for _, snap := range []int64{s3.ID, s2.ID} {
			if res, err := measure(snap); err != nil || !res.Skipped {
				t.Fatalf("measure %d again = %+v, %v; want skipped", snap, res, err)
			}
		}
		got := targetsOf(e, e.s, "r1")
		for id, want := range map[string]struct {
			at      time.Time
			snap    int64
			revenue float64
		}{
			cid(1): {day, s2.ID, 60}, cid(4): {day, s2.ID, 20}, cid(2): {later, s3.ID, 50},
			cid(0): {}, cid(3): {}, cid(19): {},
		} {
			tg := got[id]
			if !tg.ConvertedAt.Equal(want.at) || tg.ConvertedSnapshot != want.snap || !near(tg.Revenue, want.revenue) {
				t.Errorf("%s: converted %v (snapshot %d), revenue %v; want %v (%d), %v", id, tg.ConvertedAt, tg.ConvertedSnapshot, tg.Revenue, want.at, want.snap, want.revenue)
			}
		}
		tl := tally(e, "r1")
		if tr, ho := tl.Groups[store.GroupTreatment], tl.Groups[store.GroupHoldout]; tr.Converted != 2 || !near(tr.Revenue, 110) || ho.Converted != 1 || !near(ho.Revenue, 20) {
			t.Errorf("tally: treatment %d/%v, holdout %d/%v", tr.Converted, tr.Revenue, ho.Converted, ho.Revenue)
		}

		// Errors: another source's snapshot, an unknown one.
		other := snapshotOf(e, "ns/other", 2, nil)
		if _, err := measure(other.ID + 1000); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unknown snapshot: %v", err)
		}
		if _, err := measure(other.ID); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("another source's snapshot: %v", err)
		}

		// Strata: the run is one stratum, provisional; after its deletion
		// the same, kept.
		want := []store.RunStratum{{RunID: "r1", ReferenceAt: ref, Final: false,
			Treatment: store.StratumGroup{Assigned: 14, Converted: 2, Revenue: 110},
			Holdout:   store.StratumGroup{Assigned: 5, Converted: 1, Revenue: 20}}}
		check := func(when string) {
			t.Helper()
			strata, err := e.s.CampaignStrata(ctx, "uid-m")
			if err != nil || len(strata) != len(want) {
				t.Fatalf("%s: strata %+v, %v", when, strata, err)
			}
			for i := range want {
				if g, w := strata[i], want[i]; g.RunID != w.RunID || !g.ReferenceAt.Equal(w.ReferenceAt) || g.Final != w.Final || !sameGroup(g.Treatment, w.Treatment) || !sameGroup(g.Holdout, w.Holdout) {
					t.Errorf("%s: stratum %d = %+v, want %+v", when, i, g, w)
				}
			}
		}
		check("stored")
		if ok, err := e.s.RunSetPhase(ctx, &store.RunSetPhaseParams{RunID: "r1", To: store.PhaseSucceeded}); err != nil || !ok {
			t.Fatal(ok, err)
		}
		want[0].Final = true
		check("succeeded")
		before, _ := e.s.CampaignTally(ctx, "uid-m")
		if err := e.s.RunDelete(ctx, "r1"); err != nil {
			t.Fatal(err)
		}
		check("deleted")
		after, _ := e.s.CampaignTally(ctx, "uid-m")
		for _, g := range []store.TargetGroup{store.GroupTreatment, store.GroupHoldout} {
			if before.Groups[g].Revenue != after.Groups[g].Revenue || before.Groups[g].Converted != after.Groups[g].Converted {
				t.Errorf("campaign tally of %s changed on delete: %+v → %+v", g, before.Groups[g], after.Groups[g])
			}
		}

		// A dry run and an unsent run are no strata.
		createCampaignRun(e, e.s, runSpec{id: "dry", campaignUID: "uid-m", channel: "ns/mail", segment: "ns/all", snapshot: s3.ID, dryRun: true})
		materialize(e, e.s, &store.RunMaterializeParams{RunID: "dry", Plan: pl.plan})
		e.s.RunSetPhase(ctx, &store.RunSetPhaseParams{RunID: "dry", To: store.PhaseSucceeded, ReferenceAt: ref})
		check("with a dry run")
	})
}

func sameGroup(a, b store.StratumGroup) bool {
	return a.Assigned == b.Assigned && a.Converted == b.Converted && near(a.Revenue, b.Revenue)
}
