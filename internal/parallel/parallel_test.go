package parallel

import (
	"sync/atomic"
	"testing"
)

func TestChunksCoverRangeOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ w, n int }{{1, 10}, {2, 10}, {3, 10}, {4, 3}, {2, 0}, {8, 1000}} {
		seen := make([]int32, tc.n)
		var calls atomic.Int32
		Chunks(tc.w, tc.n, func(c, lo, hi int) {
			calls.Add(1)
			for i := lo; i < hi; i++ {
				atomic.AddInt32(&seen[i], 1)
			}
		})
		for i, s := range seen {
			if s != 1 {
				t.Fatalf("w=%d n=%d: index %d visited %d times", tc.w, tc.n, i, s)
			}
		}
		want := int32(max(tc.w, 1))
		if calls.Load() != want {
			t.Fatalf("w=%d n=%d: %d chunks, want %d", tc.w, tc.n, calls.Load(), want)
		}
	}
}
