package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/store"
)

// addTallies sums tallies.
func addTallies(ts ...*store.RunTally) *store.RunTally {
	out := &store.RunTally{Groups: map[store.TargetGroup]*store.GroupTally{}}
	for _, t := range ts {
		for g, gt := range t.Groups {
			o := out.Groups[g]
			if o == nil {
				o = &store.GroupTally{ByState: map[store.TargetState]int64{}, SkippedByReason: map[string]int64{}}
				out.Groups[g] = o
			}
			o.Total += gt.Total
			o.Converted += gt.Converted
			for k, v := range gt.ByState {
				o.ByState[k] += v
			}
			for k, v := range gt.SkippedByReason {
				o.SkippedByReason[k] += v
			}
		}
	}
	return out
}

func campaignTally(e *env, uid string) *store.RunTally {
	e.t.Helper()
	t, err := e.s.CampaignTally(e.ctx, uid)
	if err != nil {
		e.t.Fatalf("CampaignTally(%s): %v", uid, err)
	}
	return t
}

// tallyOf counts targets as RunTally does, by group and by the variants of
// the treatment and holdout groups.
func tallyOf(ts map[string]store.Target) *store.RunTally {
	out := &store.RunTally{Groups: map[store.TargetGroup]*store.GroupTally{}, Variants: map[store.TargetGroup]map[string]*store.GroupTally{}}
	for _, t := range ts {
		countTarget(out.Groups, t.Group, &t)
		if t.Group == store.GroupExcluded {
			continue
		}
		if out.Variants[t.Group] == nil {
			out.Variants[t.Group] = map[string]*store.GroupTally{}
		}
		countTarget(out.Variants[t.Group], t.Variant, &t)
	}
	return out
}

// countTarget adds a target to the tally m[key].
func countTarget[K comparable](m map[K]*store.GroupTally, key K, t *store.Target) {
	g := m[key]
	if g == nil {
		g = &store.GroupTally{ByState: map[store.TargetState]int64{}, SkippedByReason: map[string]int64{}}
		m[key] = g
	}
	g.Total++
	g.ByState[t.State]++
	if t.State == store.StateSkipped {
		g.SkippedByReason[t.Reason]++
	}
	if !t.ConvertedAt.IsZero() {
		g.Converted++
	}
}

func exerciseTally(ctx context.Context, t *testing.T, d *Driver) {
	// Deferred: pending targets whose not-before is still to come, at the
	// store's time; a due one is only pending.
	t.Run("Deferred", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		createRun(e, "r", "ns/email", 1)
		now := e.clock.Now()
		ts := treatment(0, 5, 0)
		ts[0].NotBefore, ts[1].NotBefore, ts[2].NotBefore = now.Add(time.Hour), now.Add(2*time.Hour), now.Add(-time.Minute)
		insertTargets(e, "r", ts)
		g := tally(e, "r").Groups[store.GroupTreatment]
		if g.ByState[store.StatePending] != 5 || g.Deferred != 2 {
			t.Fatalf("pending %d, deferred %d; want 5, 2", g.ByState[store.StatePending], g.Deferred)
		}
		e.clock.Advance(90 * time.Minute)
		if g := tally(e, "r").Groups[store.GroupTreatment]; g.Deferred != 1 {
			t.Fatalf("after 90 minutes: deferred %d, want 1", g.Deferred)
		}
	})
	// A run with two variants in both experiment groups: RunTally and
	// RunMaterialize's tally break the treatment and holdout groups down by
	// variant; excluded targets are not broken down, CampaignTally is not.
	t.Run("Variants", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		sn := writeSnapshot(e, e.s, "ns/src", 0, 40)
		applySegment(e, "ns/seg", sn.ID, cids(0, 40))
		if err := e.s.OptOutAdd(ctx, &store.OptOutAddParams{Channel: "ns/email", CustomerID: cid(0)}); err != nil {
			t.Fatal(err)
		}
		pl := &planner{holdout: func(i int) bool { return i%4 == 0 }}
		plan := func(m *store.AudienceMember, t *store.NewTarget) error {
			if err := pl.plan(m, t); err != nil {
				return err
			}
			t.Variant = map[bool]string{true: "a", false: "b"}[cidIndex(m.Customer.ID)%2 == 0]
			return nil
		}
		createCampaignRun(e, e.s, runSpec{id: "r", campaignUID: "uid-v", channel: "ns/email", segment: "ns/seg", snapshot: sn.ID})
		got := materialize(e, e.s, &store.RunMaterializeParams{RunID: "r", Plan: plan})
		if want := tallyOf(targetsOf(e, e.s, "r")); !reflect.DeepEqual(got, want) {
			t.Errorf("RunMaterialize tally = %+v, want %+v", got, want)
		}
		if want := tally(e, "r"); !reflect.DeepEqual(got, want) {
			t.Errorf("RunMaterialize tally = %+v, RunTally = %+v", got, want)
		}
		// c0 opted out; holdout c4, c8, … c36 (all variant a); treatment
		// the other even ones (a) and every odd one (b).
		total := func(tl *store.RunTally, g store.TargetGroup, v string) int64 {
			if vt := tl.Variants[g][v]; vt != nil {
				return vt.Total
			}
			return 0
		}
		for _, tc := range []struct {
			g    store.TargetGroup
			v    string
			want int64
		}{{store.GroupTreatment, "a", 10}, {store.GroupTreatment, "b", 20}, {store.GroupHoldout, "a", 9}, {store.GroupHoldout, "b", 0}} {
			if n := total(got, tc.g, tc.v); n != tc.want {
				t.Errorf("%s variant %s: %d targets, want %d", tc.g, tc.v, n, tc.want)
			}
		}
		if _, ok := got.Variants[store.GroupExcluded]; ok {
			t.Errorf("excluded targets broken down by variant: %+v", got.Variants[store.GroupExcluded])
		}

		// Delivery and conversions.
		claimed := targetIDs(claimAll(e, "r", "w"))
		if len(claimed) != 30 {
			t.Fatalf("claimed %d, want 30", len(claimed))
		}
		e.s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "r", CustomerIDs: claimed[:20], Token: "w"})
		e.s.TargetSetFailed(ctx, &store.TargetSetFailedParams{RunID: "r", Token: "w", Failures: []store.TargetFailure{
			{CustomerID: claimed[20], Error: "bounce"}, {CustomerID: claimed[21], Error: "bounce"}}})
		e.s.TargetSetSkipped(ctx, &store.TargetSetSkippedParams{RunID: "r", Token: "w", Skips: []store.TargetSkip{
			{CustomerID: claimed[22], Reason: store.ReasonQuietHours}, {CustomerID: claimed[23], Reason: store.ReasonQuietHours}}})
		ref := e.clock.Now()
		if ok, err := e.s.RunSetPhase(ctx, &store.RunSetPhaseParams{RunID: "r", To: store.PhaseSending, ReferenceAt: ref}); err != nil || !ok {
			t.Fatal(ok, err)
		}
		var conv []store.Conversion
		for _, i := range []int{1, 2, 3, 4, 8, 0} { // b, a, b treatment; a, a holdout; excluded
			conv = append(conv, store.Conversion{CustomerID: cid(i), At: ref.Add(time.Hour)})
		}
		if _, err := e.s.ConversionRecord(ctx, &store.ConversionRecordParams{RunID: "r", Conversions: conv}); err != nil {
			t.Fatal(err)
		}
		got = tally(e, "r")
		if want := tallyOf(targetsOf(e, e.s, "r")); !reflect.DeepEqual(got, want) {
			t.Errorf("after delivery: RunTally = %+v, want %+v", got, want)
		}
		for _, tc := range []struct {
			g    store.TargetGroup
			v    string
			want int64
		}{{store.GroupTreatment, "a", 1}, {store.GroupTreatment, "b", 2}, {store.GroupHoldout, "a", 2}} {
			if vt := got.Variants[tc.g][tc.v]; vt == nil || vt.Converted != tc.want {
				t.Errorf("%s variant %s: converted %+v, want %d", tc.g, tc.v, vt, tc.want)
			}
		}
		var sent int64
		for _, v := range got.Variants[store.GroupTreatment] {
			sent += v.ByState[store.StateSent]
		}
		if sent != 20 {
			t.Errorf("sent across variants = %d, want 20", sent)
		}

		// With MaxPerRun the tally is counted after the exclusions.
		createCampaignRun(e, e.s, runSpec{id: "max", campaignUID: "uid-v2", channel: "ns/email", segment: "ns/seg", snapshot: sn.ID})
		got = materialize(e, e.s, &store.RunMaterializeParams{RunID: "max", Plan: plan, MaxPerRun: 15})
		if want := tallyOf(targetsOf(e, e.s, "max")); !reflect.DeepEqual(got, want) {
			t.Errorf("with MaxPerRun: RunMaterialize tally = %+v, want %+v", got, want)
		}
		if ct := campaignTally(e, "uid-v"); ct.Variants != nil {
			t.Errorf("CampaignTally has variants: %+v", ct.Variants)
		}
	})

	t.Run("CampaignTallySurvivesRunDelete", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		sn := writeSnapshot(e, e.s, "ns/src", 0, 30)
		applySegment(e, "ns/first", sn.ID, cids(0, 20))
		applySegment(e, "ns/second", sn.ID, cids(10, 30))
		applySegment(e, "ns/vip", sn.ID, cids(15, 17))
		if err := e.s.OptOutAdd(ctx, &store.OptOutAddParams{Channel: "ns/email", CustomerID: cid(3)}); err != nil {
			t.Fatal(err)
		}
		pl := &planner{holdout: func(i int) bool { return i%5 == 0 }}
		createCampaignRun(e, e.s, runSpec{id: "r1", campaignUID: "uid-c", channel: "ns/email", segment: "ns/first", snapshot: sn.ID})
		createCampaignRun(e, e.s, runSpec{id: "r2", campaignUID: "uid-c", channel: "ns/email", segment: "ns/second", snapshot: sn.ID})
		createCampaignRun(e, e.s, runSpec{id: "other", campaignUID: "uid-d", channel: "ns/email", segment: "ns/first", snapshot: sn.ID})
		materialize(e, e.s, &store.RunMaterializeParams{RunID: "r1", Plan: pl.plan, SuppressSegments: []string{"ns/vip"}})
		materialize(e, e.s, &store.RunMaterializeParams{RunID: "r2", Plan: pl.plan, MaxPerRun: 12})
		materialize(e, e.s, &store.RunMaterializeParams{RunID: "other", Plan: pl.plan})
		// Some sending and conversions in r1.
		claimed := claimAll(e, "r1", "w")
		e.s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "r1", CustomerIDs: targetIDs(claimed)[:6], Token: "w"})
		ref := e.clock.Now()
		if ok, err := e.s.RunSetPhase(ctx, &store.RunSetPhaseParams{RunID: "r1", From: []store.RunPhase{store.PhaseMaterialized}, To: store.PhaseSending, ReferenceAt: ref}); err != nil || !ok {
			t.Fatal(ok, err)
		}
		if _, err := e.s.ConversionRecord(ctx, &store.ConversionRecordParams{RunID: "r1", Conversions: []store.Conversion{
			{CustomerID: cid(1), At: ref.Add(time.Hour)}, {CustomerID: cid(5), At: ref.Add(time.Hour)}, {CustomerID: cid(7), At: ref.Add(2 * time.Hour)},
		}}); err != nil {
			t.Fatal(err)
		}

		want := addTallies(tally(e, "r1"), tally(e, "r2"))
		if got := campaignTally(e, "uid-c"); !reflect.DeepEqual(got, want) {
			t.Fatalf("CampaignTally = %+v, want the sum of its runs %+v", got, want)
		}
		if want.Groups[store.GroupExcluded] == nil || want.Groups[store.GroupHoldout].Converted != 1 || want.Groups[store.GroupTreatment].Converted != 2 {
			t.Fatalf("the test's runs do not cover exclusions and conversions: %+v", want)
		}
		otherBefore := campaignTally(e, "uid-d")
		ledgerBefore := contacts(e, e.s, "ns/email", Epoch, cids(0, 30))
		groupsBefore, err := e.s.HoldoutGet(ctx, "uid-c", cids(0, 30))
		if err != nil {
			t.Fatal(err)
		}

		for _, r := range []string{"r1", "r1", "r2"} { // deleting twice folds once
			if err := e.s.RunDelete(ctx, r); err != nil {
				t.Fatal(err)
			}
			if got := campaignTally(e, "uid-c"); !reflect.DeepEqual(got, want) {
				t.Errorf("after deleting %s: CampaignTally = %+v, want %+v", r, got, want)
			}
		}
		if _, err := e.s.RunTally(ctx, "r1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RunTally of a deleted run = %v", err)
		}
		if got := campaignTally(e, "uid-d"); !reflect.DeepEqual(got, otherBefore) {
			t.Errorf("another campaign's tally changed: %+v, want %+v", got, otherBefore)
		}
		if got := contacts(e, e.s, "ns/email", Epoch, cids(0, 30)); !reflect.DeepEqual(got, ledgerBefore) {
			t.Errorf("ledger after RunDelete = %v, want %v", got, ledgerBefore)
		}
		if got, err := e.s.HoldoutGet(ctx, "uid-c", cids(0, 30)); err != nil || !reflect.DeepEqual(got, groupsBefore) {
			t.Errorf("assignments after RunDelete = %v, %v; want %v", got, err, groupsBefore)
		}
		if got, err := e.s.OptOutFilter(ctx, "ns/email", cids(0, 30)); err != nil || !reflect.DeepEqual(got, map[string]bool{cid(3): true}) {
			t.Errorf("opt-outs after RunDelete = %v, %v", got, err)
		}
		// A new run of the campaign adds to the folded tally.
		createCampaignRun(e, e.s, runSpec{id: "r3", campaignUID: "uid-c", channel: "ns/email", segment: "ns/first", snapshot: sn.ID})
		materialize(e, e.s, &store.RunMaterializeParams{RunID: "r3", Plan: pl.plan})
		if got, want := campaignTally(e, "uid-c"), addTallies(want, tally(e, "r3")); !reflect.DeepEqual(got, want) {
			t.Errorf("with a new run: %+v, want %+v", got, want)
		}
		if got := campaignTally(e, "uid-unknown"); len(got.Groups) != 0 {
			t.Errorf("unknown campaign tally = %+v", got)
		}
		if _, err := e.s.CampaignTally(ctx, ""); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("CampaignTally without uid = %v, want ErrInvalid", err)
		}
	})
}
