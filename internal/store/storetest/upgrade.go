package storetest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
)

// A database at schema version 2 holds what a version-2 RunMaterialize
// wrote for a run still stored: its targets and, beside them, its ledger
// entries and holdout assignments. Each driver's upgrade test writes these
// rows with SQL, then calls CheckUpgradeFromVersion2 on the migrated store.
//
//   - runs: "legacy" of campaign "ns/c" (UID LegacyCampaignUID) on channel
//     LegacyChannel, Materialized, 1 shard, created at Epoch;
//   - targets of "legacy": LegacyCustomers[0] treatment pending, [1]
//     treatment sent, [2] holdout skipped (holdout), [3] excluded skipped
//     (opted_out);
//   - contacts: one live entry at Epoch for [0] and [1] (run "legacy");
//   - holdout_assignments of LegacyCampaignUID: [0] and [1] treatment, [2]
//     holdout.
const (
	LegacyChannel     = "ns/email"
	LegacyCampaignUID = "uid-c"
)

// LegacyCustomers are the customers of the version-2 run (Customer(0..3)).
var LegacyCustomers = [4]string{"c0000000", "c0000001", "c0000002", "c0000003"}

// CheckUpgradeFromVersion2 checks a store migrated from the version-2
// database described above: the legacy run's entries and assignments are
// counted once (not again from its targets), a new materialization reads
// them, its own entries are counted from its targets, the legacy entries
// are still voided, and deleting both runs changes no count and no group.
func CheckUpgradeFromVersion2(ctx context.Context, t *testing.T, s store.Store) {
	t.Helper()
	ids := LegacyCustomers[:]
	for i, id := range ids {
		if got := cid(i); got != id {
			t.Fatalf("LegacyCustomers[%d] = %s, Customer(%d) is %s", i, id, i, got)
		}
	}
	counts := func(when string, want map[string]int64) {
		t.Helper()
		got := map[string]int64{}
		if err := s.ContactCounts(ctx, &store.ContactCountsParams{Channel: LegacyChannel, Since: Epoch, CustomerIDs: ids},
			func(id string, n int64) error { got[id] = n; return nil }); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: ContactCounts = %v, %v; want %v", when, got, err, want)
		}
	}
	groups := func(when string, want map[string]store.TargetGroup) {
		t.Helper()
		if got, err := s.HoldoutGet(ctx, LegacyCampaignUID, ids); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: HoldoutGet = %v, %v; want %v", when, got, err, want)
		}
	}
	T, H := store.GroupTreatment, store.GroupHoldout
	counts("after the upgrade", map[string]int64{ids[0]: 1, ids[1]: 1})
	groups("after the upgrade", map[string]store.TargetGroup{ids[0]: T, ids[1]: T, ids[2]: H})

	// A new run of the campaign on the channel reads them once.
	w, err := s.SnapshotWrite(ctx, &store.SnapshotWriteParams{Source: "ns/src"})
	if err != nil {
		t.Fatal(err)
	}
	var c customer.Scored
	for i := range ids {
		Customer(i, &c)
		if err := w.Add(&c); err != nil {
			t.Fatal(err)
		}
	}
	sn, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.MembershipApply(ctx, &store.MembershipApplyParams{Segment: "ns/seg-new", SnapshotID: sn.ID, Members: store.MembersFromSlice(ids)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RunCreate(ctx, &store.RunCreateParams{RunID: "new", Campaign: "ns/c", CampaignUID: LegacyCampaignUID, Channel: LegacyChannel,
		Segment: "ns/seg-new", SnapshotID: sn.ID, Shards: 1, ConversionWindow: time.Hour}); err != nil {
		t.Fatal(err)
	}
	pl := &planner{}
	if _, err := s.RunMaterialize(ctx, &store.RunMaterializeParams{RunID: "new", CapSince: Epoch, Plan: pl.plan}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		contacts int64
		group    store.TargetGroup
	}{{1, T}, {1, T}, {0, H}, {0, ""}} {
		if m := pl.seen[ids[i]]; m.Contacts != want.contacts || m.RecordedGroup != want.group {
			t.Errorf("%s: the new run read contacts %d, group %q; want %d, %q", ids[i], m.Contacts, m.RecordedGroup, want.contacts, want.group)
		}
	}
	// The new run's entries: [0], [1] and [3] treatment pending.
	counts("with the new run", map[string]int64{ids[0]: 2, ids[1]: 2, ids[3]: 1})
	groups("with the new run", map[string]store.TargetGroup{ids[0]: T, ids[1]: T, ids[2]: H, ids[3]: T})
	// The legacy run's entries are still voided with their targets.
	if n, err := s.TargetSetFailed(ctx, &store.TargetSetFailedParams{RunID: "legacy", Failures: []store.TargetFailure{{CustomerID: ids[0], Error: "bounce"}}}); err != nil || n != 1 {
		t.Fatalf("fail legacy target: %d, %v", n, err)
	}
	want := map[string]int64{ids[0]: 1, ids[1]: 2, ids[3]: 1}
	counts("after a legacy target failed", want)
	for _, r := range []string{"legacy", "new"} {
		if err := s.RunDelete(ctx, r); err != nil {
			t.Fatal(err)
		}
		counts(r+" deleted", want)
		groups(r+" deleted", map[string]store.TargetGroup{ids[0]: T, ids[1]: T, ids[2]: H, ids[3]: T})
	}
}
