package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/store"
)

// sendRun creates a run on a channel and records customers as sent at the
// clock's current time.
func sendRun(e *env, run, channel string, customers ...string) {
	e.t.Helper()
	createRun(e, run, channel, 1)
	var ts []store.NewTarget
	for _, c := range customers {
		ts = append(ts, store.NewTarget{CustomerID: c})
	}
	insertTargets(e, run, ts)
	if n, err := e.s.TargetSetSent(e.ctx, &store.TargetSetSentParams{RunID: run, CustomerIDs: customers}); err != nil || n != int64(len(customers)) {
		e.t.Fatalf("send %s: %d, %v", run, n, err)
	}
}

func exerciseContact(ctx context.Context, t *testing.T, d *Driver) {
	t.Run("FrequencyCapCounts", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		t0 := e.clock.Now()
		sendRun(e, "r1", "ns/email", "alice", "bob", "carol")
		t1 := e.clock.Advance(24 * time.Hour)
		sendRun(e, "r2", "ns/email", "alice", "bob")
		e.clock.Advance(24 * time.Hour)
		sendRun(e, "r3", "ns/email", "alice")
		sendRun(e, "sms", "ns/sms", "alice", "bob", "dave") // another channel
		// A run that is only materialized (pending): not contacts.
		createRun(e, "pending", "ns/email", 1)
		insertTargets(e, "pending", []store.NewTarget{{CustomerID: "bob"}, {CustomerID: "erin"}})
		// The audience to check: the next run's targets.
		createRun(e, "next", "ns/email", 1)
		insertTargets(e, "next", []store.NewTarget{{CustomerID: "alice"}, {CustomerID: "bob"}, {CustomerID: "dave"}, {CustomerID: "erin"}})
		if _, err := e.s.MembershipApply(ctx, &store.MembershipApplyParams{Segment: "ns/seg", SnapshotID: 1,
			Members: store.MembersFromSlice([]string{"alice", "bob", "dave", "erin"})}); err != nil {
			t.Fatal(err)
		}

		count := func(p store.ContactCountsParams) map[string]int64 {
			t.Helper()
			got := map[string]int64{}
			if err := e.s.ContactCounts(ctx, &p, func(id string, n int64) error { got[id] = n; return nil }); err != nil {
				t.Fatalf("ContactCounts(%+v): %v", p, err)
			}
			return got
		}
		for _, tc := range []struct {
			name string
			p    store.ContactCountsParams
			want map[string]int64
		}{
			{"run audience since t0", store.ContactCountsParams{Channel: "ns/email", Since: t0, RunID: "next"}, map[string]int64{"alice": 3, "bob": 2}},
			{"run audience since t1", store.ContactCountsParams{Channel: "ns/email", Since: t1, RunID: "next"}, map[string]int64{"alice": 2, "bob": 1}},
			{"segment audience", store.ContactCountsParams{Channel: "ns/email", Since: t0, Segment: "ns/seg"}, map[string]int64{"alice": 3, "bob": 2}},
			{"listed customers", store.ContactCountsParams{Channel: "ns/email", Since: t0, CustomerIDs: []string{"carol", "bob", "zed"}}, map[string]int64{"carol": 1, "bob": 2}},
			{"other channel", store.ContactCountsParams{Channel: "ns/sms", Since: t0, RunID: "next"}, map[string]int64{"alice": 1, "bob": 1, "dave": 1}},
			{"window after all", store.ContactCountsParams{Channel: "ns/email", Since: e.clock.Now().Add(time.Second), RunID: "next"}, map[string]int64{}},
			{"empty list", store.ContactCountsParams{Channel: "ns/email", Since: t0, CustomerIDs: []string{}}, map[string]int64{}},
		} {
			if got := count(tc.p); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			}
		}
		for _, p := range []store.ContactCountsParams{
			{Channel: "ns/email", Since: t0},
			{Channel: "ns/email", Since: t0, RunID: "next", Segment: "ns/seg"},
			{Since: t0, RunID: "next"},
		} {
			if err := e.s.ContactCounts(ctx, &p, func(string, int64) error { return nil }); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("ContactCounts(%+v) = %v, want ErrInvalid", p, err)
			}
		}
	})
}
