package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
)

// erasureCanaries are the personal data of Customer(7) and Customer(4),
// the customers the erasure test forgets: after ErasureApply none of it
// may be anywhere in the database but in the other source's snapshot
// (which holds a customer with the same id, and other contact data).
func erasureCanaries() []string {
	var out []string
	for _, i := range []int{7, 4} {
		var c customer.Scored
		Customer(i, &c)
		out = append(out, c.ID, c.Contact.Email, c.Contact.Phone)
	}
	return out
}

func exerciseErasure(ctx context.Context, t *testing.T, d *Driver) {
	t.Run("ForgetsEverythingKeepsFigures", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		const src, crm = "ns/shop", "ns/crm"
		erased := []string{cid(7), cid(4)}

		// Another source with a customer of the same id: untouched.
		crmCustomer := func() *customer.Scored {
			var c customer.Scored
			Customer(7, &c)
			out := clone(&c)
			out.Contact.Email, out.Contact.Phone = "crm7@example.org", ""
			return &out
		}()
		crmSnap := writeSnapshot(e, e.s, crm, 0, 0, crmCustomer)

		// r0: materialized, then deleted: its ledger entries, ghost
		// contacts and holdout assignments are kept records.
		s1 := snapshotOf(e, src, 10, nil)
		applySegment(e, "ns/all", s1.ID, cids(0, 10))
		pl := &planner{holdout: func(i int) bool { return i%4 == 0 }} // 0 4 8 held out; 7 treatment
		createCampaignRun(e, e.s, runSpec{id: "r0", campaignUID: "uid-e", channel: "ns/mail", segment: "ns/all", snapshot: s1.ID})
		materialize(e, e.s, &store.RunMaterializeParams{RunID: "r0", Plan: pl.plan})
		claimAll(e, "r0", "tok0")
		if _, err := e.s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "r0", CustomerIDs: cids(0, 10)}); err != nil {
			t.Fatal(err)
		}
		if err := e.s.RunDelete(ctx, "r0"); err != nil {
			t.Fatal(err)
		}

		// r1: sent, measured, the erased among the converted.
		e.clock.Advance(24 * time.Hour)
		day := time.Date(2025, 3, 10, 0, 0, 0, 0, time.UTC)
		s2 := snapshotOf(e, src, 10, nil)
		applySegment(e, "ns/all", s2.ID, cids(0, 10))
		createCampaignRun(e, e.s, runSpec{id: "r1", campaignUID: "uid-e", channel: "ns/mail", segment: "ns/all", snapshot: s2.ID})
		materialize(e, e.s, &store.RunMaterializeParams{RunID: "r1", Plan: pl.plan})
		claimAll(e, "r1", "tok1")
		if _, err := e.s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "r1", CustomerIDs: cids(0, 10)}); err != nil {
			t.Fatal(err)
		}
		if ok, err := e.s.RunSetPhase(ctx, &store.RunSetPhaseParams{RunID: "r1", To: store.PhaseMeasuring, ReferenceAt: day.Add(15 * time.Hour)}); err != nil || !ok {
			t.Fatal(ok, err)
		}
		s3 := snapshotOf(e, src, 10, nil, bought(7, 1, 40, day), bought(4, 2, 10, day), bought(1, 1, 30, day))
		if res, err := e.s.RunMeasure(ctx, &store.RunMeasureParams{RunID: "r1", SnapshotID: s3.ID, Measure: purchasesBeyondBaseline}); err != nil || res.Converted != 3 {
			t.Fatalf("RunMeasure = %+v, %v; want 3 converted", res, err)
		}

		// r2: materialized, not sent: the erased treatment target is skipped.
		applySegment(e, "ns/all", s3.ID, cids(0, 10))
		createCampaignRun(e, e.s, runSpec{id: "r2", campaignUID: "uid-e", channel: "ns/mail", segment: "ns/all", snapshot: s3.ID})
		materialize(e, e.s, &store.RunMaterializeParams{RunID: "r2", Plan: pl.plan})

		for _, p := range []store.OptOutAddParams{
			{Channel: "ns/mail", CustomerID: cid(7)}, {Channel: "ns/sms", CustomerID: cid(7)}, {Channel: "ns/mail", CustomerID: cid(5)},
		} {
			if err := e.s.OptOutAdd(ctx, &p); err != nil {
				t.Fatal(err)
			}
		}

		r1Before, r2Before := tally(e, "r1"), tally(e, "r2")
		strataBefore, err := e.s.CampaignStrata(ctx, "uid-e")
		if err != nil {
			t.Fatal(err)
		}
		segBefore := stateOf(e, "ns/all")

		res, err := e.s.ErasureApply(ctx, &store.ErasureApplyParams{Source: src, CustomerIDs: []string{cid(7), cid(4), cid(7)}})
		if err != nil {
			t.Fatalf("ErasureApply: %v", err)
		}
		// 2 customers: in 3 snapshots, 1 segment, 2 runs (r1, r2); r2's
		// treatment target of c7 was pending; r0's records: c7's ledger
		// entry, both holdout assignments, c4's ghost contact; c7's two
		// opt-outs.
		want := store.ErasureResult{Tombstones: 2, SnapshotRows: 6, Memberships: 2, Segments: 1, Targets: 4, SkippedTargets: 1, Records: 4, OptOuts: 2}
		if *res != want {
			t.Errorf("ErasureApply = %+v, want %+v", *res, want)
		}
		again, err := e.s.ErasureApply(ctx, &store.ErasureApplyParams{Source: src, CustomerIDs: erased})
		if want := (store.ErasureResult{AlreadyErased: 2}); err != nil || *again != want {
			t.Errorf("ErasureApply again = %+v, %v; want %+v", again, err, want)
		}

		// Nothing personal of the erased is left but in the other source.
		sawOther := false
		for table, rows := range d.Dump(t, e.url) {
			for _, row := range rows {
				if strings.Contains(row, "crm7@example.org") {
					sawOther = true // the dump does see customers' data
					continue        // the other source's customer c7
				}
				for _, canary := range erasureCanaries() {
					if strings.Contains(row, canary) {
						t.Errorf("table %s still holds %q: %s", table, canary, row)
					}
				}
			}
		}
		if !sawOther {
			t.Errorf("the dump holds no row of the other source's customer: it proves nothing")
		}
		if got, err := scanIDs(e, e.s, crmSnap.ID); err != nil || !reflect.DeepEqual(got, []string{cid(7)}) {
			t.Errorf("the other source's snapshot = %v, %v; want its c7 untouched", got, err)
		}
		for _, sn := range []*store.Snapshot{s1, s2, s3} {
			got, err := e.s.SnapshotGetByID(ctx, sn.ID)
			if err != nil || got.Customers != 8 {
				t.Errorf("snapshot %d: %+v, %v; want 8 customers", sn.ID, got, err)
			}
		}

		// The figures stand: tallies, strata; r2 has one skipped more.
		if got := tally(e, "r1"); !reflect.DeepEqual(got, r1Before) {
			t.Errorf("r1 tally changed: %+v → %+v", r1Before, got)
		}
		if got, before := states(tally(e, "r2"), store.GroupTreatment), states(r2Before, store.GroupTreatment); got[store.StateSkipped] != before[store.StateSkipped]+1 || got[store.StatePending] != before[store.StatePending]-1 {
			t.Errorf("r2 treatment states %v → %v; want one pending skipped", before, got)
		}
		if got, err := e.s.CampaignStrata(ctx, "uid-e"); err != nil || !reflect.DeepEqual(got, strataBefore) {
			t.Errorf("strata changed: %+v → %+v (%v)", strataBefore, got, err)
		}
		tg := targetsOf(e, e.s, "r2")
		skipped := 0
		for id, x := range tg {
			if x.Reason == store.ReasonErased {
				skipped++
				if !strings.HasPrefix(id, "erased-") || x.Data.Address != "" || x.State != store.StateSkipped {
					t.Errorf("erased target %s: %+v", id, x)
				}
			}
		}
		if skipped != 1 {
			t.Errorf("r2 has %d targets skipped as erased, want 1", skipped)
		}

		// The segment lost them and moved its version on.
		segAfter := stateOf(e, "ns/all")
		if len(segAfter.members) != 8 || segAfter.summary.Size != 8 || segAfter.summary.Version == segBefore.summary.Version {
			t.Errorf("segment after: %d members, %+v (before %+v)", len(segAfter.members), segAfter.summary, segBefore.summary)
		}
		if _, err := e.applyChanges("ns/all", s3.ID, segBefore.summary.Version, nil, []string{cid(1)}); !errors.Is(err, store.ErrBaseMoved) {
			t.Errorf("incremental apply on the version before the erasure: %v, want ErrBaseMoved", err)
		}

		// Opt-outs: the erased's are gone, the others stay.
		if got, err := e.s.OptOutFilter(ctx, "ns/mail", []string{cid(7), cid(5)}); err != nil || !reflect.DeepEqual(got, map[string]bool{cid(5): true}) {
			t.Errorf("opt-outs after = %v, %v", got, err)
		}

		// Tombstones and the runner's check, per source.
		ts, err := e.s.TombstonesGet(ctx, src)
		if err != nil || ts.Len() != 2 || ts.Through == 0 || !ts.Erased(cid(7)) || !ts.Erased(cid(4)) || ts.Erased(cid(5)) {
			t.Fatalf("TombstonesGet(%s) = %+v (len %d), %v", src, ts, ts.Len(), err)
		}
		if ts, err := e.s.TombstonesGet(ctx, crm); err != nil || ts.Len() != 0 || ts.Through != 0 || ts.Erased(cid(7)) {
			t.Errorf("TombstonesGet(%s) = %+v, %v; want none", crm, ts, err)
		}
		if got, err := e.s.ErasedFilter(ctx, src, []string{cid(7), cid(4), cid(5), cid(7)}); err != nil || !reflect.DeepEqual(got, map[string]bool{cid(7): true, cid(4): true}) {
			t.Errorf("ErasedFilter(%s) = %v, %v", src, got, err)
		}
		if got, err := e.s.ErasedFilter(ctx, crm, []string{cid(7)}); err != nil || len(got) != 0 {
			t.Errorf("ErasedFilter(%s) = %v, %v; want none", crm, got, err)
		}

		// A re-import leaves them out (ErasedThrough 0: every tombstone).
		s4 := writeSnapshot(e, e.s, src, 0, 10)
		if got, err := scanIDs(e, e.s, s4.ID); err != nil || len(got) != 8 || s4.Customers != 8 || contains(got, erased...) {
			t.Errorf("re-import = %v (%d customers), %v; want the erased left out", got, s4.Customers, err)
		}

		// An erasure while a snapshot is written: the writer was told of
		// the tombstones so far (it left c7 and c4 out itself); c2 is
		// erased before its Commit, which leaves c2 out too.
		w, err := e.s.SnapshotWrite(ctx, &store.SnapshotWriteParams{Source: src, ErasedThrough: ts.Through})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Abort()
		var c customer.Scored
		for i := 0; i < 10; i++ {
			if Customer(i, &c); !ts.Erased(c.ID) {
				if err := w.Add(&c); err != nil {
					t.Fatal(err)
				}
			}
		}
		done := make(chan error, 1)
		go func() {
			_, err := e.open().ErasureApply(ctx, &store.ErasureApplyParams{Source: src, CustomerIDs: []string{cid(2)}})
			done <- err
		}()
		// SQLite's writer holds the database's write lock: the erasure
		// waits for the Commit; PostgreSQL's may run first.
		time.Sleep(100 * time.Millisecond)
		s5, err := w.Commit()
		if err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("concurrent ErasureApply: %v", err)
		}
		if got, err := scanIDs(e, e.s, s5.ID); err != nil || len(got) != 7 || contains(got, cid(2), cid(7), cid(4)) {
			t.Errorf("snapshot written during an erasure = %v, %v; want c2 left out too", got, err)
		}
	})

	// A membership apply computed before an erasure, applied after it (the
	// segment controller scanned the snapshot, then the erasure
	// committed): the erased stay out, full or incremental.
	t.Run("StaleAppliesLeaveTheErasedOut", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		s1 := writeSnapshot(e, e.s, "ns/shop", 0, 10)
		applySegment(e, "ns/seg", s1.ID, cids(0, 5))
		if _, err := e.s.ErasureApply(ctx, &store.ErasureApplyParams{Source: "ns/shop", CustomerIDs: []string{cid(2), cid(7)}}); err != nil {
			t.Fatal(err)
		}
		if diff := e.applyFull("ns/seg", s1.ID, cids(0, 8)); diff.Size != 6 {
			t.Errorf("stale full apply: %+v, want 6 members (0..7 but the erased 2 and 7)", diff)
		}
		m, err := e.s.MembershipGet(ctx, "ns/seg")
		if err != nil {
			t.Fatal(err)
		}
		diff, err := e.applyChanges("ns/seg", s1.ID, m.Version, []string{cid(7), cid(8)}, nil)
		if err != nil || diff.Entered != 1 || diff.Size != 7 {
			t.Errorf("stale incremental apply: %+v, %v; want only c8 entered", diff, err)
		}
		if got := membersOf(e, "ns/seg", 0); len(got) != 7 || got[cid(2)].CustomerID != "" || got[cid(7)].CustomerID != "" {
			t.Errorf("members after the stale applies: %v", got)
		}
	})

	t.Run("Validation", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		for _, p := range []store.ErasureApplyParams{
			{Source: "ns/shop"},
			{Source: "ns/shop", CustomerIDs: []string{"neighbour-id", ""}},
			{Source: "", CustomerIDs: []string{"a"}},
			{Source: "ns/shop", CustomerIDs: make([]string, store.MaxErasureIDs+1)},
		} {
			_, err := e.s.ErasureApply(ctx, &p)
			if !errors.Is(err, store.ErrInvalid) {
				t.Errorf("ErasureApply(%s, %d ids) = %v, want ErrInvalid", p.Source, len(p.CustomerIDs), err)
			} else if strings.Contains(err.Error(), "neighbour-id") {
				t.Errorf("the error names a customer id: %v", err)
			}
		}
		if _, err := e.s.TombstonesGet(ctx, ""); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("TombstonesGet(\"\") = %v", err)
		}
		if got, err := e.s.ErasedFilter(ctx, "ns/shop", []string{"a"}); err != nil || len(got) != 0 {
			t.Errorf("ErasedFilter before any erasure = %v, %v", got, err)
		}
	})
}

// contains reports whether any of want is in ids.
func contains(ids []string, want ...string) bool {
	for _, id := range ids {
		for _, w := range want {
			if id == w {
				return true
			}
		}
	}
	return false
}

// RowText is a Driver.Dump row: its values as text, byte strings as they
// are (so a canary stored as bytes is found too), separated by " | ".
func RowText(vals []any) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		switch v := v.(type) {
		case []byte:
			parts[i] = string(v)
		case string:
			parts[i] = v
		default:
			parts[i] = fmt.Sprint(v)
		}
	}
	return strings.Join(parts, " | ")
}
