package storetest

import (
	"context"
	"errors"
	"iter"
	"reflect"
	"slices"
	"sync"
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
	// A clone has the members of its origin, at version 1, and an
	// incremental apply to it reports the changes against them.
	t.Run("Clone", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		s1 := writeSnapshot(e, e.s, "ns/shop", 0, 20)
		e.applyFull("ns/at-risk", s1.ID, cids(0, 10))
		if err := e.s.MembershipClone(ctx, "ns/at-risk", "ns/at-risk-preview"); err != nil {
			t.Fatal(err)
		}
		m, err := e.s.MembershipGet(ctx, "ns/at-risk-preview")
		if err != nil || m.Size != 10 || m.Version != 1 || m.SnapshotID != s1.ID {
			t.Fatalf("clone = %+v, %v", m, err)
		}
		if got := membersOf(e, "ns/at-risk-preview", 0); len(got) != 10 {
			t.Errorf("clone has %d members", len(got))
		}
		diff, err := e.applyChanges("ns/at-risk-preview", s1.ID, 1, cids(10, 13), cids(0, 2))
		if err != nil || diff.Entered != 3 || diff.Exited != 2 || diff.Size != 11 {
			t.Errorf("apply to the clone = %+v, %v; want 3 entered, 2 exited of 11", diff, err)
		}
		if orig := membersOf(e, "ns/at-risk", 0); len(orig) != 10 {
			t.Errorf("the origin changed: %d members", len(orig))
		}
		if err := e.s.MembershipClone(ctx, "ns/at-risk", "ns/at-risk-preview"); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("clone onto a membership: %v, want ErrInvalid", err)
		}
		if err := e.s.MembershipClone(ctx, "ns/none", "ns/other"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("clone of no membership: %v, want ErrNotFound", err)
		}
		if err := e.s.MembershipClone(ctx, "", "ns/x"); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("clone of an empty key: %v", err)
		}
	})
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
		if got, want := apply(1, s1), (&store.MembershipDiff{Size: 3000, Entered: 3000, Version: 1}); !reflect.DeepEqual(got, want) {
			t.Errorf("apply 1 = %+v, want %+v", got, want)
		}
		t2 := e.clock.Advance(time.Hour)
		// Snapshot 2: 1000..3999 — 1000 exit, 1000 enter.
		if got, want := apply(2, ids("c", 1000, 4000)), (&store.MembershipDiff{Size: 3000, Entered: 1000, Exited: 1000, PreviousSnapshotID: 1, Version: 2}); !reflect.DeepEqual(got, want) {
			t.Errorf("apply 2 = %+v, want %+v", got, want)
		}
		e.clock.Advance(time.Hour)
		// Snapshot 5: 0..499 re-enter, 1000..1999 stay, the rest exit.
		s3 := append(ids("c", 0, 500), ids("c", 1000, 2000)...)
		if got, want := apply(5, s3), (&store.MembershipDiff{Size: 1500, Entered: 500, Exited: 2000, PreviousSnapshotID: 2, Version: 3}); !reflect.DeepEqual(got, want) {
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
		if err != nil || m.SnapshotID != 5 || m.Size != 1500 || !m.UpdatedAt.Equal(t3) || m.Version != 3 {
			t.Errorf("MembershipGet = %+v, %v", m, err)
		}
		// Re-applying the same snapshot changes no member (but it is an
		// apply: the version grows).
		if got, want := apply(5, s3), (&store.MembershipDiff{Size: 1500, PreviousSnapshotID: 5, Version: 4}); !reflect.DeepEqual(got, want) {
			t.Errorf("re-apply = %+v, want %+v", got, want)
		}
		// An older snapshot is a conflict.
		if _, err := e.s.MembershipApply(ctx, &store.MembershipApplyParams{Segment: seg, SnapshotID: 4, Members: store.MembersFromSlice(nil)}); !errors.Is(err, store.ErrConflict) {
			t.Errorf("apply of an older snapshot = %v, want ErrConflict", err)
		}
		// Empty membership: everyone exits.
		if got, want := apply(6, nil), (&store.MembershipDiff{Size: 0, Exited: 1500, PreviousSnapshotID: 5, Version: 5}); !reflect.DeepEqual(got, want) {
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
		if err != nil || diff.Entered != 5 || diff.PreviousSnapshotID != 0 || diff.Version != 1 {
			t.Errorf("apply after delete = %+v, %v", diff, err)
		}
	})

	exerciseMembershipChanges(ctx, t, d)
}

// applyFull applies members to segment on snapshot, failing the test on
// an error.
func (e *env) applyFull(segment string, snapshot int64, members []string) *store.MembershipDiff {
	e.t.Helper()
	diff, err := e.s.MembershipApply(e.ctx, &store.MembershipApplyParams{Segment: segment, SnapshotID: snapshot, Members: store.MembersFromSlice(members)})
	if err != nil {
		e.t.Fatalf("MembershipApply(%s, snapshot %d): %v", segment, snapshot, err)
	}
	return diff
}

// applyChanges applies an incremental change of segment.
func (e *env) applyChanges(segment string, snapshot, base int64, entered, exited []string) (*store.MembershipDiff, error) {
	return e.s.MembershipApply(e.ctx, &store.MembershipApplyParams{Segment: segment, SnapshotID: snapshot, Changes: &store.MembershipChanges{
		BaseVersion: base, Entered: store.MembersFromSlice(entered), Exited: store.MembersFromSlice(exited)}})
}

// membershipState is what a test checks a failed apply left unchanged.
type membershipState struct {
	members map[string]store.Member
	summary *store.Membership // nil: no membership
}

func stateOf(e *env, segment string) membershipState {
	e.t.Helper()
	m, err := e.s.MembershipGet(e.ctx, segment)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		e.t.Fatalf("MembershipGet(%s): %v", segment, err)
	}
	return membershipState{members: membersOf(e, segment, 0), summary: m}
}

// unchanged fails the test when segment's membership is not before.
func unchanged(e *env, segment, after string, before membershipState) {
	e.t.Helper()
	if now := stateOf(e, segment); !reflect.DeepEqual(now, before) {
		e.t.Errorf("%s changed the membership: %d members, %+v; was %d members, %+v",
			after, len(now.members), now.summary, len(before.members), before.summary)
	}
}

// concat joins id lists.
func concat(lists ...[]string) []string { return slices.Concat(lists...) }

func exerciseMembershipChanges(ctx context.Context, t *testing.T, d *Driver) {
	// Every apply, full or incremental, is a new version.
	t.Run("Versions", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		const seg = "ns/versions"
		check := func(step string, diff *store.MembershipDiff, want int64) {
			t.Helper()
			if diff.Version != want {
				t.Errorf("%s: version %d, want %d", step, diff.Version, want)
			}
			if m, err := e.s.MembershipGet(ctx, seg); err != nil || m.Version != want {
				t.Errorf("%s: MembershipGet = %+v, %v; want version %d", step, m, err, want)
			}
		}
		check("full apply", e.applyFull(seg, 1, ids("c", 0, 10)), 1)
		diff, err := e.applyChanges(seg, 2, 1, ids("c", 10, 12), ids("c", 0, 1))
		if err != nil {
			t.Fatal(err)
		}
		check("incremental apply", diff, 2)
		if diff, err = e.applyChanges(seg, 2, 2, nil, nil); err != nil {
			t.Fatal(err)
		}
		check("empty incremental apply", diff, 3)
		check("full apply again", e.applyFull(seg, 3, ids("c", 0, 10)), 4)
		if diff := e.applyFull("ns/other", 1, nil); diff.Version != 1 {
			t.Errorf("another segment's first apply: version %d, want 1", diff.Version)
		}
	})

	// Changes leave the membership a full apply of the same final set
	// leaves: kept members keep when and where they entered, entering ones
	// entered now, on the new snapshot, and all were last seen on it.
	t.Run("ChangesMatchFullApply", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		const inc, full = "ns/incremental", "ns/full"
		base := ids("c", 0, 1000)
		t1 := e.clock.Now()
		e.applyFull(inc, 1, base)
		e.applyFull(full, 1, base)
		t2 := e.clock.Advance(time.Hour)
		exited := concat(ids("c", 0, 100), ids("x", 0, 10), ids("c", 0, 10)) // not members, duplicates
		entered := concat(ids("c", 1000, 1200), ids("c", 500, 510), ids("c", 1000, 1010))
		diff, err := e.applyChanges(inc, 3, 1, entered, exited)
		if err != nil {
			t.Fatal(err)
		}
		if want := (&store.MembershipDiff{Size: 1100, Entered: 200, Exited: 100, PreviousSnapshotID: 1, Version: 2}); !reflect.DeepEqual(diff, want) {
			t.Errorf("incremental apply = %+v, want %+v", diff, want)
		}
		if diff := e.applyFull(full, 3, ids("c", 100, 1200)); diff.Entered != 200 || diff.Exited != 100 || diff.Size != 1100 {
			t.Errorf("full apply = %+v", diff)
		}
		got, want := membersOf(e, inc, 0), membersOf(e, full, 0)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("incremental apply left %d members, a full apply %d (or they differ)", len(got), len(want))
		}
		for id, m := range got {
			w := store.Member{CustomerID: id, EnteredAt: t1, EnteredSnapshotID: 1, LastSeenSnapshotID: 3}
			if id >= "c01000" {
				w.EnteredAt, w.EnteredSnapshotID = t2, 3
			}
			if m != w {
				t.Errorf("member %s = %+v, want %+v", id, m, w)
				break
			}
		}
		if n := len(membersOf(e, inc, 3)); n != 200 {
			t.Errorf("entered since snapshot 3: %d, want 200", n)
		}
		if m, err := e.s.MembershipGet(ctx, inc); err != nil || m.SnapshotID != 3 || m.Size != 1100 || !m.UpdatedAt.Equal(t2) || m.Version != 2 {
			t.Errorf("MembershipGet = %+v, %v", m, err)
		}
	})

	// Exits apply first: a customer both exited and entered is a member
	// afterwards that entered on the new snapshot, counted both ways if
	// it was a member, as an entry if not.
	t.Run("ExitedAndEntered", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		const seg = "ns/both"
		t1 := e.clock.Now()
		e.applyFull(seg, 1, []string{"a", "b"})
		t2 := e.clock.Advance(time.Hour)
		diff, err := e.applyChanges(seg, 2, 1, []string{"a", "z"}, []string{"a", "z"})
		if err != nil {
			t.Fatal(err)
		}
		if want := (&store.MembershipDiff{Size: 3, Entered: 2, Exited: 1, PreviousSnapshotID: 1, Version: 2}); !reflect.DeepEqual(diff, want) {
			t.Errorf("apply = %+v, want %+v", diff, want)
		}
		want := map[string]store.Member{
			"a": {CustomerID: "a", EnteredAt: t2, EnteredSnapshotID: 2, LastSeenSnapshotID: 2},
			"b": {CustomerID: "b", EnteredAt: t1, EnteredSnapshotID: 1, LastSeenSnapshotID: 2},
			"z": {CustomerID: "z", EnteredAt: t2, EnteredSnapshotID: 2, LastSeenSnapshotID: 2},
		}
		if got := membersOf(e, seg, 0); !reflect.DeepEqual(got, want) {
			t.Errorf("members = %+v, want %+v", got, want)
		}
	})

	// Changes refused change nothing: not against the stored version (or
	// no membership at all), an older snapshot, an iterator's error, an
	// invalid id.
	t.Run("RefusedChangesChangeNothing", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		const seg = "ns/refused"
		e.applyFull(seg, 1, ids("c", 0, 100))
		e.clock.Advance(time.Hour)
		e.applyFull(seg, 5, ids("c", 0, 50)) // version 2
		before := stateOf(e, seg)
		e.clock.Advance(time.Hour)
		boom := errors.New("rule evaluation failed")
		failing := func(good []string) iter.Seq2[string, error] {
			return func(yield func(string, error) bool) {
				for _, id := range good {
					if !yield(id, nil) {
						return
					}
				}
				yield("", boom)
			}
		}
		apply := func(snapshot, base int64, entered, exited iter.Seq2[string, error]) error {
			_, err := e.s.MembershipApply(ctx, &store.MembershipApplyParams{Segment: seg, SnapshotID: snapshot,
				Changes: &store.MembershipChanges{BaseVersion: base, Entered: entered, Exited: exited}})
			return err
		}
		some, none := store.MembersFromSlice(ids("c", 200, 300)), store.MembersFromSlice(nil)
		exits := store.MembersFromSlice(ids("c", 0, 10))
		for _, tc := range []struct {
			name            string
			snapshot, base  int64
			entered, exited iter.Seq2[string, error]
			want            error
		}{
			{"an older version", 6, 1, some, exits, store.ErrBaseMoved},
			{"a newer version", 6, 3, some, exits, store.ErrBaseMoved},
			{"an older snapshot", 4, 2, some, exits, store.ErrConflict},
			{"a failing Entered", 6, 2, failing(ids("c", 200, 300)), exits, boom},
			{"a failing Exited", 6, 2, some, failing(ids("c", 0, 10)), boom},
			{"an empty entered id", 6, 2, store.MembersFromSlice([]string{"ok", ""}), none, store.ErrInvalid},
			{"an exited id with a NUL", 6, 2, none, store.MembersFromSlice([]string{"c00001", "a\x00b"}), store.ErrInvalid},
		} {
			if err := apply(tc.snapshot, tc.base, tc.entered, tc.exited); !errors.Is(err, tc.want) {
				t.Errorf("changes with %s = %v, want %v", tc.name, err, tc.want)
			}
			unchanged(e, seg, "changes with "+tc.name, before)
		}
		// A segment never applied has no version to change.
		if _, err := e.applyChanges("ns/never", 1, 1, ids("c", 0, 5), nil); !errors.Is(err, store.ErrBaseMoved) {
			t.Errorf("changes to an unknown segment = %v, want ErrBaseMoved", err)
		}
		unchanged(e, "ns/never", "changes to an unknown segment", membershipState{members: map[string]store.Member{}})
		// The stored version still takes changes.
		if diff, err := e.applyChanges(seg, 6, 2, ids("c", 200, 210), ids("c", 0, 10)); err != nil || diff.Size != 50 || diff.Version != 3 {
			t.Errorf("changes at the stored version = %+v, %v", diff, err)
		}
	})

	// Two callers with changes against one version: one applies, the
	// other finds the base moved.
	t.Run("ConcurrentChanges", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		const seg = "ns/race"
		e.applyFull(seg, 1, ids("c", 0, 100))
		stores := []store.Store{e.s, e.open()}
		errs := make([]error, len(stores))
		var wg sync.WaitGroup
		for i, s := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = s.MembershipApply(ctx, &store.MembershipApplyParams{Segment: seg, SnapshotID: 2, Changes: &store.MembershipChanges{
					BaseVersion: 1, Entered: store.MembersFromSlice(ids("n", i*10, i*10+10)), Exited: store.MembersFromSlice(ids("c", i*10, i*10+10))}})
			}()
		}
		wg.Wait()
		applied := 0
		for i, err := range errs {
			switch {
			case err == nil:
				applied++
			case !errors.Is(err, store.ErrBaseMoved):
				t.Errorf("apply %d: %v, want nil or ErrBaseMoved", i, err)
			}
		}
		m, err := e.s.MembershipGet(ctx, seg)
		if applied != 1 || err != nil || m.Version != 2 || m.Size != 100 {
			t.Errorf("%d of 2 applied; membership %+v, %v; want one applied, version 2", applied, m, err)
		}
	})

	t.Run("InvalidParams", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		const seg = "ns/invalid"
		e.applyFull(seg, 1, ids("c", 0, 10))
		before := stateOf(e, seg)
		some := store.MembersFromSlice(ids("c", 0, 5))
		for _, tc := range []struct {
			name string
			p    store.MembershipApplyParams
		}{
			{"both Members and Changes", store.MembershipApplyParams{Members: some, Changes: &store.MembershipChanges{BaseVersion: 1, Entered: some, Exited: some}}},
			{"neither Members nor Changes", store.MembershipApplyParams{}},
			{"nil Entered", store.MembershipApplyParams{Changes: &store.MembershipChanges{BaseVersion: 1, Exited: some}}},
			{"nil Exited", store.MembershipApplyParams{Changes: &store.MembershipChanges{BaseVersion: 1, Entered: some}}},
			{"base version 0", store.MembershipApplyParams{Changes: &store.MembershipChanges{Entered: some, Exited: some}}},
		} {
			tc.p.Segment, tc.p.SnapshotID = seg, 2
			if _, err := e.s.MembershipApply(ctx, &tc.p); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("apply with %s = %v, want ErrInvalid", tc.name, err)
			}
		}
		unchanged(e, seg, "invalid applies", before)
	})
}
