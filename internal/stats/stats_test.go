package stats

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

// TestNewcombeTableII reproduces Newcombe (1998), "Interval estimation for
// the difference between independent proportions: comparison of eleven
// methods", Statistics in Medicine 17:873–890, Table II, method 10 (the
// hybrid score interval without continuity correction), to the four
// decimals published.
func TestNewcombeTableII(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		x1, n1, x2, n2 int64
		lo, hi         float64
	}{
		{56, 70, 48, 80, 0.0524, 0.3339},
		{9, 10, 3, 10, 0.1705, 0.8090},
		{6, 7, 2, 7, 0.0582, 0.8062},
		{5, 56, 0, 29, -0.0381, 0.1926},
		{0, 10, 0, 20, -0.1611, 0.2775},
		{0, 10, 0, 10, -0.2775, 0.2775},
		{10, 10, 0, 20, 0.6791, 1.0000},
		{10, 10, 0, 10, 0.6075, 1.0000},
	} {
		d, err := CompareProportions(tc.x1, tc.n1, tc.x2, tc.n2, 0.95)
		if err != nil {
			t.Fatal(err)
		}
		if !near(d.CI.Lower, tc.lo, 0.00005) || !near(d.CI.Upper, tc.hi, 0.00005) {
			t.Errorf("%d/%d − %d/%d: CI (%.4f, %.4f), Newcombe's (%.4f, %.4f)", tc.x1, tc.n1, tc.x2, tc.n2, d.CI.Lower, d.CI.Upper, tc.lo, tc.hi)
		}
		if want := float64(tc.x1)/float64(tc.n1) - float64(tc.x2)/float64(tc.n2); d.Diff != want {
			t.Errorf("diff %v, want %v", d.Diff, want)
		}
	}
}

// TestWilson: Newcombe (1998), "Two-sided confidence intervals for the
// single proportion: comparison of seven methods", Statistics in Medicine
// 17:857–872, Table I, method 3 (score, no continuity correction).
func TestWilson(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		x, n   int64
		lo, hi float64
	}{
		{81, 263, 0.2553, 0.3662},
		{15, 148, 0.0624, 0.1605},
		{0, 20, 0, 0.1611},
		{1, 29, 0.0061, 0.1718},
	} {
		w, err := Wilson(tc.x, tc.n, 0.95)
		if err != nil {
			t.Fatal(err)
		}
		if !near(w.Lower, tc.lo, 0.00005) || !near(w.Upper, tc.hi, 0.00005) {
			t.Errorf("%d/%d: (%.4f, %.4f), Newcombe's (%.4f, %.4f)", tc.x, tc.n, w.Lower, w.Upper, tc.lo, tc.hi)
		}
	}
}

// TestZTestIsPearsonChiSquare: the pooled z-test's p-value is that of
// Pearson's χ² (1 df) on the 2×2 table, computed by hand for 56/70 vs
// 48/80: χ² = 150·(56·32 − 14·48)² / (70·80·104·46) = 7.0234.
func TestZTestIsPearsonChiSquare(t *testing.T) {
	t.Parallel()
	d, err := CompareProportions(56, 70, 48, 80, 0.95)
	if err != nil {
		t.Fatal(err)
	}
	chi2 := 150 * sq(56*32-14*48) / (70.0 * 80 * 104 * 46)
	if !near(chi2, 7.0234, 0.0001) || !near(d.PValue, chiSquareSurvival(chi2, 1), 1e-12) || !near(d.PValue, 0.00805, 0.00001) {
		t.Fatalf("p = %v, χ² %v → %v", d.PValue, chi2, chiSquareSurvival(chi2, 1))
	}
	if !d.HasRelative || !near(d.RelativeUplift, 0.2/0.6, 1e-12) {
		t.Fatalf("relative uplift %v (%v)", d.RelativeUplift, d.HasRelative)
	}
	if d, _ := CompareProportions(3, 10, 0, 10, 0.95); d.HasRelative {
		t.Fatal("a relative uplift over a holdout rate of 0")
	}
	if d, _ := CompareProportions(0, 10, 0, 10, 0.95); d.PValue != 1 {
		t.Fatalf("no conversions at all: p = %v, want 1", d.PValue)
	}
}

// TestQuantilesAgainstTables: the normal quantiles and χ² tail areas the
// package relies on, against standard tables.
func TestQuantilesAgainstTables(t *testing.T) {
	t.Parallel()
	if q := distuv.UnitNormal.Quantile(0.975); !near(q, 1.959964, 1e-6) {
		t.Errorf("z_0.975 = %v", q)
	}
	if q := distuv.UnitNormal.Quantile(0.8); !near(q, 0.841621, 1e-6) {
		t.Errorf("z_0.8 = %v", q)
	}
	for _, tc := range []struct {
		x  float64
		df int
		p  float64
	}{{3.841459, 1, 0.05}, {10.827566, 1, 0.001}, {13.815511, 2, 0.001}, {5.991465, 2, 0.05}} {
		if p := chiSquareSurvival(tc.x, tc.df); !near(p, tc.p, 1e-6) {
			t.Errorf("P(χ²_%v > %v) = %v, want %v", tc.df, tc.x, p, tc.p)
		}
	}
}

func TestInvalidInput(t *testing.T) {
	t.Parallel()
	for _, c := range [][4]int64{{1, 0, 1, 2}, {3, 2, 1, 2}, {-1, 2, 1, 2}, {1, 2, 1, 0}} {
		if _, err := CompareProportions(c[0], c[1], c[2], c[3], 0.95); err == nil {
			t.Errorf("CompareProportions%v took it", c)
		}
	}
	if _, err := CompareProportions(1, 2, 1, 2, 1); err == nil {
		t.Error("confidence 1 taken")
	}
	if _, err := Wilson(1, 0, 0.95); err == nil {
		t.Error("Wilson of 1/0 taken")
	}
	if !TooFewToSay(9, 1000) || !TooFewToSay(1000, 9) || TooFewToSay(10, 10) {
		t.Error("TooFewToSay's threshold")
	}
}

// TestSampleSize: the documented example — at a 2% base rate and a 10%
// holdout, about 432,000 customers are needed to see a 10% relative lift
// (α = 0.05 two-sided, 80% power): by hand, (1.959964 + 0.841621)² ×
// (0.0196/0.1 + 0.021516/0.9) / 0.002² = 431,506.
func TestSampleSize(t *testing.T) {
	t.Parallel()
	n, err := SampleSize(0.02, 0.1, 0.1, 0.05, 0.8)
	if err != nil || n < 431000 || n > 432000 {
		t.Fatalf("SampleSize = %d, %v; want about 431,500", n, err)
	}
	// MinimumDetectableEffect inverts it.
	mde, err := MinimumDetectableEffect(0.02, n*9/10, n/10, 0.05, 0.8)
	if err != nil || !near(mde, 0.002, 0.000005) {
		t.Fatalf("MDE at that size = %v, %v; want 0.002", mde, err)
	}
	// Bigger groups detect smaller effects.
	small, _ := MinimumDetectableEffect(0.02, 9000, 1000, 0.05, 0.8)
	big, _ := MinimumDetectableEffect(0.02, 90000, 10000, 0.05, 0.8)
	if !(big < small) || !near(small/big, math.Sqrt(10), 0.2) {
		t.Fatalf("MDE %v at 10k, %v at 100k", small, big)
	}
	for _, tc := range []struct {
		p0     float64
		nt, nh int64
	}{{0, 100, 100}, {1, 100, 100}, {0.5, 0, 100}, {0.5, 100, 0}, {0.999, 2, 1}} {
		if v, err := MinimumDetectableEffect(tc.p0, tc.nt, tc.nh, 0.05, 0.8); err == nil {
			t.Errorf("MDE(%v, %d, %d) = %v, want an error", tc.p0, tc.nt, tc.nh, v)
		}
	}
	if _, err := SampleSize(0.02, 0.1, 0, 0.05, 0.8); err == nil {
		t.Error("a holdout share of 0 taken")
	}
}

// TestSampleRatioMismatch: 821/179 against a planned 80/20 split, by hand:
// χ² = 21²/800 + 21²/200 = 2.75625.
func TestSampleRatioMismatch(t *testing.T) {
	t.Parallel()
	chi2, p, err := SampleRatioMismatch([]int64{821, 179}, []float64{0.8, 0.2})
	if err != nil || !near(chi2, 2.75625, 1e-9) || !near(p, chiSquareSurvival(2.75625, 1), 1e-12) || p < 0.09 || p > 0.1 {
		t.Fatalf("χ² %v p %v (%v)", chi2, p, err)
	}
	if _, p, _ := SampleRatioMismatch([]int64{800, 200}, []float64{0.8, 0.2}); p != 1 {
		t.Fatalf("a perfect split: p = %v", p)
	}
	if _, p, _ := SampleRatioMismatch([]int64{9000, 1400}, []float64{0.8, 0.2}); p >= 0.001 {
		t.Fatalf("a 13.5%% holdout of a planned 20%%: p = %v", p)
	}
	for _, tc := range []struct {
		o []int64
		s []float64
	}{{[]int64{1}, []float64{1}}, {[]int64{1, 2}, []float64{0.5}}, {[]int64{0, 0}, []float64{0.5, 0.5}}, {[]int64{1, 2}, []float64{0.5, 0.6}}, {[]int64{1, 2}, []float64{1, 0}}} {
		if _, _, err := SampleRatioMismatch(tc.o, tc.s); err == nil {
			t.Errorf("SampleRatioMismatch(%v, %v) taken", tc.o, tc.s)
		}
	}
}

// TestMantelHaenszel checks the pooled risk difference and the CMH test.
func TestMantelHaenszel(t *testing.T) {
	t.Parallel()
	// The CMH test on R's UCBAdmissions (admitted among male vs female
	// applicants, stratified by department): mantelhaen.test(UCBAdmissions,
	// correct = FALSE) gives X-squared = 1.5246, p-value = 0.2169.
	ucb := []Stratum{{512, 825, 89, 108}, {353, 560, 17, 25}, {120, 325, 202, 593}, {138, 417, 131, 375}, {53, 191, 94, 393}, {22, 373, 24, 341}}
	p, err := MantelHaenszel(ucb, 0.95)
	if err != nil || !near(p.PValue, 0.2169, 0.00005) || p.Strata != 6 {
		t.Fatalf("UCB: %+v, %v", p, err)
	}
	// Simpson's paradox in the same data: pooled naively, men are admitted
	// 14 points more often; within departments the difference is small and
	// of the other sign.
	naive := float64(p.TreatmentConverted)/float64(p.Treatment) - float64(p.HoldoutConverted)/float64(p.Holdout)
	if !(naive > 0.1) || !(p.Diff < 0 && p.Diff > -0.05) || !(p.CI.Lower < 0 && p.CI.Upper > 0) {
		t.Fatalf("naive %v, stratified %v %+v", naive, p.Diff, p.CI)
	}

	// One stratum: the simple difference, with an interval close to Wald's.
	one, err := MantelHaenszel([]Stratum{{56, 70, 48, 80}}, 0.95)
	if err != nil || !near(one.Diff, 0.2, 1e-12) {
		t.Fatalf("one stratum: %+v, %v", one, err)
	}
	wald := 1.959964 * math.Sqrt(0.8*0.2/70+0.6*0.4/80)
	if !near(one.CI.Upper-one.Diff, wald, 0.01) || !near(one.Diff-one.CI.Lower, wald, 0.01) {
		t.Fatalf("one stratum's half-width %v, Wald's %v", one.CI.Upper-one.Diff, wald)
	}
	// The same stratum k times: the same difference, variance / k.
	four, _ := MantelHaenszel([]Stratum{{56, 70, 48, 80}, {56, 70, 48, 80}, {56, 70, 48, 80}, {56, 70, 48, 80}}, 0.95)
	if !near(four.Diff, 0.2, 1e-12) || !near((four.CI.Upper-four.CI.Lower)*2, one.CI.Upper-one.CI.Lower, 1e-9) {
		t.Fatalf("four copies: %+v vs %+v", four, one)
	}
	// Strata with an empty group contribute nothing; none at all is an error.
	same, _ := MantelHaenszel([]Stratum{{56, 70, 48, 80}, {0, 0, 3, 10}, {2, 10, 0, 0}}, 0.95)
	if same.Diff != one.Diff || same.Strata != 1 || same.CI != one.CI {
		t.Fatalf("empty groups changed the result: %+v", same)
	}
	if _, err := MantelHaenszel([]Stratum{{0, 0, 1, 2}}, 0.95); err == nil {
		t.Fatal("no comparable stratum taken")
	}
	if _, err := MantelHaenszel([]Stratum{{3, 2, 1, 2}}, 0.95); err == nil {
		t.Fatal("3 of 2 taken")
	}
}
