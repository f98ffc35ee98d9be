package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/store"
)

// materializeRun creates a run of customers on a channel and materializes
// them all as treatment at the clock's current time.
func materializeRun(e *env, run, channel string, snapshot int64, customers ...string) {
	e.t.Helper()
	applySegment(e, "ns/seg-"+run, snapshot, customers)
	createCampaignRun(e, e.s, runSpec{id: run, channel: channel, segment: "ns/seg-" + run, snapshot: snapshot})
	materialize(e, e.s, &store.RunMaterializeParams{RunID: run, Plan: (&planner{}).plan})
}

// claimAll claims every pending target of a run's shard 0 with a token.
func claimAll(e *env, run, token string) []*store.Target {
	e.t.Helper()
	got, err := e.s.TargetClaim(e.ctx, &store.TargetClaimParams{RunID: run, Limit: 1000, Token: token})
	if err != nil {
		e.t.Fatalf("TargetClaim(%s): %v", run, err)
	}
	return got
}

// probe materializes a run of customers on a channel for a campaign,
// excluding every member (it plans no contact and records no group), and
// returns what Plan saw of each: the cap counts since capSince and the
// recorded groups, as a materialization reads them.
func probe(e *env, run, channel, campaignUID string, snapshot int64, capSince time.Time, customers []string) map[string]store.AudienceMember {
	e.t.Helper()
	applySegment(e, "ns/seg-"+run, snapshot, customers)
	createCampaignRun(e, e.s, runSpec{id: run, campaignUID: campaignUID, channel: channel, segment: "ns/seg-" + run, snapshot: snapshot})
	pl := &planner{}
	materialize(e, e.s, &store.RunMaterializeParams{RunID: run, CapSince: capSince, Plan: func(m *store.AudienceMember, t *store.NewTarget) error {
		if err := pl.plan(m, t); err != nil {
			return err
		}
		t.Group, t.State, t.Reason = store.GroupExcluded, "", "probe"
		return nil
	}})
	if len(pl.seen) != len(customers) {
		e.t.Fatalf("probe %s: Plan saw %d members, want %d", run, len(pl.seen), len(customers))
	}
	return pl.seen
}

// probeContacts is the cap join of a probe: customer → contacts, those
// with none left out (as ContactCounts reports them).
func probeContacts(seen map[string]store.AudienceMember) map[string]int64 {
	out := map[string]int64{}
	for id, m := range seen {
		if m.Contacts != 0 {
			out[id] = m.Contacts
		}
	}
	return out
}

func exerciseLedger(ctx context.Context, t *testing.T, d *Driver) {
	// Every void entry (failed, skipped by a runner, skipped by Plan,
	// cancelled, dry run) is never counted, every live one (sent, claimed,
	// pending) is, by ContactCounts and by a materialization's cap join
	// alike, while the runs are stored, after some are deleted and after
	// all are: a deleted run's contacts still count against a cap.
	t.Run("CapAcrossDeletedRuns", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		sn := writeSnapshot(e, e.s, "ns/src", 0, 10)
		c := cids(0, 10)
		// Before the cap window.
		materializeRun(e, "old", "ns/email", sn.ID, c[0], c[1])
		capSince := e.clock.Advance(time.Hour)
		// c0 sent, c1 failed for good, c2 claimed, c3 failed and retrying.
		materializeRun(e, "sent", "ns/email", sn.ID, c[0], c[1], c[2], c[3])
		claimAll(e, "sent", "w")
		if n, err := e.s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "sent", CustomerIDs: c[:1], Token: "w"}); err != nil || n != 1 {
			t.Fatalf("sent: %d, %v", n, err)
		}
		if n, err := e.s.TargetSetFailed(ctx, &store.TargetSetFailedParams{RunID: "sent", Token: "w", Failures: []store.TargetFailure{
			{CustomerID: c[1], Error: "bounce"}, {CustomerID: c[3], Error: "503", Retryable: true},
		}}); err != nil || n != 2 {
			t.Fatalf("failed: %d, %v", n, err)
		}
		e.clock.Advance(time.Minute)
		// c4 skipped by its runner.
		materializeRun(e, "skipped", "ns/email", sn.ID, c[4])
		if n, err := e.s.TargetSetSkipped(ctx, &store.TargetSetSkippedParams{RunID: "skipped", Skips: []store.TargetSkip{{CustomerID: c[4], Reason: store.ReasonQuietHours}}}); err != nil || n != 1 {
			t.Fatalf("skipped: %d, %v", n, err)
		}
		// A dry run of c0..c5: its entries are void from the start.
		applySegment(e, "ns/seg-dry", sn.ID, c[:6])
		createCampaignRun(e, e.s, runSpec{id: "dry", channel: "ns/email", segment: "ns/seg-dry", snapshot: sn.ID, dryRun: true})
		materialize(e, e.s, &store.RunMaterializeParams{RunID: "dry", Plan: (&planner{}).plan})
		// Plan skips c6's treatment target (void from the start), c7 pending.
		applySegment(e, "ns/seg-planskip", sn.ID, c[6:8])
		createCampaignRun(e, e.s, runSpec{id: "planskip", channel: "ns/email", segment: "ns/seg-planskip", snapshot: sn.ID})
		pl := &planner{}
		materialize(e, e.s, &store.RunMaterializeParams{RunID: "planskip", Plan: func(m *store.AudienceMember, t *store.NewTarget) error {
			if err := pl.plan(m, t); err != nil {
				return err
			}
			if m.Customer.ID == c[6] {
				t.State, t.Reason = store.StateSkipped, store.ReasonQuietHours
			}
			return nil
		}})
		// c8 cancelled; c9 on another channel.
		materializeRun(e, "cancelled", "ns/email", sn.ID, c[8])
		if n, err := e.s.RunCancel(ctx, "cancelled"); err != nil || n != 1 {
			t.Fatalf("cancel: %d, %v", n, err)
		}
		materializeRun(e, "sms", "ns/sms", sn.ID, c[9], c[0])

		inWindow := map[string]int64{c[0]: 1, c[2]: 1, c[3]: 1, c[7]: 1}
		sinceEpoch := map[string]int64{c[0]: 2, c[1]: 1, c[2]: 1, c[3]: 1, c[7]: 1}
		probes := 0
		check := func(when string) {
			t.Helper()
			for _, tc := range []struct {
				since time.Time
				want  map[string]int64
			}{{capSince, inWindow}, {Epoch, sinceEpoch}} {
				if got := contacts(e, e.s, "ns/email", tc.since, c); !reflect.DeepEqual(got, tc.want) {
					t.Errorf("%s: ContactCounts since %v = %v, want %v", when, tc.since, got, tc.want)
				}
				probes++
				seen := probe(e, fmt.Sprintf("probe%d", probes), "ns/email", "", sn.ID, tc.since, c)
				if got := probeContacts(seen); !reflect.DeepEqual(got, tc.want) {
					t.Errorf("%s: materialization's cap join since %v = %v, want %v", when, tc.since, got, tc.want)
				}
			}
			if got, want := contacts(e, e.s, "ns/sms", Epoch, c), map[string]int64{c[0]: 1, c[9]: 1}; !reflect.DeepEqual(got, want) {
				t.Errorf("%s: other channel = %v, want %v", when, got, want)
			}
		}
		check("runs stored")
		for _, r := range []string{"sent", "dry", "cancelled"} {
			if err := e.s.RunDelete(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		check("some runs deleted")
		for _, r := range []string{"old", "skipped", "planskip", "sms", "sent"} {
			if err := e.s.RunDelete(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		for i := 1; i <= probes; i++ {
			if err := e.s.RunDelete(ctx, fmt.Sprintf("probe%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		check("all runs deleted")
	})

	// A run is deleted while another materializes on its channel and a
	// third materializes for its campaign: the two read its contacts and
	// groups either from its targets or from the records it moved them to,
	// never neither, never both.
	t.Run("DeleteWhileMaterializing", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		const n = 300
		sn := writeSnapshot(e, e.s, "ns/src", 0, n)
		applySegment(e, "ns/all", sn.ID, cids(0, n))
		applySegment(e, "ns/half", sn.ID, cids(0, n/2))
		for round := 0; round < 3; round++ {
			channel, uid := fmt.Sprintf("ns/email-%d", round), fmt.Sprintf("uid-%d", round)
			old, capped, grouped := fmt.Sprintf("old%d", round), fmt.Sprintf("capped%d", round), fmt.Sprintf("grouped%d", round)
			createCampaignRun(e, e.s, runSpec{id: old, campaignUID: uid, channel: channel, segment: "ns/half", snapshot: sn.ID})
			materialize(e, e.s, &store.RunMaterializeParams{RunID: old, Plan: (&planner{holdout: func(i int) bool { return i%3 == 0 }}).plan})
			createCampaignRun(e, e.s, runSpec{id: capped, channel: channel, segment: "ns/all", snapshot: sn.ID})
			createCampaignRun(e, e.s, runSpec{id: grouped, campaignUID: uid, channel: "ns/sms", segment: "ns/all", snapshot: sn.ID})
			errs := make([]error, 3)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i, fn := range []func(s store.Store) error{
				func(s store.Store) error { return s.RunDelete(ctx, old) },
				func(s store.Store) error {
					_, err := s.RunMaterialize(ctx, &store.RunMaterializeParams{RunID: capped, CapSince: Epoch, Plan: (&planner{maxContacts: 1}).plan})
					return err
				},
				func(s store.Store) error {
					_, err := s.RunMaterialize(ctx, &store.RunMaterializeParams{RunID: grouped, Plan: (&planner{}).plan})
					return err
				},
			} {
				s := e.open()
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					errs[i] = fn(s)
				}()
			}
			close(start)
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			// old's treatment targets (i%3 != 0) were contacts; its holdout
			// ones were not.
			for id, tg := range targetsOf(e, e.s, capped) {
				i := cidIndex(id)
				want := store.GroupTreatment
				if i < n/2 && i%3 != 0 {
					want = store.GroupExcluded
				}
				if tg.Group != want {
					t.Errorf("round %d: %s in the capped run: %s/%s, want %s", round, id, tg.Group, tg.Reason, want)
				}
			}
			for id, tg := range targetsOf(e, e.s, grouped) {
				i := cidIndex(id)
				want := store.GroupTreatment
				if i < n/2 && i%3 == 0 {
					want = store.GroupHoldout
				}
				if tg.Group != want {
					t.Errorf("round %d: %s in the grouped run: %s, want %s", round, id, tg.Group, want)
				}
			}
			for id, k := range contacts(e, e.s, channel, Epoch, cids(0, n)) {
				if k != 1 {
					t.Errorf("round %d: %s has %d contacts", round, id, k)
				}
			}
		}
	})

	t.Run("FrequencyCapCounts", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		sn := writeSnapshot(e, e.s, "ns/src", 0, 10)
		c := cids(0, 10)
		t0 := e.clock.Now()
		// r1: c0 and c1 sent, c2 skipped (void).
		materializeRun(e, "r1", "ns/email", sn.ID, c[0], c[1], c[2])
		claimAll(e, "r1", "w")
		if n, err := e.s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "r1", CustomerIDs: c[:2], Token: "w"}); err != nil || n != 2 {
			t.Fatalf("sent: %d, %v", n, err)
		}
		if n, err := e.s.TargetSetSkipped(ctx, &store.TargetSetSkippedParams{RunID: "r1", Token: "w", Skips: []store.TargetSkip{{CustomerID: c[2], Reason: store.ReasonQuietHours}}}); err != nil || n != 1 {
			t.Fatalf("skipped: %d, %v", n, err)
		}
		t1 := e.clock.Advance(24 * time.Hour)
		// r2: c0 sent, c1 failed for good (void).
		materializeRun(e, "r2", "ns/email", sn.ID, c[0], c[1])
		claimAll(e, "r2", "w")
		e.s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "r2", CustomerIDs: c[:1], Token: "w"})
		if n, err := e.s.TargetSetFailed(ctx, &store.TargetSetFailedParams{RunID: "r2", Token: "w", Failures: []store.TargetFailure{{CustomerID: c[1], Error: "bounce"}}}); err != nil || n != 1 {
			t.Fatalf("failed: %d, %v", n, err)
		}
		e.clock.Advance(24 * time.Hour)
		// r3: c0 failed, will retry (still planned); r4: c5 claimed, not
		// recorded; rc: c4 cancelled (void); sms: another channel.
		materializeRun(e, "r3", "ns/email", sn.ID, c[0])
		claimAll(e, "r3", "w")
		e.s.TargetSetFailed(ctx, &store.TargetSetFailedParams{RunID: "r3", Token: "w", Failures: []store.TargetFailure{{CustomerID: c[0], Error: "503", Retryable: true}}})
		materializeRun(e, "r4", "ns/email", sn.ID, c[5])
		claimAll(e, "r4", "w")
		materializeRun(e, "rc", "ns/email", sn.ID, c[4])
		if n, err := e.s.RunCancel(ctx, "rc"); err != nil || n != 1 {
			t.Fatalf("cancel: %d, %v", n, err)
		}
		materializeRun(e, "sms", "ns/sms", sn.ID, c[0], c[1], c[3])
		// A materialized run, nothing sent yet: its contacts count.
		materializeRun(e, "planned", "ns/push", sn.ID, c[6], c[7])
		// The audience to check: an ad-hoc run's targets (TargetInsert
		// writes no ledger entry) and a segment.
		createRun(e, "next", "ns/email", 1)
		insertTargets(e, "next", []store.NewTarget{{CustomerID: c[0]}, {CustomerID: c[1]}, {CustomerID: c[3]}, {CustomerID: c[4]}})
		applySegment(e, "ns/aud", sn.ID, []string{c[0], c[1], c[3], c[4]})

		count := func(p store.ContactCountsParams) map[string]int64 {
			t.Helper()
			got := map[string]int64{}
			if err := e.s.ContactCounts(ctx, &p, func(id string, n int64) error { got[id] = n; return nil }); err != nil {
				t.Fatalf("ContactCounts(%+v): %v", p, err)
			}
			return got
		}
		check := func(when string) {
			t.Helper()
			for _, tc := range []struct {
				name string
				p    store.ContactCountsParams
				want map[string]int64
			}{
				{"run audience since t0", store.ContactCountsParams{Channel: "ns/email", Since: t0, RunID: "next"}, map[string]int64{c[0]: 3, c[1]: 1}},
				{"run audience since t1", store.ContactCountsParams{Channel: "ns/email", Since: t1, RunID: "next"}, map[string]int64{c[0]: 2}},
				{"segment audience", store.ContactCountsParams{Channel: "ns/email", Since: t0, Segment: "ns/aud"}, map[string]int64{c[0]: 3, c[1]: 1}},
				{"listed customers", store.ContactCountsParams{Channel: "ns/email", Since: t0, CustomerIDs: []string{c[2], c[1], c[5], "zed"}}, map[string]int64{c[1]: 1, c[5]: 1}},
				{"planned, not sent", store.ContactCountsParams{Channel: "ns/push", Since: t0, CustomerIDs: c}, map[string]int64{c[6]: 1, c[7]: 1}},
				{"other channel", store.ContactCountsParams{Channel: "ns/sms", Since: t0, RunID: "next"}, map[string]int64{c[0]: 1, c[1]: 1, c[3]: 1}},
				{"window after all", store.ContactCountsParams{Channel: "ns/email", Since: e.clock.Now().Add(time.Second), RunID: "next"}, map[string]int64{}},
				{"empty list", store.ContactCountsParams{Channel: "ns/email", Since: t0, CustomerIDs: []string{}}, map[string]int64{}},
			} {
				if got := count(tc.p); !reflect.DeepEqual(got, tc.want) {
					t.Errorf("%s: %s: %v, want %v", when, tc.name, got, tc.want)
				}
			}
		}
		check("before deletes")
		// The ledger outlives its runs.
		for _, r := range []string{"r1", "r2", "r3", "r4", "rc", "sms", "planned"} {
			if err := e.s.RunDelete(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		check("after the runs were deleted")

		for _, p := range []store.ContactCountsParams{
			{Channel: "ns/email", Since: t0},
			{Channel: "ns/email", Since: t0, RunID: "next", Segment: "ns/aud"},
			{Since: t0, RunID: "next"},
		} {
			if err := e.s.ContactCounts(ctx, &p, func(string, int64) error { return nil }); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("ContactCounts(%+v) = %v, want ErrInvalid", p, err)
			}
		}
	})

	t.Run("CancelVoidsPendingOnly", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		sn := writeSnapshot(e, e.s, "ns/src", 0, 20)
		materializeRun(e, "r", "ns/email", sn.ID, cids(0, 20)...)
		claimed, err := e.s.TargetClaim(ctx, &store.TargetClaimParams{RunID: "r", Limit: 5, Token: "w"})
		if err != nil || len(claimed) != 5 {
			t.Fatalf("claim: %d, %v", len(claimed), err)
		}
		n, err := e.s.RunCancel(ctx, "r")
		if err != nil || n != 15 {
			t.Fatalf("RunCancel = %d, %v; want 15", n, err)
		}
		if r, err := e.s.RunGet(ctx, "r"); err != nil || r.Phase != store.PhaseCancelled {
			t.Errorf("phase after cancel = %+v, %v", r, err)
		}
		got := contacts(e, e.s, "ns/email", Epoch, cids(0, 20))
		if len(got) != 5 {
			t.Errorf("%d live ledger entries after cancel, want the 5 claimed", len(got))
		}
		for _, tg := range claimed {
			if got[tg.CustomerID] != 1 {
				t.Errorf("claimed %s has %d entries", tg.CustomerID, got[tg.CustomerID])
			}
		}
		// The runner records its claims as usual.
		if n, err := e.s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "r", CustomerIDs: targetIDs(claimed), Token: "w"}); err != nil || n != 5 {
			t.Errorf("record after cancel: %d, %v", n, err)
		}
		if got, want := tally(e, "r").Groups[store.GroupTreatment], (&store.GroupTally{Total: 20,
			ByState:         map[store.TargetState]int64{store.StateSent: 5, store.StateSkipped: 15},
			SkippedByReason: map[string]int64{store.ReasonCancelled: 15}}); !reflect.DeepEqual(got, want) {
			t.Errorf("tally after cancel = %+v, want %+v", got, want)
		}
		// Cancelling again skips nothing more; a finished run keeps its phase.
		if n, err := e.s.RunCancel(ctx, "r"); err != nil || n != 0 {
			t.Errorf("second RunCancel = %d, %v", n, err)
		}
		materializeRun(e, "done", "ns/email", sn.ID, cids(0, 2)...)
		if ok, err := e.s.RunSetPhase(ctx, &store.RunSetPhaseParams{RunID: "done", To: store.PhaseSucceeded}); err != nil || !ok {
			t.Fatal(ok, err)
		}
		if _, err := e.s.RunCancel(ctx, "done"); err != nil {
			t.Fatal(err)
		}
		if r, _ := e.s.RunGet(ctx, "done"); r.Phase != store.PhaseSucceeded {
			t.Errorf("cancel of a succeeded run moved it to %s", r.Phase)
		}
		if _, err := e.s.RunCancel(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RunCancel(unknown) = %v, want ErrNotFound", err)
		}
	})

	// A campaign's holdout is never contacted, yet the campaign's later
	// runs cap its customers as if it had been (ghost contacts): without
	// them a cap removes treatment customers only and the groups drift
	// apart. Ghosts count for the campaign's own runs on the run's channel
	// only, in the windows the run's real contacts fall in, never in
	// ContactCounts, and they survive RunDelete.
	t.Run("GhostContacts", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		sn := writeSnapshot(e, e.s, "ns/src", 0, 12)
		c := cids(0, 12)
		holdout := func(i int) bool { return i%4 == 0 }
		// Run 1 of campaign A: c0, c4 and c8 held out, the others treated
		// and sent. Scheduled at Epoch, materialized an hour later: its
		// contacts, real and ghost, are at the materialization.
		applySegment(e, "ns/seg-a1", sn.ID, c)
		createCampaignRun(e, e.s, runSpec{id: "a1", campaignUID: "uid-a", channel: "ns/email", segment: "ns/seg-a1", snapshot: sn.ID})
		matAt := e.clock.Advance(time.Hour)
		got := materialize(e, e.s, &store.RunMaterializeParams{RunID: "a1", CapSince: Epoch, Plan: (&planner{maxContacts: 1, holdout: holdout}).plan})
		if got, want := groupTotals(got), map[store.TargetGroup]int64{store.GroupTreatment: 9, store.GroupHoldout: 3}; !reflect.DeepEqual(got, want) {
			t.Fatalf("run 1: %v, want %v", got, want)
		}
		treated := targetIDs(claimAll(e, "a1", "w"))
		if n, err := e.s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "a1", CustomerIDs: treated, Token: "w"}); err != nil || n != 9 {
			t.Fatalf("sent: %d, %v", n, err)
		}
		e.clock.Advance(time.Hour)
		all1, treated1 := map[string]int64{}, map[string]int64{}
		for i, id := range c {
			all1[id] = 1
			if !holdout(i) {
				treated1[id] = 1
			}
		}
		runs := 0
		next := func(prefix string) string { runs++; return fmt.Sprintf("%s%d", prefix, runs) }
		// capRun materializes a run of c with a cap of one contact since
		// Epoch and returns the customers it capped.
		capRun := func(campaignUID string, dryRun bool) map[string]int64 {
			t.Helper()
			run := next("cap")
			applySegment(e, "ns/seg-"+run, sn.ID, c)
			createCampaignRun(e, e.s, runSpec{id: run, campaignUID: campaignUID, channel: "ns/email", segment: "ns/seg-" + run, snapshot: sn.ID, dryRun: dryRun})
			materialize(e, e.s, &store.RunMaterializeParams{RunID: run, CapSince: Epoch, Plan: (&planner{maxContacts: 1, holdout: holdout}).plan})
			capped := map[string]int64{}
			for id, tg := range targetsOf(e, e.s, run) {
				if tg.Reason == store.ReasonCapped {
					capped[id] = 1
				}
			}
			return capped
		}
		check := func(when string) {
			t.Helper()
			for _, tc := range []struct {
				name, channel, campaign string
				since                   time.Time
				want                    map[string]int64
			}{
				{"the same campaign", "ns/email", "uid-a", Epoch, all1},
				{"the same campaign, window from run 1", "ns/email", "uid-a", matAt, all1},
				{"the same campaign, window after run 1", "ns/email", "uid-a", matAt.Add(time.Microsecond), map[string]int64{}},
				{"another campaign", "ns/email", "uid-b", Epoch, treated1},
				{"the same campaign on another channel", "ns/sms", "uid-a", Epoch, map[string]int64{}},
			} {
				seen := probe(e, next("probe"), tc.channel, tc.campaign, sn.ID, tc.since, c)
				if got := probeContacts(seen); !reflect.DeepEqual(got, tc.want) {
					t.Errorf("%s: %s: Contacts in Plan = %v, want %v", when, tc.name, got, tc.want)
				}
			}
			// ContactCounts counts real contacts only.
			if got := contacts(e, e.s, "ns/email", Epoch, c); !reflect.DeepEqual(got, treated1) {
				t.Errorf("%s: ContactCounts = %v, want %v", when, got, treated1)
			}
			// Run 2 of campaign A caps everyone run 1 had, treated or held
			// out (and, capping all, records nothing); a run of campaign B
			// caps run 1's treated only. B's is a dry run: it records no
			// contact that a later check would count.
			if got := capRun("uid-a", false); !reflect.DeepEqual(got, all1) {
				t.Errorf("%s: run 2 of the campaign capped %v, want %v", when, got, all1)
			}
			if got := capRun("uid-b", true); !reflect.DeepEqual(got, treated1) {
				t.Errorf("%s: a run of another campaign capped %v, want %v", when, got, treated1)
			}
		}
		check("run 1 stored")
		if err := e.s.RunDelete(ctx, "a1"); err != nil {
			t.Fatal(err)
		}
		check("run 1 deleted")
	})

	// A dry run records no ghost contacts; a run cancelled before it
	// contacted anyone voids them with its ledger entries; one cancelled
	// after some of its treatment was claimed or sent keeps them. Deleting
	// the runs changes nothing.
	t.Run("GhostContactsVoid", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		sn := writeSnapshot(e, e.s, "ns/src", 0, 24)
		c := cids(0, 24)
		pl := func() func(*store.AudienceMember, *store.NewTarget) error {
			return (&planner{holdout: func(i int) bool { return i%4 == 0 }}).plan
		}
		for _, r := range []runSpec{
			{id: "dry", segment: "ns/seg-dry", dryRun: true}, // c0..c7
			{id: "early", segment: "ns/seg-early"},           // c8..c15
			{id: "late", segment: "ns/seg-late"},             // c16..c23
		} {
			from := map[string]int{"dry": 0, "early": 8, "late": 16}[r.id]
			applySegment(e, r.segment, sn.ID, c[from:from+8])
			r.campaignUID, r.channel, r.snapshot = "uid-a", "ns/email", sn.ID
			createCampaignRun(e, e.s, r)
			materialize(e, e.s, &store.RunMaterializeParams{RunID: r.id, Plan: pl()})
		}
		if n, err := e.s.RunCancel(ctx, "early"); err != nil || n != 6 {
			t.Fatalf("cancel early: %d, %v", n, err)
		}
		// late: c17 sent, c18 claimed, then cancelled (c16, c20 held out).
		claimed, err := e.s.TargetClaim(ctx, &store.TargetClaimParams{RunID: "late", Limit: 2, Token: "w"})
		if err != nil || !reflect.DeepEqual(targetIDs(claimed), []string{c[17], c[18]}) {
			t.Fatalf("claim late: %v, %v", targetIDs(claimed), err)
		}
		if n, err := e.s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "late", CustomerIDs: c[17:18], Token: "w"}); err != nil || n != 1 {
			t.Fatalf("sent: %d, %v", n, err)
		}
		if n, err := e.s.RunCancel(ctx, "late"); err != nil || n != 4 {
			t.Fatalf("cancel late: %d, %v", n, err)
		}
		want := map[string]int64{c[16]: 1, c[17]: 1, c[18]: 1, c[20]: 1}
		probes := 0
		check := func(when string) {
			t.Helper()
			probes++
			seen := probe(e, fmt.Sprintf("probe%d", probes), "ns/email", "uid-a", sn.ID, Epoch, c)
			if got := probeContacts(seen); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: Contacts in Plan = %v, want %v", when, got, want)
			}
		}
		check("runs stored")
		// A second cancel changes nothing.
		if _, err := e.s.RunCancel(ctx, "late"); err != nil {
			t.Fatal(err)
		}
		check("cancelled again")
		for _, r := range []string{"dry", "early", "late"} {
			if err := e.s.RunDelete(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		check("runs deleted")
	})
}
