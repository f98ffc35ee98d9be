package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
)

// cid is the id Customer(i) gets.
func cid(i int) string {
	var c customer.Scored
	Customer(i, &c)
	return c.ID
}

// cids returns the ids of Customer(from) … Customer(to-1).
func cids(from, to int) []string {
	out := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, cid(i))
	}
	return out
}

// cidIndex parses the number of a Customer id.
func cidIndex(id string) int {
	var i int
	if _, err := fmtSscan(id, &i); err != nil {
		return -1
	}
	return i
}

// runSpec is a campaign run for the materialization tests.
type runSpec struct {
	id, campaignUID, channel, segment string
	snapshot                          int64
	shards                            int32
	dryRun                            bool
}

func createCampaignRun(e *env, s store.Store, r runSpec) *store.Run {
	e.t.Helper()
	if r.shards == 0 {
		r.shards = 1
	}
	if r.campaignUID == "" {
		r.campaignUID = "uid-" + r.id
	}
	run, err := s.RunCreate(e.ctx, &store.RunCreateParams{
		RunID: r.id, Campaign: "ns/" + r.campaignUID, CampaignUID: r.campaignUID, Channel: r.channel,
		Segment: r.segment, SnapshotID: r.snapshot, Shards: r.shards, DryRun: r.dryRun,
		ScheduledAt: e.clock.Now(), ConversionWindow: 7 * 24 * time.Hour, HoldoutPercent: 10,
	})
	if err != nil {
		e.t.Fatalf("RunCreate(%s): %v", r.id, err)
	}
	return run
}

func applySegment(e *env, segment string, snapshot int64, members []string) {
	e.t.Helper()
	if _, err := e.s.MembershipApply(e.ctx, &store.MembershipApplyParams{Segment: segment, SnapshotID: snapshot,
		Members: store.MembersFromSlice(members)}); err != nil {
		e.t.Fatalf("MembershipApply(%s): %v", segment, err)
	}
}

// planner is a Plan with the operator's rules: opted out, suppressed and
// capped customers are excluded (in that order); the others keep their
// recorded group, or get one from holdout.
type planner struct {
	// maxContacts caps the ledger entries a customer may have; 0: no cap.
	maxContacts int64
	// holdout decides the group of a customer with none recorded.
	holdout func(i int) bool

	mu   sync.Mutex
	seen map[string]store.AudienceMember // Customer cloned
}

func (pl *planner) plan(m *store.AudienceMember, t *store.NewTarget) error {
	pl.mu.Lock()
	if pl.seen == nil {
		pl.seen = map[string]store.AudienceMember{}
	}
	c := clone(m.Customer)
	seen := *m
	seen.Customer = &c
	pl.seen[m.Customer.ID] = seen
	pl.mu.Unlock()

	switch {
	case m.OptedOut:
		t.Group, t.Reason = store.GroupExcluded, store.ReasonOptedOut
	case m.Suppressed:
		t.Group, t.Reason = store.GroupExcluded, store.ReasonSuppressed
	case pl.maxContacts > 0 && m.Contacts >= pl.maxContacts:
		t.Group, t.Reason = store.GroupExcluded, store.ReasonCapped
	case m.RecordedGroup != "":
		t.Group = m.RecordedGroup
	case pl.holdout != nil && pl.holdout(cidIndex(m.Customer.ID)):
		t.Group = store.GroupHoldout
	default:
		t.Group = store.GroupTreatment
	}
	t.Variant = "a"
	c0 := m.Customer
	t.Data = store.TargetData{
		Address: c0.Contact.Email, Locale: c0.Contact.Locale, TimeZone: c0.Contact.Timezone,
		Fields:           map[string]any{"country": c0.Attributes["country"], "n": float64(cidIndex(c0.ID))},
		BaseTransactions: int64(c0.Features.Transactions), BaseSpend: c0.Features.TotalSpend,
		BaseLastPurchase: c0.Features.LastPurchase, ExpectedValue: c0.Scores.ExpectedValue,
	}
	return nil
}

func materialize(e *env, s store.Store, p *store.RunMaterializeParams) *store.RunTally {
	e.t.Helper()
	t, err := s.RunMaterialize(e.ctx, p)
	if err != nil {
		e.t.Fatalf("RunMaterialize(%s): %v", p.RunID, err)
	}
	return t
}

// targetsOf returns a run's targets by customer id.
func targetsOf(e *env, s store.Store, run string) map[string]store.Target {
	e.t.Helper()
	out := map[string]store.Target{}
	if err := s.TargetScan(e.ctx, &store.TargetScanParams{RunID: run}, func(t *store.Target) error {
		out[t.CustomerID] = *t
		return nil
	}); err != nil {
		e.t.Fatalf("TargetScan(%s): %v", run, err)
	}
	return out
}

// contacts returns the ledger counts of customers on a channel since a time.
func contacts(e *env, s store.Store, channel string, since time.Time, ids []string) map[string]int64 {
	e.t.Helper()
	got := map[string]int64{}
	if err := s.ContactCounts(e.ctx, &store.ContactCountsParams{Channel: channel, Since: since, CustomerIDs: ids},
		func(id string, n int64) error { got[id] = n; return nil }); err != nil {
		e.t.Fatalf("ContactCounts: %v", err)
	}
	return got
}

// groupTotals returns each group's total of a tally.
func groupTotals(t *store.RunTally) map[store.TargetGroup]int64 {
	out := map[store.TargetGroup]int64{}
	for g, gt := range t.Groups {
		out[g] = gt.Total
	}
	return out
}

func exerciseMaterialize(ctx context.Context, t *testing.T, d *Driver) {
	t.Run("Audience", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		sn := writeSnapshot(e, e.s, "ns/src", 0, 50)
		all := func(pl *planner) func(*store.AudienceMember, *store.NewTarget) error { return pl.plan }
		// Contacts before the cap window: not counted.
		applySegment(e, "ns/early", sn.ID, cids(16, 17))
		createCampaignRun(e, e.s, runSpec{id: "p0", channel: "ns/email", segment: "ns/early", snapshot: sn.ID})
		materialize(e, e.s, &store.RunMaterializeParams{RunID: "p0", Plan: all(&planner{})})
		capSince := e.clock.Advance(time.Hour)
		// Planned (pending) contacts of other runs on the channel count.
		applySegment(e, "ns/prior", sn.ID, cids(10, 15))
		applySegment(e, "ns/twice", sn.ID, cids(10, 12))
		applySegment(e, "ns/one", sn.ID, cids(12, 13))
		applySegment(e, "ns/cancel", sn.ID, cids(15, 16))
		for _, r := range []runSpec{
			{id: "p1", channel: "ns/email", segment: "ns/prior"},
			{id: "p2", channel: "ns/email", segment: "ns/twice"},
			{id: "p3", channel: "ns/sms", segment: "ns/one"},      // another channel
			{id: "p4", channel: "ns/email", segment: "ns/cancel"}, // cancelled: voided
		} {
			r.snapshot = sn.ID
			createCampaignRun(e, e.s, r)
			materialize(e, e.s, &store.RunMaterializeParams{RunID: r.id, Plan: all(&planner{})})
		}
		if _, err := e.s.RunCancel(ctx, "p4"); err != nil {
			t.Fatal(err)
		}
		// Recorded groups of the campaign, from a run on another channel.
		applySegment(e, "ns/earlier-win", sn.ID, cids(20, 25))
		createCampaignRun(e, e.s, runSpec{id: "w1", campaignUID: "uid-win", channel: "ns/push", segment: "ns/earlier-win", snapshot: sn.ID})
		materialize(e, e.s, &store.RunMaterializeParams{RunID: "w1", Plan: all(&planner{holdout: func(i int) bool { return i < 22 }})})
		// Suppression and opt-outs.
		applySegment(e, "ns/vip", sn.ID, cids(0, 3))
		applySegment(e, "ns/blocked", sn.ID, cids(2, 4))
		for _, o := range []store.OptOutAddParams{
			{Channel: "ns/email", CustomerID: cid(4), Via: "unsubscribe-link"},
			{Channel: "ns/email", CustomerID: cid(5), Via: "api"},
			{Channel: "ns/sms", CustomerID: cid(6), Via: "api"},
		} {
			if err := e.s.OptOutAdd(ctx, &o); err != nil {
				t.Fatal(err)
			}
		}
		// The audience: c0..c39 and a member missing from the snapshot.
		applySegment(e, "ns/seg", sn.ID, append(cids(0, 40), "zz-ghost"))
		createCampaignRun(e, e.s, runSpec{id: "r", campaignUID: "uid-win", channel: "ns/email", segment: "ns/seg", snapshot: sn.ID})
		pl := &planner{}
		materialize(e, e.s, &store.RunMaterializeParams{RunID: "r", Plan: pl.plan,
			SuppressSegments: []string{"ns/vip", "ns/blocked", "ns/unknown"}, CapSince: capSince})
		if len(pl.seen) != 40 {
			t.Fatalf("Plan saw %d members, want 40", len(pl.seen))
		}
		if _, ok := pl.seen["zz-ghost"]; ok {
			t.Errorf("a member missing from the snapshot was passed to Plan")
		}
		wantContacts := map[int]int64{10: 2, 11: 2, 12: 1, 13: 1, 14: 1}
		for i := 0; i < 40; i++ {
			m, ok := pl.seen[cid(i)]
			if !ok {
				t.Errorf("%s not passed to Plan", cid(i))
				continue
			}
			var wantC customer.Scored
			Customer(i, &wantC)
			if !reflect.DeepEqual(*m.Customer, clone(&wantC)) {
				t.Errorf("%s: Plan got customer %+v, want %+v", cid(i), *m.Customer, wantC)
			}
			wantGroup := store.TargetGroup("")
			if i >= 20 && i < 25 {
				wantGroup = store.GroupTreatment
				if i < 22 {
					wantGroup = store.GroupHoldout
				}
			}
			got := [...]any{m.Suppressed, m.OptedOut, m.Contacts, m.RecordedGroup}
			want := [...]any{i < 4, i == 4 || i == 5, wantContacts[i], wantGroup}
			if got != want {
				t.Errorf("%s: (suppressed, opted out, contacts, recorded group) = %v, want %v", cid(i), got, want)
			}
		}
		// Without a cap window there are no cap data.
		createCampaignRun(e, e.s, runSpec{id: "r2", channel: "ns/email", segment: "ns/seg", snapshot: sn.ID})
		pl2 := &planner{}
		materialize(e, e.s, &store.RunMaterializeParams{RunID: "r2", Plan: pl2.plan})
		for id, m := range pl2.seen {
			if m.Contacts != 0 || m.Suppressed || m.RecordedGroup != "" {
				t.Errorf("%s without cap window or suppression: %+v", id, m)
			}
		}
	})

	t.Run("TargetsLedgerAndHoldouts", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		sn := writeSnapshot(e, e.s, "ns/src", 0, 30)
		applySegment(e, "ns/seg", sn.ID, cids(0, 30))
		applySegment(e, "ns/vip", sn.ID, cids(0, 2))
		if err := e.s.OptOutAdd(ctx, &store.OptOutAddParams{Channel: "ns/email", CustomerID: cid(2)}); err != nil {
			t.Fatal(err)
		}
		createCampaignRun(e, e.s, runSpec{id: "r", campaignUID: "uid-c", channel: "ns/email", segment: "ns/seg", snapshot: sn.ID, shards: 3})
		matAt := e.clock.Now()
		pl := &planner{holdout: func(i int) bool { return i%5 == 0 }}
		deferred := e.clock.Now().Add(8 * time.Hour)
		plan := func(m *store.AudienceMember, t *store.NewTarget) error {
			if t.CustomerID != m.Customer.ID {
				return fmt.Errorf("target comes with customer id %q, want %q", t.CustomerID, m.Customer.ID)
			}
			if err := pl.plan(m, t); err != nil {
				return err
			}
			i := cidIndex(m.Customer.ID)
			t.Shard = int32(i % 3)
			if i == 7 && t.Group == store.GroupTreatment {
				t.NotBefore = deferred
			}
			return nil
		}
		got := materialize(e, e.s, &store.RunMaterializeParams{RunID: "r", Plan: plan, SuppressSegments: []string{"ns/vip"}})
		if want := tally(e, "r"); !reflect.DeepEqual(got, want) {
			t.Errorf("RunMaterialize tally = %+v, RunTally = %+v", got, want)
		}
		// 0 and 1 suppressed, 2 opted out; holdout 5, 10, 15, 20, 25 (0 is suppressed).
		if got, want := groupTotals(got), map[store.TargetGroup]int64{store.GroupExcluded: 3, store.GroupHoldout: 5, store.GroupTreatment: 22}; !reflect.DeepEqual(got, want) {
			t.Errorf("group totals = %v, want %v", got, want)
		}
		if got := got.Groups[store.GroupExcluded].SkippedByReason; !reflect.DeepEqual(got, map[string]int64{store.ReasonSuppressed: 2, store.ReasonOptedOut: 1}) {
			t.Errorf("excluded by reason = %v", got)
		}
		if got := got.Groups[store.GroupHoldout].SkippedByReason; !reflect.DeepEqual(got, map[string]int64{store.ReasonHoldout: 5}) {
			t.Errorf("holdout by reason = %v", got)
		}
		if r, err := e.s.RunGet(ctx, "r"); err != nil || r.Phase != store.PhaseMaterialized {
			t.Errorf("phase after materialization = %v, %v", r, err)
		}
		ts := targetsOf(e, e.s, "r")
		var c customer.Scored
		for i := 0; i < 30; i++ {
			Customer(i, &c)
			tg := ts[c.ID]
			wantData := store.TargetData{Address: c.Contact.Email, Locale: c.Contact.Locale, TimeZone: c.Contact.Timezone,
				Fields:           map[string]any{"country": c.Attributes["country"], "n": float64(i)},
				BaseTransactions: int64(c.Features.Transactions), BaseSpend: c.Features.TotalSpend,
				BaseLastPurchase: c.Features.LastPurchase, ExpectedValue: c.Scores.ExpectedValue}
			if !reflect.DeepEqual(tg.Data, wantData) {
				t.Errorf("%s data = %+v, want %+v", c.ID, tg.Data, wantData)
			}
			if tg.Shard != int32(i%3) || tg.Variant != "a" || tg.RunID != "r" || tg.Attempts != 0 {
				t.Errorf("%s = %+v", c.ID, tg)
			}
			wantState, wantNotBefore := store.StatePending, time.Time{}
			if tg.Group != store.GroupTreatment {
				wantState = store.StateSkipped
			}
			if i == 7 {
				wantNotBefore = deferred
			}
			if tg.State != wantState || !tg.NotBefore.Equal(wantNotBefore) {
				t.Errorf("%s: state %s, not before %v; want %s, %v", c.ID, tg.State, tg.NotBefore, wantState, wantNotBefore)
			}
		}
		// The ledger has one entry per treatment target, at the
		// materialization's time.
		counts := contacts(e, e.s, "ns/email", matAt, cids(0, 30))
		if len(counts) != 22 {
			t.Errorf("%d customers in the ledger, want 22", len(counts))
		}
		for id, tg := range ts {
			if want := map[bool]int64{true: 1}[tg.Group == store.GroupTreatment]; counts[id] != want {
				t.Errorf("%s (%s) has %d ledger entries, want %d", id, tg.Group, counts[id], want)
			}
		}
		if got := contacts(e, e.s, "ns/email", matAt.Add(time.Microsecond), cids(0, 30)); len(got) != 0 {
			t.Errorf("ledger entries after the materialization: %v", got)
		}
		// Holdout assignments of the eligible only.
		groups, err := e.s.HoldoutGet(ctx, "uid-c", append(cids(0, 30), "stranger"))
		if err != nil {
			t.Fatal(err)
		}
		for id, tg := range ts {
			want := tg.Group
			if want == store.GroupExcluded {
				want = ""
			}
			if groups[id] != want {
				t.Errorf("%s: recorded group %q, want %q", id, groups[id], want)
			}
		}
		if len(groups) != 27 {
			t.Errorf("%d assignments, want 27", len(groups))
		}

		// A second call writes nothing and returns the tally; Plan is not called.
		e.clock.Advance(time.Hour)
		again, err := e.s.RunMaterialize(ctx, &store.RunMaterializeParams{RunID: "r", Plan: func(*store.AudienceMember, *store.NewTarget) error {
			return errors.New("Plan called again")
		}})
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("second RunMaterialize = %+v, %v; want %+v", again, err, got)
		}
		if n := contacts(e, e.s, "ns/email", matAt, cids(0, 30)); !reflect.DeepEqual(n, counts) {
			t.Errorf("ledger after a second call = %v, want %v", n, counts)
		}
	})

	t.Run("MaxPerRun", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		sn := writeSnapshot(e, e.s, "ns/src", 0, 30)
		applySegment(e, "ns/seg", sn.ID, cids(0, 30))
		applySegment(e, "ns/vip", sn.ID, cids(25, 26))
		createCampaignRun(e, e.s, runSpec{id: "r", campaignUID: "uid-c", channel: "ns/email", segment: "ns/seg", snapshot: sn.ID})
		pl := &planner{holdout: func(i int) bool { return i == 28 || i == 3 }}
		plan := func(m *store.AudienceMember, t *store.NewTarget) error {
			pl.plan(m, t)
			t.Data.ExpectedValue = float64(cidIndex(m.Customer.ID) / 3) // ties in threes
			return nil
		}
		got := materialize(e, e.s, &store.RunMaterializeParams{RunID: "r", Plan: plan, SuppressSegments: []string{"ns/vip"}, MaxPerRun: 10})
		// Eligible by value: 27 28 29 | 24 26 (25 suppressed) | 21 22 23 | 18 19 20 | …
		// The first ten are kept; ties go to the smaller customer id.
		kept := map[int]bool{27: true, 28: true, 29: true, 24: true, 26: true, 21: true, 22: true, 23: true, 18: true, 19: true}
		ts := targetsOf(e, e.s, "r")
		for i := 0; i < 30; i++ {
			tg := ts[cid(i)]
			switch {
			case i == 25:
				if tg.Group != store.GroupExcluded || tg.Reason != store.ReasonSuppressed {
					t.Errorf("%s = %s/%s, want excluded as suppressed", cid(i), tg.Group, tg.Reason)
				}
			case kept[i]:
				if tg.Group == store.GroupExcluded {
					t.Errorf("%s (value %v) excluded, want kept", cid(i), tg.Data.ExpectedValue)
				}
			default:
				if tg.Group != store.GroupExcluded || tg.State != store.StateSkipped || tg.Reason != store.ReasonOverMax {
					t.Errorf("%s = %s/%s/%s, want excluded over_max", cid(i), tg.Group, tg.State, tg.Reason)
				}
			}
		}
		if g := got.Groups[store.GroupExcluded]; g == nil || !reflect.DeepEqual(g.SkippedByReason, map[string]int64{store.ReasonOverMax: 19, store.ReasonSuppressed: 1}) {
			t.Errorf("excluded = %+v", g)
		}
		if got, want := groupTotals(got), map[store.TargetGroup]int64{store.GroupExcluded: 20, store.GroupTreatment: 9, store.GroupHoldout: 1}; !reflect.DeepEqual(got, want) {
			t.Errorf("group totals = %v, want %v", got, want)
		}
		// Ledger and assignments only for the kept.
		counts := contacts(e, e.s, "ns/email", Epoch, cids(0, 30))
		groups, err := e.s.HoldoutGet(ctx, "uid-c", cids(0, 30))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 30; i++ {
			wantContact := int64(0)
			if kept[i] && i != 28 {
				wantContact = 1
			}
			if counts[cid(i)] != wantContact {
				t.Errorf("%s: %d ledger entries, want %d", cid(i), counts[cid(i)], wantContact)
			}
			if _, ok := groups[cid(i)]; ok != kept[i] {
				t.Errorf("%s: assignment recorded %v, want %v", cid(i), ok, kept[i])
			}
		}
	})

	t.Run("HoldoutAssignmentsNeverChange", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		sn := writeSnapshot(e, e.s, "ns/src", 0, 30)
		applySegment(e, "ns/first", sn.ID, cids(0, 20))
		applySegment(e, "ns/second", sn.ID, cids(10, 30))
		createCampaignRun(e, e.s, runSpec{id: "r1", campaignUID: "uid-c", channel: "ns/email", segment: "ns/first", snapshot: sn.ID})
		materialize(e, e.s, &store.RunMaterializeParams{RunID: "r1", Plan: (&planner{holdout: func(i int) bool { return i%4 == 0 }}).plan})
		// The second run ignores what is recorded and holds everyone out.
		createCampaignRun(e, e.s, runSpec{id: "r2", campaignUID: "uid-c", channel: "ns/email", segment: "ns/second", snapshot: sn.ID})
		materialize(e, e.s, &store.RunMaterializeParams{RunID: "r2", Plan: func(m *store.AudienceMember, t *store.NewTarget) error {
			t.Group = store.GroupHoldout
			return nil
		}})
		groups, err := e.s.HoldoutGet(ctx, "uid-c", cids(0, 30))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 30; i++ {
			want := store.GroupHoldout
			if i < 20 && i%4 != 0 {
				want = store.GroupTreatment
			}
			if groups[cid(i)] != want {
				t.Errorf("%s: recorded %q, want %q", cid(i), groups[cid(i)], want)
			}
		}
		// Another campaign has its own assignments.
		if other, err := e.s.HoldoutGet(ctx, "uid-other", cids(0, 30)); err != nil || len(other) != 0 {
			t.Errorf("another campaign's assignments = %v, %v", other, err)
		}
		if _, err := e.s.HoldoutGet(ctx, "", cids(0, 1)); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("HoldoutGet without a campaign = %v, want ErrInvalid", err)
		}
	})

	// A campaign's recorded groups are the first ones recorded, whichever
	// of its runs is deleted first: HoldoutGet and a materialization's
	// RecordedGroup agree before, between and after the deletes.
	t.Run("HoldoutAssignmentsSurviveRunDelete", func(t *testing.T) {
		t.Parallel()
		for _, order := range [][]string{{"r2", "r1"}, {"r1", "r2"}} {
			e := newEnv(ctx, t, d)
			sn := writeSnapshot(e, e.s, "ns/src", 0, 30)
			applySegment(e, "ns/first", sn.ID, cids(0, 20))
			applySegment(e, "ns/second", sn.ID, cids(10, 30))
			if err := e.s.OptOutAdd(ctx, &store.OptOutAddParams{Channel: "ns/email", CustomerID: cid(1)}); err != nil {
				t.Fatal(err)
			}
			createCampaignRun(e, e.s, runSpec{id: "r1", campaignUID: "uid-c", channel: "ns/email", segment: "ns/first", snapshot: sn.ID})
			materialize(e, e.s, &store.RunMaterializeParams{RunID: "r1", Plan: (&planner{holdout: func(i int) bool { return i%4 == 0 }}).plan})
			// The second run ignores what is recorded and holds everyone out.
			createCampaignRun(e, e.s, runSpec{id: "r2", campaignUID: "uid-c", channel: "ns/sms", segment: "ns/second", snapshot: sn.ID})
			materialize(e, e.s, &store.RunMaterializeParams{RunID: "r2", Plan: func(m *store.AudienceMember, t *store.NewTarget) error {
				t.Group = store.GroupHoldout
				return nil
			}})
			createCampaignRun(e, e.s, runSpec{id: "other", campaignUID: "uid-d", channel: "ns/email", segment: "ns/second", snapshot: sn.ID})
			materialize(e, e.s, &store.RunMaterializeParams{RunID: "other", Plan: (&planner{holdout: func(i int) bool { return i%2 == 0 }}).plan})
			want := map[string]store.TargetGroup{}
			for i := 0; i < 30; i++ {
				switch {
				case i == 1: // opted out in r1, not in r2: never eligible
				case i < 20 && i%4 != 0:
					want[cid(i)] = store.GroupTreatment
				default:
					want[cid(i)] = store.GroupHoldout
				}
			}
			wantOther := map[string]store.TargetGroup{}
			for i := 10; i < 30; i++ {
				wantOther[cid(i)] = map[bool]store.TargetGroup{true: store.GroupHoldout, false: store.GroupTreatment}[i%2 == 0]
			}
			probes := 0
			check := func(when string) {
				t.Helper()
				got, err := e.s.HoldoutGet(ctx, "uid-c", append(cids(0, 30), "stranger"))
				if err != nil || !reflect.DeepEqual(got, want) {
					t.Errorf("deleting %v: %s: HoldoutGet = %v, %v; want %v", order, when, got, err, want)
				}
				if got, err := e.s.HoldoutGet(ctx, "uid-d", cids(0, 30)); err != nil || !reflect.DeepEqual(got, wantOther) {
					t.Errorf("deleting %v: %s: another campaign's = %v, %v; want %v", order, when, got, err, wantOther)
				}
				probes++
				seen := probe(e, fmt.Sprintf("probe%d", probes), "ns/push", "uid-c", sn.ID, time.Time{}, cids(0, 30))
				for id, m := range seen {
					if m.RecordedGroup != want[id] {
						t.Errorf("deleting %v: %s: %s: materialization read recorded group %q, want %q", order, when, id, m.RecordedGroup, want[id])
					}
				}
			}
			check("runs stored")
			for _, r := range order {
				if err := e.s.RunDelete(ctx, r); err != nil {
					t.Fatal(err)
				}
				check(r + " deleted")
			}
		}
	})

	t.Run("PlanErrorWritesNothing", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		sn := writeSnapshot(e, e.s, "ns/src", 0, 1200)
		applySegment(e, "ns/seg", sn.ID, cids(0, 1200))
		createCampaignRun(e, e.s, runSpec{id: "r", campaignUID: "uid-c", channel: "ns/email", segment: "ns/seg", snapshot: sn.ID})
		boom := errors.New("template does not render")
		n := 0
		_, err := e.s.RunMaterialize(ctx, &store.RunMaterializeParams{RunID: "r", Plan: func(m *store.AudienceMember, t *store.NewTarget) error {
			if n++; n == 1100 {
				return boom
			}
			return nil
		}})
		if !errors.Is(err, boom) {
			t.Fatalf("RunMaterialize with a failing Plan = %v, want %v", err, boom)
		}
		// An invalid target from Plan is an error too.
		_, err = e.s.RunMaterialize(ctx, &store.RunMaterializeParams{RunID: "r", Plan: func(m *store.AudienceMember, t *store.NewTarget) error {
			if cidIndex(m.Customer.ID) == 1000 {
				t.Group, t.State = store.GroupHoldout, store.StatePending
			}
			return nil
		}})
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("RunMaterialize with an invalid target = %v, want ErrInvalid", err)
		}
		// A context cancelled halfway.
		cctx, cancel := context.WithCancel(ctx)
		n = 0
		_, err = e.s.RunMaterialize(cctx, &store.RunMaterializeParams{RunID: "r", Plan: func(m *store.AudienceMember, t *store.NewTarget) error {
			if n++; n == 700 {
				cancel()
			}
			return nil
		}})
		cancel()
		if err == nil {
			t.Errorf("RunMaterialize with a cancelled context succeeded")
		}
		checkNothing := func(when string) {
			t.Helper()
			if r, err := e.s.RunGet(ctx, "r"); err != nil || r.Phase != store.PhasePending {
				t.Errorf("%s: run = %+v, %v; want Pending", when, r, err)
			}
			if ts := targetsOf(e, e.s, "r"); len(ts) != 0 {
				t.Errorf("%s: %d targets written", when, len(ts))
			}
			if c := contacts(e, e.s, "ns/email", Epoch, cids(0, 1200)); len(c) != 0 {
				t.Errorf("%s: %d ledger entries written", when, len(c))
			}
			if g, err := e.s.HoldoutGet(ctx, "uid-c", cids(0, 1200)); err != nil || len(g) != 0 {
				t.Errorf("%s: %d assignments written (%v)", when, len(g), err)
			}
		}
		checkNothing("after failures")
		// The store is still usable, and the run can be materialized.
		got := materialize(e, e.s, &store.RunMaterializeParams{RunID: "r", Plan: (&planner{}).plan})
		if got.Groups[store.GroupTreatment].Total != 1200 {
			t.Errorf("materialized after failures: %v", groupTotals(got))
		}
	})

	t.Run("EnteredSince", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		sn1 := writeSnapshot(e, e.s, "ns/src", 0, 20)
		sn2 := writeSnapshot(e, e.s, "ns/src", 0, 20)
		applySegment(e, "ns/seg", sn1.ID, cids(0, 10))
		applySegment(e, "ns/seg", sn2.ID, cids(3, 15))
		createCampaignRun(e, e.s, runSpec{id: "r", channel: "ns/email", segment: "ns/seg", snapshot: sn2.ID})
		pl := &planner{}
		materialize(e, e.s, &store.RunMaterializeParams{RunID: "r", Plan: pl.plan, EnteredSince: sn2.ID})
		var got []string
		for id := range pl.seen {
			got = append(got, id)
		}
		sort.Strings(got)
		if want := cids(10, 15); !reflect.DeepEqual(got, want) {
			t.Errorf("entered since snapshot %d: %v, want %v", sn2.ID, got, want)
		}
	})

	t.Run("Errors", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		sn := writeSnapshot(e, e.s, "ns/src", 0, 10)
		applySegment(e, "ns/seg", sn.ID, cids(0, 10))
		plan := (&planner{}).plan
		createCampaignRun(e, e.s, runSpec{id: "r", channel: "ns/email", segment: "ns/seg", snapshot: sn.ID})
		for _, tc := range []struct {
			name string
			p    *store.RunMaterializeParams
			want error
		}{
			{"nil params", nil, store.ErrInvalid},
			{"no run id", &store.RunMaterializeParams{Plan: plan}, store.ErrInvalid},
			{"nil Plan", &store.RunMaterializeParams{RunID: "r"}, store.ErrInvalid},
			{"negative max", &store.RunMaterializeParams{RunID: "r", Plan: plan, MaxPerRun: -1}, store.ErrInvalid},
			{"empty suppression key", &store.RunMaterializeParams{RunID: "r", Plan: plan, SuppressSegments: []string{""}}, store.ErrInvalid},
			{"unknown run", &store.RunMaterializeParams{RunID: "nope", Plan: plan}, store.ErrNotFound},
		} {
			if _, err := e.s.RunMaterialize(ctx, tc.p); !errors.Is(err, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			}
		}
		// A run without a segment or snapshot (an ad-hoc run fed by TargetInsert).
		createRun(e, "adhoc", "ns/email", 1)
		if _, err := e.s.RunMaterialize(ctx, &store.RunMaterializeParams{RunID: "adhoc", Plan: plan}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("run without a segment: %v, want ErrInvalid", err)
		}
		// A run is fed by RunMaterialize or by TargetInsert: targets are
		// not added to a materialized run (they would be contacts).
		createCampaignRun(e, e.s, runSpec{id: "fed", channel: "ns/email", segment: "ns/seg", snapshot: sn.ID})
		materialize(e, e.s, &store.RunMaterializeParams{RunID: "fed", Plan: plan})
		if _, err := e.s.TargetInsert(ctx, &store.TargetInsertParams{RunID: "fed", Targets: []store.NewTarget{{CustomerID: "extra"}}}); !errors.Is(err, store.ErrConflict) {
			t.Errorf("TargetInsert into a materialized run = %v, want ErrConflict", err)
		}
		if ts := targetsOf(e, e.s, "fed"); len(ts) != 10 {
			t.Errorf("materialized run has %d targets after a refused insert, want 10", len(ts))
		}
		// The snapshot is gone.
		createCampaignRun(e, e.s, runSpec{id: "gone", channel: "ns/email", segment: "ns/seg", snapshot: sn.ID})
		createCampaignRun(e, e.s, runSpec{id: "never", channel: "ns/email", segment: "ns/seg", snapshot: sn.ID + 100})
		if err := e.s.SnapshotDeleteBySource(ctx, "ns/src"); err != nil {
			t.Fatal(err)
		}
		for _, run := range []string{"gone", "never"} {
			if _, err := e.s.RunMaterialize(ctx, &store.RunMaterializeParams{RunID: run, Plan: plan}); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("run %s of a missing snapshot: %v, want ErrNotFound", run, err)
			}
			if r, err := e.s.RunGet(ctx, run); err != nil || r.Phase != store.PhasePending {
				t.Errorf("run %s after a failed materialization: %+v, %v", run, r, err)
			}
		}
		// A cancelled run is not materialized.
		createCampaignRun(e, e.s, runSpec{id: "cancelled", channel: "ns/email", segment: "ns/seg", snapshot: sn.ID})
		if _, err := e.s.RunCancel(ctx, "cancelled"); err != nil {
			t.Fatal(err)
		}
		if got, err := e.s.RunMaterialize(ctx, &store.RunMaterializeParams{RunID: "cancelled", Plan: plan}); err != nil || len(got.Groups) != 0 {
			t.Errorf("materialize a cancelled run = %+v, %v; want an empty tally", got, err)
		}
	})

	t.Run("DryRunLedgerIsVoid", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		sn := writeSnapshot(e, e.s, "ns/src", 0, 10)
		applySegment(e, "ns/seg", sn.ID, cids(0, 10))
		createCampaignRun(e, e.s, runSpec{id: "dry", channel: "ns/email", segment: "ns/seg", snapshot: sn.ID, dryRun: true})
		got := materialize(e, e.s, &store.RunMaterializeParams{RunID: "dry", Plan: (&planner{}).plan})
		if got.Groups[store.GroupTreatment].Total != 10 {
			t.Errorf("dry run tally = %v", groupTotals(got))
		}
		if c := contacts(e, e.s, "ns/email", Epoch, cids(0, 10)); len(c) != 0 {
			t.Errorf("a dry run's contacts count: %v", c)
		}
	})

	// Two operator replicas materialize one run at once: one writes it,
	// the other returns its tally.
	t.Run("SameRunTwiceAtOnce", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		sn := writeSnapshot(e, e.s, "ns/src", 0, 300)
		applySegment(e, "ns/seg", sn.ID, cids(0, 300))
		createCampaignRun(e, e.s, runSpec{id: "r", campaignUID: "uid-c", channel: "ns/email", segment: "ns/seg", snapshot: sn.ID})
		tallies := make([]*store.RunTally, 2)
		errs := make([]error, 2)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range 2 {
			s := e.open()
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				tallies[i], errs[i] = s.RunMaterialize(ctx, &store.RunMaterializeParams{RunID: "r", Plan: (&planner{}).plan})
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("replica %d: %v", i, err)
			}
			if got := groupTotals(tallies[i]); !reflect.DeepEqual(got, map[store.TargetGroup]int64{store.GroupTreatment: 300}) {
				t.Errorf("replica %d tally = %v", i, got)
			}
		}
		for id, n := range contacts(e, e.s, "ns/email", Epoch, cids(0, 300)) {
			if n != 1 {
				t.Errorf("%s has %d ledger entries, want 1", id, n)
			}
		}
	})

	// Two materializations on one channel race against one cap: the
	// second reads the first's ledger, so no customer gets two contacts.
	t.Run("ConcurrentOnOneChannel", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		const n = 400
		sn := writeSnapshot(e, e.s, "ns/src", 0, n)
		applySegment(e, "ns/seg", sn.ID, cids(0, n))
		for round := 0; round < 2; round++ {
			runs := []string{fmt.Sprintf("a%d", round), fmt.Sprintf("b%d", round)}
			for i, r := range runs {
				createCampaignRun(e, e.s, runSpec{id: r, campaignUID: fmt.Sprintf("uid-%d-%d", round, i), channel: fmt.Sprintf("ns/email-%d", round),
					segment: "ns/seg", snapshot: sn.ID})
			}
			errs := make([]error, 2)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i, r := range runs {
				s := e.open() // each operator replica has its own handle
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					_, errs[i] = s.RunMaterialize(ctx, &store.RunMaterializeParams{RunID: r, CapSince: Epoch, Plan: (&planner{maxContacts: 1}).plan})
				}()
			}
			close(start)
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			treated := map[string]int{}
			for _, r := range runs {
				for id, tg := range targetsOf(e, e.s, r) {
					if tg.Group == store.GroupTreatment {
						treated[id]++
					} else if tg.Reason != store.ReasonCapped {
						t.Errorf("%s in %s: %s/%s", id, r, tg.Group, tg.Reason)
					}
				}
			}
			if len(treated) != n {
				t.Errorf("round %d: %d customers treated, want %d", round, len(treated), n)
			}
			for id, k := range treated {
				if k != 1 {
					t.Errorf("round %d: %s treated by %d runs", round, id, k)
				}
			}
			for id, k := range contacts(e, e.s, fmt.Sprintf("ns/email-%d", round), Epoch, cids(0, n)) {
				if k != 1 {
					t.Errorf("round %d: %s has %d contacts", round, id, k)
				}
			}
		}
	})
}
