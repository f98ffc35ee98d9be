package campaign

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"
)

// TestBucketKnownValues pins the holdout hash: if any of these change, the
// groups of every running campaign change with them.
func TestBucketKnownValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		campaignUID, customerID string
		want                    int32
	}{
		{"c0ffee00-0000-4000-8000-000000000001", "cust-1", 5976},
		{"c0ffee00-0000-4000-8000-000000000001", "cust-2", 405},
		// Also: printf 'holdout\0campaign-uid\0alice@example.com' | sha256sum
		{"campaign-uid", "alice@example.com", 3773},
		{"", "", 3196},
	}
	for _, tt := range tests {
		t.Run(tt.customerID, func(t *testing.T) {
			t.Parallel()
			if got := Bucket(tt.campaignUID, tt.customerID); got != tt.want {
				t.Errorf("Bucket(%q, %q) = %d, want %d", tt.campaignUID, tt.customerID, got, tt.want)
			}
			// The documented formula, computed independently.
			sum := sha256.Sum256([]byte("holdout\x00" + tt.campaignUID + "\x00" + tt.customerID))
			if got := int32(binary.BigEndian.Uint64(sum[:8]) % 10000); got != tt.want {
				t.Errorf("documented formula gives %d, want %d", got, tt.want)
			}
		})
	}
}

func TestThreshold(t *testing.T) {
	t.Parallel()
	tests := []struct{ percent, want int32 }{
		{-5, 0}, {0, 0}, {1, 100}, {10, 1000}, {20, 2000}, {50, 5000}, {100, 10000}, {150, 10000},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.percent), func(t *testing.T) {
			t.Parallel()
			if got := Threshold(tt.percent); got != tt.want {
				t.Errorf("Threshold(%d) = %d, want %d", tt.percent, got, tt.want)
			}
		})
	}
}

// TestBucketDistribution checks that buckets are uniform: a chi-square
// test over 100 bins of 100 buckets each, on 100,000 sequential ids, and
// the holdout share at a few percentages within ±0.5 points.
func TestBucketDistribution(t *testing.T) {
	t.Parallel()
	const n = 100000
	tests := []struct{ name, uid, format string }{
		{"sequential", "c0ffee00-0000-4000-8000-000000000001", "cust-%d"},
		{"padded", "8d7f3b2e-1111-4222-8333-944455556666", "%08d"},
		{"emails", "campaign-b", "user%d@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var bins [100]int
			for i := range n {
				b := Bucket(tt.uid, fmt.Sprintf(tt.format, i))
				if b < 0 || b >= Buckets {
					t.Fatalf("bucket %d out of range", b)
				}
				bins[b/100]++
			}
			chi2 := 0.0
			const expected = n / 100.0
			for _, c := range bins {
				d := float64(c) - expected
				chi2 += d * d / expected
			}
			// Chi-square with 99 degrees of freedom: P(X > 148.2) = 0.001.
			if chi2 > 148.2 {
				t.Errorf("chi-square = %.1f over 99 df, want <= 148.2", chi2)
			}
			for _, pct := range []int{5, 10, 20, 50} {
				in := 0
				for _, c := range bins[:pct] {
					in += c
				}
				if share := float64(in) / n * 100; share < float64(pct)-0.5 || share > float64(pct)+0.5 {
					t.Errorf("holdout share at %d%% = %.2f%%", pct, share)
				}
			}
		})
	}
}

// TestHoldoutMonotonic checks that raising the percentage keeps every
// earlier holdout member held out, and that campaigns split independently.
func TestHoldoutMonotonic(t *testing.T) {
	t.Parallel()
	const n = 20000
	percents := []int32{0, 5, 10, 20, 35, 50, 100}
	overlap, heldA, heldB := 0, 0, 0
	for i := range n {
		id := fmt.Sprintf("cust-%d", i)
		prev := false
		for _, p := range percents {
			in := InHoldout("campaign-a", id, Threshold(p))
			if prev && !in {
				t.Fatalf("%s held out at a lower percentage but not at %d%%", id, p)
			}
			prev = in
		}
		if InHoldout("campaign-a", id, Threshold(100)) != true || InHoldout("campaign-a", id, Threshold(0)) {
			t.Fatalf("%s: 0%% and 100%% must hold out nobody and everybody", id)
		}
		a, b := InHoldout("campaign-a", id, 5000), InHoldout("campaign-b", id, 5000)
		if a {
			heldA++
		}
		if b {
			heldB++
		}
		if a && b {
			overlap++
		}
	}
	// Independent 50% splits overlap on about a quarter of the customers.
	if share := float64(overlap) / n; share < 0.24 || share > 0.26 {
		t.Errorf("two campaigns' 50%% holdouts overlap on %.3f of customers, want about 0.25 (held %d, %d)", share, heldA, heldB)
	}
}
