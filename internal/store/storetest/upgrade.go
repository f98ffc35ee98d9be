package storetest

import (
	"context"
	"fmt"
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
	sn := legacySegment(ctx, t, s, "ns/seg-new")
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

// A database at schema version 4 holds, for campaign LegacyCampaignUID on
// LegacyChannel, two runs materialized (materialized_at Epoch) before
// ghost contacts existed, still stored. Each driver's upgrade test writes
// these rows with SQL, then calls CheckUpgradeFromVersion4 on the migrated
// store.
//
//   - runs: "sending" (Sending, reference time Epoch, materialized_seq 1)
//     and "cancelled" (Cancelled before sending: no reference time,
//     materialized_seq 2), both of campaign "ns/c", 1 shard, created at
//     Epoch;
//   - targets of "sending": LegacyCustomers[0] treatment sent, [1] holdout
//     skipped (holdout);
//   - targets of "cancelled": [2] treatment skipped (cancelled), [3]
//     holdout skipped (holdout).
const (
	UpgradeV4Sending   = "sending"
	UpgradeV4Cancelled = "cancelled"
)

// CheckUpgradeFromVersion4 checks a store migrated from the version-4
// database described above: the holdout of the stored run that was sent
// counts as ghost contacts for the campaign's later runs on the channel
// (not for another campaign's, and not in ContactCounts), the holdout of
// the run cancelled before sending does not, and deleting both runs
// changes nothing.
func CheckUpgradeFromVersion4(ctx context.Context, t *testing.T, s store.Store) {
	t.Helper()
	ids := LegacyCustomers[:]
	sn := legacySegment(ctx, t, s, "ns/seg-probe")
	probes := 0
	// probe is what a materialization of a run of campaign uid on the
	// channel reads as each customer's contacts since Epoch (customers
	// without any left out); it excludes everyone, so it records nothing.
	probe := func(uid string) map[string]int64 {
		t.Helper()
		probes++
		run := fmt.Sprintf("probe%d", probes)
		if _, err := s.RunCreate(ctx, &store.RunCreateParams{RunID: run, Campaign: "ns/" + uid, CampaignUID: uid, Channel: LegacyChannel,
			Segment: "ns/seg-probe", SnapshotID: sn.ID, Shards: 1, ConversionWindow: time.Hour}); err != nil {
			t.Fatal(err)
		}
		got := map[string]int64{}
		if _, err := s.RunMaterialize(ctx, &store.RunMaterializeParams{RunID: run, CapSince: Epoch, Plan: func(m *store.AudienceMember, t *store.NewTarget) error {
			if m.Contacts != 0 {
				got[m.Customer.ID] = m.Contacts
			}
			t.Group, t.Reason = store.GroupExcluded, "probe"
			return nil
		}}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	check := func(when string) {
		t.Helper()
		if got, want := probe(LegacyCampaignUID), map[string]int64{ids[0]: 1, ids[1]: 1}; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the campaign's next run reads contacts %v, want %v", when, got, want)
		}
		if got, want := probe("uid-other"), map[string]int64{ids[0]: 1}; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: another campaign's run reads contacts %v, want %v", when, got, want)
		}
		got := map[string]int64{}
		if err := s.ContactCounts(ctx, &store.ContactCountsParams{Channel: LegacyChannel, Since: Epoch, CustomerIDs: ids},
			func(id string, n int64) error { got[id] = n; return nil }); err != nil || !reflect.DeepEqual(got, map[string]int64{ids[0]: 1}) {
			t.Errorf("%s: ContactCounts = %v, %v; want %v", when, got, err, map[string]int64{ids[0]: 1})
		}
	}
	check("after the upgrade")
	for _, r := range []string{UpgradeV4Sending, UpgradeV4Cancelled} {
		if err := s.RunDelete(ctx, r); err != nil {
			t.Fatal(err)
		}
		check(r + " deleted")
	}
}

// UpgradeV2Inserts are the rows a version-2 program left that
// CheckUpgradeFromVersion2 expects: at is the driver's literal of Epoch, no
// its literal of false.
func UpgradeV2Inserts(at, no string) []string {
	ids := LegacyCustomers
	return []string{
		`INSERT INTO runs (run_id, campaign, campaign_uid, channel, segment, snapshot_id, settings, holdout_percent, shards, created_at, phase)
			VALUES ('legacy', 'ns/c', '` + LegacyCampaignUID + `', '` + LegacyChannel + `', 'ns/seg', 1, '{}', 10, 1, ` + at + `, 'Materialized')`,
		`INSERT INTO targets (run_id, customer_id, grp, shard, state, reason, sent_at) VALUES
			('legacy', '` + ids[0] + `', 'treatment', 0, 'pending', '', NULL),
			('legacy', '` + ids[1] + `', 'treatment', 0, 'sent', '', ` + at + `),
			('legacy', '` + ids[2] + `', 'holdout', 0, 'skipped', 'holdout', NULL),
			('legacy', '` + ids[3] + `', 'excluded', 0, 'skipped', 'opted_out', NULL)`,
		`INSERT INTO contacts (channel, customer_id, campaign, run_id, at, void) VALUES
			('` + LegacyChannel + `', '` + ids[0] + `', 'ns/c', 'legacy', ` + at + `, ` + no + `),
			('` + LegacyChannel + `', '` + ids[1] + `', 'ns/c', 'legacy', ` + at + `, ` + no + `)`,
		`INSERT INTO holdout_assignments (campaign_uid, customer_id, grp) VALUES
			('` + LegacyCampaignUID + `', '` + ids[0] + `', 'treatment'),
			('` + LegacyCampaignUID + `', '` + ids[1] + `', 'treatment'),
			('` + LegacyCampaignUID + `', '` + ids[2] + `', 'holdout')`,
	}
}

// UpgradeV4Inserts are the rows a version-4 program left that
// CheckUpgradeFromVersion4 expects: at is the driver's literal of Epoch.
func UpgradeV4Inserts(at string) []string {
	ids := LegacyCustomers
	run := func(id, phase, referenceAt string, seq int) string {
		return fmt.Sprintf(`('%s', 'ns/c', '%s', '%s', 'ns/seg', 1, '{}', 10, 1, %s, '%s', %s, %s, %d, 'ns/src')`,
			id, LegacyCampaignUID, LegacyChannel, at, phase, referenceAt, at, seq)
	}
	return []string{
		`INSERT INTO runs (run_id, campaign, campaign_uid, channel, segment, snapshot_id, settings, holdout_percent, shards, created_at,
			phase, reference_at, materialized_at, materialized_seq, source) VALUES ` +
			run(UpgradeV4Sending, "Sending", at, 1) + `, ` + run(UpgradeV4Cancelled, "Cancelled", "NULL", 2),
		`INSERT INTO targets (run_id, customer_id, grp, shard, state, reason, sent_at) VALUES
			('` + UpgradeV4Sending + `', '` + ids[0] + `', 'treatment', 0, 'sent', '', ` + at + `),
			('` + UpgradeV4Sending + `', '` + ids[1] + `', 'holdout', 0, 'skipped', 'holdout', NULL),
			('` + UpgradeV4Cancelled + `', '` + ids[2] + `', 'treatment', 0, 'skipped', 'cancelled', NULL),
			('` + UpgradeV4Cancelled + `', '` + ids[3] + `', 'holdout', 0, 'skipped', 'holdout', NULL)`,
	}
}

// legacySegment writes a snapshot of LegacyCustomers for source "ns/src"
// and makes them all members of segment.
func legacySegment(ctx context.Context, t *testing.T, s store.Store, segment string) *store.Snapshot {
	t.Helper()
	ids := LegacyCustomers[:]
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
	if _, err := s.MembershipApply(ctx, &store.MembershipApplyParams{Segment: segment, SnapshotID: sn.ID, Members: store.MembersFromSlice(ids)}); err != nil {
		t.Fatal(err)
	}
	return sn
}
