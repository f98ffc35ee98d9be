package campaign

import (
	"fmt"
	"slices"
	"testing"
)

func TestPickVariantShares(t *testing.T) {
	t.Parallel()
	const n = 100000
	tests := []struct {
		name     string
		variants []Variant
		want     map[string]float64
	}{
		{"none", nil, map[string]float64{"": 1}},
		{"all paused", []Variant{{"a", 0}, {"b", 0}}, map[string]float64{"": 1}},
		{"one", []Variant{{"a", 1}}, map[string]float64{"a": 1}},
		{"even", []Variant{{"a", 1}, {"b", 1}}, map[string]float64{"a": 0.5, "b": 0.5}},
		{"three to one", []Variant{{"a", 3}, {"b", 1}}, map[string]float64{"a": 0.75, "b": 0.25}},
		{"paused middle", []Variant{{"a", 1}, {"b", 0}, {"c", 1}}, map[string]float64{"a": 0.5, "c": 0.5}},
		{"uneven", []Variant{{"x", 10}, {"y", 30}, {"z", 60}}, map[string]float64{"x": 0.1, "y": 0.3, "z": 0.6}},
		{"negative counts as paused", []Variant{{"a", -3}, {"b", 2}}, map[string]float64{"b": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			counts := map[string]int{}
			for i := range n {
				counts[PickVariant(tt.variants, "campaign-uid", fmt.Sprintf("cust-%d", i))]++
			}
			for name, c := range counts {
				if _, ok := tt.want[name]; !ok {
					t.Errorf("variant %q picked %d times, want never", name, c)
				}
			}
			for name, share := range tt.want {
				if got := float64(counts[name]) / n; got < share-0.01 || got > share+0.01 {
					t.Errorf("variant %q share = %.4f, want %.2f ± 0.01", name, got, share)
				}
			}
		})
	}
}

// TestPickVariantStable checks determinism, independence from the order of
// the variants, and that pausing one variant moves only its customers.
func TestPickVariantStable(t *testing.T) {
	t.Parallel()
	all := []Variant{{"a", 1}, {"b", 2}, {"c", 1}}
	reversed := slices.Clone(all)
	slices.Reverse(reversed)
	paused := []Variant{{"a", 1}, {"b", 0}, {"c", 1}}
	moved := 0
	for i := range 20000 {
		id := fmt.Sprintf("cust-%d", i)
		v := PickVariant(all, "uid", id)
		if again := PickVariant(all, "uid", id); again != v {
			t.Fatalf("%s: %q then %q", id, v, again)
		}
		if r := PickVariant(reversed, "uid", id); r != v {
			t.Fatalf("%s: order changed the variant: %q vs %q", id, v, r)
		}
		p := PickVariant(paused, "uid", id)
		if v != "b" && p != v {
			t.Fatalf("%s: pausing b moved a customer of %q to %q", id, v, p)
		}
		if v == "b" {
			moved++
			if p == "b" {
				t.Fatalf("%s: paused variant b still picked", id)
			}
		}
	}
	if moved == 0 {
		t.Fatal("no customer had variant b")
	}
}

// TestPickVariantIndependentOfHoldout checks that the variant split is the
// same inside and outside the holdout (separate hashes).
func TestPickVariantIndependentOfHoldout(t *testing.T) {
	t.Parallel()
	variants := []Variant{{"a", 1}, {"b", 1}}
	var held, heldA int
	for i := range 100000 {
		id := fmt.Sprintf("cust-%d", i)
		if InHoldout("uid", id, Threshold(10)) {
			held++
			if PickVariant(variants, "uid", id) == "a" {
				heldA++
			}
		}
	}
	if share := float64(heldA) / float64(held); share < 0.47 || share > 0.53 {
		t.Errorf("variant a share among %d holdout members = %.3f, want about 0.5", held, share)
	}
}

func TestShard(t *testing.T) {
	t.Parallel()
	const n = 70000
	tests := []struct{ shards, want int32 }{{-1, 1}, {0, 1}, {1, 1}, {2, 2}, {7, 7}, {64, 64}}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.shards), func(t *testing.T) {
			t.Parallel()
			counts := make([]int, tt.want)
			for i := range n {
				id := fmt.Sprintf("cust-%d", i)
				s := Shard(id, tt.shards)
				if s < 0 || s >= tt.want {
					t.Fatalf("Shard(%q, %d) = %d, out of range", id, tt.shards, s)
				}
				if Shard(id, tt.shards) != s {
					t.Fatalf("Shard(%q) not deterministic", id)
				}
				counts[s]++
			}
			exp := float64(n) / float64(tt.want)
			for s, c := range counts {
				if d := float64(c) - exp; d > 0.1*exp || d < -0.1*exp {
					t.Errorf("shard %d has %d customers, want %.0f ± 10%%", s, c, exp)
				}
			}
		})
	}
}
