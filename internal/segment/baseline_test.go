package segment

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/retention-dev/retention-operator/internal/store"
)

// applyCounter is a store that counts incremental applies and the ones the
// store refused (ErrBaseMoved).
type applyCounter struct {
	store.Store
	incremental, refused, full atomic.Int64
}

func (c *applyCounter) MembershipApply(ctx context.Context, p *store.MembershipApplyParams) (*store.MembershipDiff, error) {
	diff, err := c.Store.MembershipApply(ctx, p)
	switch {
	case p.Changes == nil:
		c.full.Add(1)
	case errors.Is(err, store.ErrBaseMoved):
		c.refused.Add(1)
	default:
		c.incremental.Add(1)
	}
	return diff, err
}

func (c *applyCounter) take() (incremental, refused, full int64) {
	return c.incremental.Swap(0), c.refused.Swap(0), c.full.Swap(0)
}

// TestMaterializeBaseline runs batches with a Baseline across snapshots in
// which customers come, go and change, beside the same segments applied
// in full without one, and checks that the incremental applies leave
// exactly the memberships, entries and exits of full ones: when the
// baseline is current, when the store moved on without it (a refused
// incremental apply, then a full one), and for segments left out of a
// batch (carried over to the next evaluation's customers, or dropped when
// that is impossible, then read back from the store), and after a restart
// (a new Baseline reads every membership back from the store).
func TestMaterializeBaseline(t *testing.T) {
	t.Parallel()
	// Snapshot 3 keeps every customer of snapshot 2 and adds 100; snapshot
	// 4 drops 100 of them.
	snaps := [][]int{{0, 2000, 0}, {100, 2100, 7}, {100, 2200, 5}, {200, 2200, 3}, {300, 2250, 4}}
	for _, d := range drivers {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := &applyCounter{Store: d.open(t)}
			var ids []int64
			for _, s := range snaps {
				ids = append(ids, writeSnapshot(t, st, people(s[0], s[1], s[2])))
			}
			var segs, control []BatchSegment
			for k, tr := range testRules {
				rule := mustCompile(t, tr.rule, storeSchema)
				segs = append(segs, BatchSegment{Segment: fmt.Sprintf("ns/inc-%d", k), Rule: rule})
				control = append(control, BatchSegment{Segment: fmt.Sprintf("ns/full-%d", k), Rule: rule})
			}
			base := NewBaseline()
			// run applies segs with the baseline and control without, on a
			// snapshot, and compares them.
			run := func(step string, snapshot int64, segs []BatchSegment, wantIncremental, wantRefused int64) {
				t.Helper()
				got, err := MaterializeBatch(ctx, st, &BatchParams{SnapshotID: snapshot, Segments: segs, Now: testNow, Baseline: base})
				if err != nil {
					t.Fatalf("%s: %v", step, err)
				}
				inc, refused, full := st.take()
				want, err := MaterializeBatch(ctx, st, &BatchParams{SnapshotID: snapshot, Segments: controlOf(segs, control), Now: testNow})
				if err != nil {
					t.Fatalf("%s: control: %v", step, err)
				}
				st.take()
				for k := range got {
					if got[k].Err != nil || want[k].Err != nil {
						t.Fatalf("%s: %s: %v; control: %v", step, got[k].Segment, got[k].Err, want[k].Err)
					}
					if *got[k].Stats != *want[k].Stats {
						t.Errorf("%s: %s: stats %+v, in full %+v", step, got[k].Segment, *got[k].Stats, *want[k].Stats)
					}
					if msg := sameMembers(t, st, got[k].Segment, want[k].Segment); msg != "" {
						t.Errorf("%s: %s: %s", step, got[k].Segment, msg)
					}
				}
				if inc != wantIncremental || refused != wantRefused || full != int64(len(segs))-wantIncremental {
					t.Errorf("%s: %d incremental, %d refused, %d full applies; want %d, %d, %d",
						step, inc, refused, full, wantIncremental, wantRefused, int64(len(segs))-wantIncremental)
				}
			}
			n := int64(len(segs))
			run("first snapshot", ids[0], segs, 0, 0)
			if base.Len() != len(segs) {
				t.Fatalf("baseline holds %d segments, want %d", base.Len(), len(segs))
			}
			run("second snapshot", ids[1], segs, n, 0)
			run("the same snapshot again", ids[1], segs, n, 0)

			// Only segment 1 on snapshot 3, which has every customer of
			// snapshot 2: the others are carried over to its customers.
			run("third snapshot, one segment", ids[2], segs[1:2], 1, 0)
			if base.Len() != len(segs) {
				t.Errorf("baseline holds %d segments after a batch of one, want all %d carried over", base.Len(), len(segs))
			}
			// Segment 0 is applied behind the baseline's back (with another
			// rule): its next incremental apply is refused and made in full.
			for _, s := range []string{segs[0].Segment, control[0].Segment} {
				if _, err := Materialize(ctx, st, &MaterializeParams{Segment: s, SnapshotID: ids[2], Rule: segs[1].Rule, Now: testNow}); err != nil {
					t.Fatal(err)
				}
			}
			st.take()
			run("third snapshot, segment 0 moved", ids[2], segs, n-1, 1)

			// Only segment 1 on snapshot 4, which lacks 100 customers of
			// snapshot 3: a segment with one of them as a member cannot be
			// carried over and is dropped from the baseline.
			run("fourth snapshot, one segment", ids[3], segs[1:2], 1, 0)
			kept := int64(base.Len())
			if kept == n {
				t.Errorf("all %d segments kept, want those with members gone dropped", n)
			}
			// The dropped ones are read back from the store: still changes.
			run("fourth snapshot, all", ids[3], segs, n, 0)

			// A deleted segment is forgotten, then applied in full.
			base.Forget(segs[2].Segment)
			for _, s := range []string{segs[2].Segment, control[2].Segment} {
				if err := st.MembershipDelete(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			run("segment 2 made again", ids[3], segs, n-1, 0)

			// A restart: a new Baseline reads every membership back from
			// the store and applies only the changes, on a snapshot that
			// lacks customers of the stored memberships (they exit).
			base = NewBaseline()
			run("after a restart, fifth snapshot", ids[4], segs, n, 0)
		})
	}
}

// controlOf returns the control segment of each of segs.
func controlOf(segs, control []BatchSegment) []BatchSegment {
	var out []BatchSegment
	for _, s := range segs {
		for _, c := range control {
			if c.Rule == s.Rule {
				out = append(out, c)
			}
		}
	}
	return out
}

// sameMembers compares two segments' stored members, with when they
// entered.
func sameMembers(t *testing.T, st store.Store, a, b string) string {
	t.Helper()
	scan := func(seg string) map[string]store.Member {
		out := map[string]store.Member{}
		err := st.MembershipScan(context.Background(), &store.MembershipScanParams{Segment: seg}, func(m *store.Member) error {
			out[m.CustomerID] = *m
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	ma, mb := scan(a), scan(b)
	if len(ma) != len(mb) {
		return fmt.Sprintf("%d members, in full %d", len(ma), len(mb))
	}
	for id, m := range ma {
		o, ok := mb[id]
		if !ok {
			return fmt.Sprintf("member %s not a member in full", id)
		}
		if m.EnteredSnapshotID != o.EnteredSnapshotID || m.LastSeenSnapshotID != o.LastSeenSnapshotID {
			return fmt.Sprintf("member %s: %+v, in full %+v", id, m, o)
		}
	}
	return ""
}
