package segment

import (
	"context"
	"errors"
	"math/bits"
	"slices"

	"github.com/retention-dev/retention-operator/internal/store"
)

// Baseline remembers what the store holds for the segments of one source:
// per segment, the membership version of its last apply and its members,
// as a bitmap over the customer ids of the evaluation that applied it. A
// batch given a Baseline sends the store only the customers that enter and
// exit (store.MembershipChanges) instead of every member, so an apply costs
// what changed, not the size of the segment: between two snapshots a few
// percent of a segment's members change.
//
// The store checks the version, so a Baseline that is out of date (another
// process applied, the segment was deleted and made again) costs one
// refused incremental apply, followed by a full one; it never makes a
// membership wrong. A Baseline is used by one batch at a time (the caller
// serializes the batches of a source) and is updated by it.
type Baseline struct {
	// ids are the customers of the evaluation the bitmaps index, in scan
	// order.
	ids  []string
	segs map[string]baseSegment
}

// baseSegment is one segment's stored membership.
type baseSegment struct {
	version int64
	members []uint64 // bit i: ids[i] is a member
}

// NewBaseline returns an empty Baseline: the next batch applies every
// segment in full and remembers the results.
func NewBaseline() *Baseline { return &Baseline{segs: map[string]baseSegment{}} }

// Forget drops a segment (a deleted Segment).
func (b *Baseline) Forget(segment string) { delete(b.segs, segment) }

// Len is the number of segments remembered.
func (b *Baseline) Len() int { return len(b.segs) }

// alignment maps the customers of a new evaluation to those of the
// baseline's: newToOld[i] is the baseline index of the new evaluation's
// customer i (-1 for a customer the baseline does not have), oldToNew the
// reverse.
type alignment struct {
	newToOld, oldToNew []int32
}

// align matches the new evaluation's ids with the baseline's. Scans have
// no order, so the ids are matched by value; when both lists are equal
// (the same snapshot scanned again), index for index.
func (b *Baseline) align(ids []string) *alignment {
	a := &alignment{newToOld: make([]int32, len(ids)), oldToNew: make([]int32, len(b.ids))}
	if slices.Equal(b.ids, ids) {
		for i := range ids {
			a.newToOld[i], a.oldToNew[i] = int32(i), int32(i)
		}
		return a
	}
	old := make(map[string]int32, len(b.ids))
	for j, id := range b.ids {
		old[id] = int32(j)
		a.oldToNew[j] = -1
	}
	for i, id := range ids {
		j, ok := old[id]
		if !ok {
			a.newToOld[i] = -1
			continue
		}
		a.newToOld[i], a.oldToNew[j] = j, int32(i)
	}
	return a
}

// changes returns the customers that enter and exit segment k of ev
// against the baseline's membership of it: nil when the baseline does not
// have the segment.
func (b *Baseline) changes(ev *evaluation, a *alignment, segment string, k int) *store.MembershipChanges {
	base, ok := b.segs[segment]
	if !ok || a == nil {
		return nil
	}
	now := ev.members[k]
	entered := func(yield func(string, error) bool) {
		for i, word := range now {
			for word != 0 {
				bit := bits.TrailingZeros64(word)
				word &= word - 1
				n := i*64 + bit
				if j := a.newToOld[n]; j < 0 || !hasBit(base.members, int(j)) {
					if !yield(ev.ids[n], nil) {
						return
					}
				}
			}
		}
	}
	exited := func(yield func(string, error) bool) {
		for j, word := range base.members {
			for word != 0 {
				bit := bits.TrailingZeros64(word)
				word &= word - 1
				o := j*64 + bit
				if i := a.oldToNew[o]; i < 0 || !hasBit(now, int(i)) {
					if !yield(b.ids[o], nil) {
						return
					}
				}
			}
		}
	}
	return &store.MembershipChanges{BaseVersion: base.version, Entered: entered, Exited: exited}
}

func hasBit(bm []uint64, i int) bool {
	w := i / 64
	return w < len(bm) && bm[w]&(1<<(i%64)) != 0
}

// update makes the baseline the state the batch left: the new
// evaluation's ids; each applied segment at its new version; each segment
// the batch did not apply carried over to the new ids, or dropped when one
// of its members is not among them (it cannot be written as bits of the
// new evaluation) or its apply failed (the store is then where it was, but
// that state is dropped for simplicity: the next apply is a full one).
func (b *Baseline) update(ev *evaluation, a *alignment, p *BatchParams, versions []int64) {
	inBatch := make(map[string]int, len(p.Segments))
	for k, s := range p.Segments {
		inBatch[s.Segment] = k
	}
	for seg, base := range b.segs {
		if _, ok := inBatch[seg]; ok {
			continue
		}
		moved, ok := carry(base.members, a, len(ev.ids))
		if !ok {
			delete(b.segs, seg)
			continue
		}
		b.segs[seg] = baseSegment{version: base.version, members: moved}
	}
	for k, s := range p.Segments {
		if versions[k] <= 0 {
			delete(b.segs, s.Segment)
			continue
		}
		b.segs[s.Segment] = baseSegment{version: versions[k], members: ev.members[k]}
	}
	b.ids = ev.ids
}

// carry rewrites a bitmap over the baseline's ids as one over the new
// evaluation's n ids; false when a member is not among them.
func carry(members []uint64, a *alignment, n int) ([]uint64, bool) {
	if a == nil {
		return nil, false
	}
	out := make([]uint64, (n+63)/64)
	for j, word := range members {
		for word != 0 {
			bit := bits.TrailingZeros64(word)
			word &= word - 1
			i := a.oldToNew[j*64+bit]
			if i < 0 {
				return nil, false
			}
			out[i/64] |= 1 << (i % 64)
		}
	}
	return out, true
}

// applyMembership applies segment k's membership: only the changes when
// the baseline has the segment, or the store has a membership for it, and
// the store is still at that version; else in full. It returns the
// store's diff.
func (p *BatchParams) applyMembership(ctx context.Context, st Store, ev *evaluation, a *alignment, k int) (*store.MembershipDiff, error) {
	seg := p.Segments[k].Segment
	if p.Baseline != nil {
		ch := p.Baseline.changes(ev, a, seg, k)
		if ch == nil {
			ch = storedChanges(ctx, st, ev, seg, k)
		}
		if ch != nil {
			diff, err := st.MembershipApply(ctx, &store.MembershipApplyParams{Segment: seg, SnapshotID: p.SnapshotID, Changes: ch})
			if !errors.Is(err, store.ErrBaseMoved) {
				return diff, err
			}
		}
	}
	return st.MembershipApply(ctx, &store.MembershipApplyParams{Segment: seg, SnapshotID: p.SnapshotID, Members: ev.memberIDs(k)})
}

// storedChanges computes segment k's changes against its stored
// membership, read back from the store: what a Baseline that does not
// know the segment yet (after a restart, or a leader change) does instead
// of writing every member again. Reading a membership costs far less than
// writing it (PostgreSQL: staging every id, two anti-joins, the index
// updates). It returns nil, and the apply is a full one, when the store
// has no membership for the segment, an empty one, or fails to read it.
//
// The version is read before the members: if another apply lands in
// between, the members read are newer than the version claimed and the
// store refuses the changes (ErrBaseMoved), so a mixed read never applies.
func storedChanges(ctx context.Context, st Store, ev *evaluation, segment string, k int) *store.MembershipChanges {
	m, err := st.MembershipGet(ctx, segment)
	if err != nil || m.Version <= 0 || m.Size == 0 {
		return nil
	}
	pos := ev.position()
	stored := make([]uint64, len(ev.members[k]))
	var gone []string // stored members no longer in the snapshot
	err = st.MembershipScan(ctx, &store.MembershipScanParams{Segment: segment}, func(mb *store.Member) error {
		i, ok := pos[mb.CustomerID]
		if !ok {
			gone = append(gone, mb.CustomerID)
			return nil
		}
		stored[i/64] |= 1 << (i % 64)
		return nil
	})
	if err != nil {
		return nil
	}
	now := ev.members[k]
	return &store.MembershipChanges{
		BaseVersion: m.Version,
		Entered:     bitIDs(ev.ids, now, stored),
		Exited: func(yield func(string, error) bool) {
			for _, id := range gone {
				if !yield(id, nil) {
					return
				}
			}
			bitIDs(ev.ids, stored, now)(yield)
		},
	}
}

// bitIDs yields the ids whose bit is set in set and not in minus.
func bitIDs(ids []string, set, minus []uint64) func(yield func(string, error) bool) {
	return func(yield func(string, error) bool) {
		for w, word := range set {
			if w < len(minus) {
				word &^= minus[w]
			}
			for word != 0 {
				b := bits.TrailingZeros64(word)
				word &= word - 1
				if !yield(ids[w*64+b], nil) {
					return
				}
			}
		}
	}
}
