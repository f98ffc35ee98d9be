package storetest

import (
	"context"
	"errors"
	"iter"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/store"
)

func membersOf(e *env, segment string, enteredSince int64) map[string]store.Member {
	e.t.Helper()
	out := map[string]store.Member{}
	err := e.s.MembershipScan(e.ctx, &store.MembershipScanParams{Segment: segment, EnteredSince: enteredSince}, func(m *store.Member) error {
		if _, dup := out[m.CustomerID]; dup {
			e.t.Errorf("member %q scanned twice", m.CustomerID)
		}
		out[m.CustomerID] = *m
		return nil
	})
	if err != nil {
		e.t.Fatalf("MembershipScan(%s): %v", segment, err)
	}
	return out
}

func exerciseMembership(ctx context.Context, t *testing.T, d *Driver) {
	t.Run("DiffAcrossSnapshots", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		const seg = "ns/at-risk"
		apply := func(snapshot int64, members []string) *store.MembershipDiff {
			t.Helper()
			diff, err := e.s.MembershipApply(ctx, &store.MembershipApplyParams{Segment: seg, SnapshotID: snapshot, Members: store.MembersFromSlice(members)})
			if err != nil {
				t.Fatalf("MembershipApply(snapshot %d): %v", snapshot, err)
			}
			return diff
		}
		t1 := e.clock.Now()
		// Snapshot 1: c00000..c02999, with duplicates in the input.
		s1 := append(ids("c", 0, 3000), ids("c", 0, 10)...)
		if got, want := apply(1, s1), (&store.MembershipDiff{Size: 3000, Entered: 3000}); !reflect.DeepEqual(got, want) {
			t.Errorf("apply 1 = %+v, want %+v", got, want)
		}
		t2 := e.clock.Advance(time.Hour)
		// Snapshot 2: 1000..3999 — 1000 exit, 1000 enter.
		if got, want := apply(2, ids("c", 1000, 4000)), (&store.MembershipDiff{Size: 3000, Entered: 1000, Exited: 1000, PreviousSnapshotID: 1}); !reflect.DeepEqual(got, want) {
			t.Errorf("apply 2 = %+v, want %+v", got, want)
		}
		e.clock.Advance(time.Hour)
		// Snapshot 5: 0..499 re-enter, 1000..1999 stay, the rest exit.
		s3 := append(ids("c", 0, 500), ids("c", 1000, 2000)...)
		if got, want := apply(5, s3), (&store.MembershipDiff{Size: 1500, Entered: 500, Exited: 2000, PreviousSnapshotID: 2}); !reflect.DeepEqual(got, want) {
			t.Errorf("apply 3 = %+v, want %+v", got, want)
		}
		all := membersOf(e, seg, 0)
		if len(all) != 1500 {
			t.Fatalf("%d members, want 1500", len(all))
		}
		t3 := e.clock.Now()
		for id, m := range all {
			want := store.Member{CustomerID: id, EnteredAt: t1, EnteredSnapshotID: 1, LastSeenSnapshotID: 5}
			if id < "c00500" { // re-entered on snapshot 5
				want.EnteredAt, want.EnteredSnapshotID = t3, 5
			}
			if !reflect.DeepEqual(m, want) {
				t.Errorf("member %s = %+v, want %+v", id, m, want)
				break
			}
		}
		_ = t2
		// OnEnter: who entered at or after snapshot 2.
		entered := membersOf(e, seg, 2)
		if len(entered) != 500 {
			t.Errorf("entered since snapshot 2: %d, want 500", len(entered))
		}
		for id := range entered {
			if id >= "c00500" {
				t.Errorf("entered since snapshot 2 includes %s", id)
			}
		}
		if n, err := store.MembershipCount(ctx, e.s, seg); err != nil || n != 1500 {
			t.Errorf("MembershipCount = %d, %v", n, err)
		}
		m, err := e.s.MembershipGet(ctx, seg)
		if err != nil || m.SnapshotID != 5 || m.Size != 1500 || !m.UpdatedAt.Equal(t3) {
			t.Errorf("MembershipGet = %+v, %v", m, err)
		}
		// Re-applying the same snapshot changes nothing.
		if got, want := apply(5, s3), (&store.MembershipDiff{Size: 1500, PreviousSnapshotID: 5}); !reflect.DeepEqual(got, want) {
			t.Errorf("re-apply = %+v, want %+v", got, want)
		}
		// An older snapshot is a conflict.
		if _, err := e.s.MembershipApply(ctx, &store.MembershipApplyParams{Segment: seg, SnapshotID: 4, Members: store.MembersFromSlice(nil)}); !errors.Is(err, store.ErrConflict) {
			t.Errorf("apply of an older snapshot = %v, want ErrConflict", err)
		}
		// Empty membership: everyone exits.
		if got, want := apply(6, nil), (&store.MembershipDiff{Size: 0, Exited: 1500, PreviousSnapshotID: 5}); !reflect.DeepEqual(got, want) {
			t.Errorf("apply empty = %+v, want %+v", got, want)
		}
	})

	t.Run("FailedIteratorChangesNothing", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		const seg = "ns/seg"
		if _, err := e.s.MembershipApply(ctx, &store.MembershipApplyParams{Segment: seg, SnapshotID: 1, Members: store.MembersFromSlice(ids("c", 0, 100))}); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("rule evaluation failed")
		var failing iter.Seq2[string, error] = func(yield func(string, error) bool) {
			for _, id := range ids("c", 50, 1000) {
				if id == "c00700" {
					yield("", boom)
					return
				}
				if !yield(id, nil) {
					return
				}
			}
		}
		if _, err := e.s.MembershipApply(ctx, &store.MembershipApplyParams{Segment: seg, SnapshotID: 2, Members: failing}); !errors.Is(err, boom) {
			t.Fatalf("apply with a failing iterator = %v, want the iterator's error", err)
		}
		bad := store.MembersFromSlice([]string{"ok", ""})
		if _, err := e.s.MembershipApply(ctx, &store.MembershipApplyParams{Segment: seg, SnapshotID: 2, Members: bad}); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("apply with an empty id = %v, want ErrInvalid", err)
		}
		got := membersOf(e, seg, 0)
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range got {
				if !yield(k) {
					return
				}
			}
		})
		if !slices.Equal(keys, ids("c", 0, 100)) {
			t.Errorf("membership changed by failed applies: %d members", len(keys))
		}
		if m, _ := e.s.MembershipGet(ctx, seg); m == nil || m.SnapshotID != 1 {
			t.Errorf("segment after failed applies = %+v", m)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		for _, seg := range []string{"ns/a", "ns/b"} {
			if _, err := e.s.MembershipApply(ctx, &store.MembershipApplyParams{Segment: seg, SnapshotID: 1, Members: store.MembersFromSlice(ids("c", 0, 20))}); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.s.MembershipDelete(ctx, "ns/a"); err != nil {
			t.Fatal(err)
		}
		if err := e.s.MembershipDelete(ctx, "ns/never"); err != nil {
			t.Errorf("delete of an unknown segment: %v", err)
		}
		if n, err := store.MembershipCount(ctx, e.s, "ns/a"); err != nil || n != 0 {
			t.Errorf("count after delete = %d, %v", n, err)
		}
		if _, err := e.s.MembershipGet(ctx, "ns/a"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("get after delete = %v, want ErrNotFound", err)
		}
		if got := membersOf(e, "ns/a", 0); len(got) != 0 {
			t.Errorf("%d members after delete", len(got))
		}
		if got := membersOf(e, "ns/b", 0); len(got) != 20 {
			t.Errorf("other segment has %d members after delete, want 20", len(got))
		}
		// A deleted segment starts over.
		diff, err := e.s.MembershipApply(ctx, &store.MembershipApplyParams{Segment: "ns/a", SnapshotID: 1, Members: store.MembersFromSlice(ids("c", 0, 5))})
		if err != nil || diff.Entered != 5 || diff.PreviousSnapshotID != 0 {
			t.Errorf("apply after delete = %+v, %v", diff, err)
		}
	})
}
