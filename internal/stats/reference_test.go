package stats

import (
	"errors"
	"math"
	"testing"
)

// relNear reports whether a and b agree to a relative tolerance; for
// p-values many orders of magnitude below 1.
func relNear(a, b, rel float64) bool { return math.Abs(a-b) <= rel*math.Abs(b) }

// TestZAgainstTable checks the package's two-sided quantile against the
// standard normal table (e.g. NIST/SEMATECH e-Handbook, 1.3.6.7.1):
// z_0.975 = 1.959964, z_0.8 = 0.841621, z_0.95 = 1.644854, z_0.995 = 2.575829.
func TestZAgainstTable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ conf, want float64 }{
		{0.95, 1.959964},
		{0.60, 0.841621}, // (1−0.6)/2 = 0.2 in the upper tail: z_0.8
		{0.90, 1.644854},
		{0.99, 2.575829},
	} {
		got, err := z(tc.conf)
		if err != nil || !near(got, tc.want, 5e-7) {
			t.Errorf("z(%v) = %v, %v; want %v", tc.conf, got, err, tc.want)
		}
	}
	// Within one ulp of 1 the quantile is still finite: the tail
	// probability is taken directly, not as 1 minus something.
	if got, err := z(math.Nextafter(1, 0)); err != nil || math.IsInf(got, 0) || math.IsNaN(got) || got < 8 {
		t.Errorf("z(1−ulp) = %v, %v", got, err)
	}
}

// TestChiSquareSurvivalAgainstTable: upper critical values of the χ²
// distribution (NIST/SEMATECH e-Handbook, 1.3.6.7.4), and the 2-df closed
// form P(X > x) = exp(−x/2).
func TestChiSquareSurvivalAgainstTable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		x  float64
		df int
		p  float64
	}{
		{3.841459, 1, 0.05},
		{6.634897, 1, 0.01},
		{10.827566, 1, 0.001},
		{13.815511, 2, 0.001},
		{7.814728, 3, 0.05},
		{20.515006, 5, 0.001},
	} {
		if got := chiSquareSurvival(tc.x, tc.df); !near(got, tc.p, 1e-7) {
			t.Errorf("P(χ²_%d > %v) = %v, want %v", tc.df, tc.x, got, tc.p)
		}
	}
	for _, x := range []float64{0.5, 4, 30} {
		if got, want := chiSquareSurvival(x, 2), math.Exp(-x/2); !relNear(got, want, 1e-12) {
			t.Errorf("P(χ²_2 > %v) = %v, want %v", x, got, want)
		}
	}
}

// TestWilsonAgainstR: R's binom::binom.confint(x, n, method = "wilson"),
// as recorded in statsmodels' stats/tests/results/results_proportion.py
// (res_binom, the "wilson" column). The first four are printed to full
// precision, the rest to 7–8 significant digits.
func TestWilsonAgainstR(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		x, n        int64
		lo, hi, tol float64
	}{
		{18, 20, 0.6989663547715128, 0.972133518786232, 1e-12},
		{4, 20, 0.0806576625797981, 0.4160174322518935, 1e-12},
		{4, 200, 0.00780442641634947, 0.05028708690582643, 1e-12},
		{190, 200, 0.910421851861224, 0.972617354399236, 1e-12},
		{1, 30, 5.908590e-03, 0.16670391, 5e-9},
		{29, 30, 0.8332961, 0.9940914, 5e-8},
		{0, 30, 0, 0.11351339, 5e-9},
		{30, 30, 0.8864866, 1, 5e-8},
	} {
		w, err := Wilson(tc.x, tc.n, 0.95)
		if err != nil {
			t.Fatal(err)
		}
		if !near(w.Lower, tc.lo, tc.tol) || !near(w.Upper, tc.hi, tc.tol) {
			t.Errorf("Wilson(%d, %d) = %+v, R (%v, %v)", tc.x, tc.n, w, tc.lo, tc.hi)
		}
	}
	// No conversions and all conversions touch the ends exactly.
	if w, _ := Wilson(0, 7, 0.95); w.Lower != 0 {
		t.Errorf("Wilson(0, 7).Lower = %v, want exactly 0", w.Lower)
	}
	if w, _ := Wilson(7, 7, 0.95); w.Upper != 1 {
		t.Errorf("Wilson(7, 7).Upper = %v, want exactly 1", w.Upper)
	}
}

// TestNewcombeMoreExamples: method 10 beyond Newcombe's own table.
func TestNewcombeMoreExamples(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		x1, n1, x2, n2 int64
		lo, hi, tol    float64
	}{
		// The HIV trial of the WUSS 2016 paper (lexjansen.com/wuss/2016/
		// 127_Final_Paper_PDF.pdf), as checked in DescTools' tests/misc.R
		// for BinomDiffCI(84, 101, 89, 105, method = "score").
		{"HIV trial", 84, 101, 89, 105, -0.1177, 0.0851, 0.00005},
		// Fagerland, Lydersen & Laake (2015), Perondi et al.'s epinephrine
		// trial, as quoted in statsmodels' test_confint_2indep: "Newcombe
		// hybrid score 0.019 0.34".
		{"Perondi 2004", 7, 34, 1, 34, 0.019, 0.34, 0.005},
	} {
		d, err := CompareProportions(tc.x1, tc.n1, tc.x2, tc.n2, 0.95)
		if err != nil {
			t.Fatal(err)
		}
		if !near(d.CI.Lower, tc.lo, tc.tol) || !near(d.CI.Upper, tc.hi, tc.tol) {
			t.Errorf("%s: %+v, published (%v, %v)", tc.name, d.CI, tc.lo, tc.hi)
		}
	}
}

// TestPooledZTestAgainstReference: two-sided p-values of the pooled
// two-proportion z-test (Pearson χ², no continuity correction) recorded in
// statsmodels' stats/tests/test_proportion.py: test_default_values
// (GH 2969) and TestProportion.res_ppt_pvals_raw, the pairwise tests of
// 73/86, 90/93, 114/136 and 75/82.
func TestPooledZTestAgainstReference(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		x1, n1, x2, n2 int64
		p              float64
	}{
		{5, 83, 12, 99, 0.15918129181156992},
		{73, 86, 90, 93, 0.00533824886503131},
		{73, 86, 114, 136, 0.8327574849753566},
		{73, 86, 75, 82, 0.1880573726722516},
		{90, 93, 114, 136, 0.002026764254350234},
		{90, 93, 75, 82, 0.1309487516334318},
		{114, 136, 75, 82, 0.1076118730631731},
	} {
		d, err := CompareProportions(tc.x1, tc.n1, tc.x2, tc.n2, 0.95)
		if err != nil {
			t.Fatal(err)
		}
		if !relNear(d.PValue, tc.p, 1e-9) {
			t.Errorf("%d/%d vs %d/%d: p = %v, want %v", tc.x1, tc.n1, tc.x2, tc.n2, d.PValue, tc.p)
		}
	}
	// Far in the tail (z ≈ 31.7) the p-value keeps its relative precision:
	// Pearson's χ² by the 2×2 formula N(ad − bc)²/(r1·r2·c1·c2), through
	// the χ² survival function, agrees with the z-test's normal tail.
	d, err := CompareProportions(3000, 100000, 1000, 100000, 0.95)
	if err != nil {
		t.Fatal(err)
	}
	a, b, c, e := 3000.0, 97000.0, 1000.0, 99000.0
	chi2 := 200000 * sq(a*e-b*c) / (100000 * 100000 * (a + c) * (b + e))
	if want := chiSquareSurvival(chi2, 1); !(want > 0) || !relNear(d.PValue, want, 1e-6) {
		t.Errorf("3000 vs 1000 of 100,000: p = %v, χ² %v gives %v", d.PValue, chi2, want)
	}
}

// beitlerLandis is the eight-centre trial of a topical cream (Beitler &
// Landis 1985) in Agresti, Categorical Data Analysis, 3rd ed. (2013),
// p. 226: successes among drug and among control patients per centre.
var beitlerLandis = []Stratum{
	{11, 36, 10, 37}, {16, 20, 22, 32}, {14, 19, 7, 19}, {2, 16, 1, 17},
	{6, 17, 0, 12}, {1, 11, 0, 10}, {1, 5, 1, 9}, {4, 6, 6, 7},
}

// TestMantelHaenszelAgresti: Agresti (2013, p. 231) gives the
// Mantel–Haenszel risk difference 0.130 with Sato's standard error 0.050
// for these data (the values GSK's cicalc tests its
// ci_prop_diff_mh_strata against), and R's mantelhaen.test(beitler,
// correct = FALSE) on the same array prints X-squared = 6.3841, p-value =
// 0.01151 (output reproduced in public notes of Agresti's R examples).
func TestMantelHaenszelAgresti(t *testing.T) {
	t.Parallel()
	p, err := MantelHaenszel(beitlerLandis, 0.95)
	if err != nil {
		t.Fatal(err)
	}
	se := (p.CI.Upper - p.CI.Lower) / (2 * 1.959963984540054)
	if !near(p.Diff, 0.130, 0.0005) || !near(se, 0.050, 0.0005) {
		t.Errorf("MH difference %v, SE %v; Agresti 0.130, 0.050", p.Diff, se)
	}
	if !near(p.PValue, 0.01151, 0.000005) || !relNear(p.PValue, chiSquareSurvival(6.3841, 1), 1e-4) {
		t.Errorf("CMH p = %v; R 0.01151 (X² 6.3841)", p.PValue)
	}
	if p.Strata != 8 || p.Treatment != 130 || p.Holdout != 143 || p.TreatmentConverted != 55 || p.HoldoutConverted != 47 {
		t.Errorf("totals %+v", p)
	}
}

// bcg is metafor's dat.bcg (Colditz et al. 1994): tuberculosis cases among
// vaccinated (tpos of tpos+tneg) and control (cpos of cpos+cneg) in 13
// trials.
var bcg = []Stratum{
	{4, 123, 11, 139}, {6, 306, 29, 303}, {3, 231, 11, 220},
	{62, 13598, 248, 12867}, {33, 5069, 47, 5808}, {180, 1541, 372, 1451},
	{8, 2545, 10, 629}, {505, 88391, 499, 88391}, {29, 7499, 45, 7277},
	{17, 1716, 65, 1665}, {186, 50634, 141, 27338}, {5, 2498, 3, 2341},
	{27, 16913, 29, 17854},
}

// TestMantelHaenszelMetafor: metafor's tests/testthat/
// test_misc_metan_vs_rma.mh_with_dat.bcg.r, rma.mh(measure = "RD") on
// dat.bcg: estimate −0.0033, CI (−0.0039, −0.0027), z −11.4708 with the
// variance of Sato, Greenland & Robins (1989). The same file notes that
// Stata's metan reports z = 11.56 because it uses the Greenland–Robins
// (1985) variance, and that only Sato's is consistent in both the
// sparse-data and the large-strata limit; the test recomputes that
// variance (per-stratum binomial variances with Mantel–Haenszel weights)
// to confirm it is the one metan uses.
func TestMantelHaenszelMetafor(t *testing.T) {
	t.Parallel()
	p, err := MantelHaenszel(bcg, 0.95)
	if err != nil {
		t.Fatal(err)
	}
	zq, _ := z(0.95)
	se := (p.CI.Upper - p.CI.Lower) / (2 * zq)
	if !near(p.Diff, -0.0033, 0.00005) || !near(p.CI.Lower, -0.0039, 0.00005) || !near(p.CI.Upper, -0.0027, 0.00005) {
		t.Errorf("MH difference %v %+v; metafor −0.0033 (−0.0039, −0.0027)", p.Diff, p.CI)
	}
	if zv := p.Diff / se; !near(zv, -11.4708, 0.00005) {
		t.Errorf("z = %v; metafor −11.4708", zv)
	}
	var w, v float64
	for _, s := range bcg {
		n1, n0 := float64(s.Treatment), float64(s.Holdout)
		p1, p0 := float64(s.TreatmentConverted)/n1, float64(s.HoldoutConverted)/n0
		wk := n1 * n0 / (n1 + n0)
		w += wk
		v += wk * wk * (p1*(1-p1)/n1 + p0*(1-p0)/n0)
	}
	if zgr := math.Abs(p.Diff) / math.Sqrt(v/(w*w)); !near(zgr, 11.56, 0.005) {
		t.Errorf("Greenland–Robins z = %v; metan 11.56", zgr)
	}
}

// TestCMHAgainstSAS: PROC FREQ's CMH statistics carry no continuity
// correction. SAS/STAT User's Guide, PROC FREQ Example "Cochran–Mantel–
// Haenszel Statistics" (the Migraine data): Nonzero Correlation 8.3052,
// Prob 0.0040. The Chinese smoking and lung cancer data (eight cities) run
// through PROC FREQ in a Stanford ED257 handout ("SAS file for CMH
// analysis of Chinese smoking data"): 280.138.
func TestCMHAgainstSAS(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		strata []Stratum
		stat   float64
		rel    float64 // relative tolerance on p from the statistic's rounding
	}{
		{"migraine", []Stratum{{16, 27, 5, 25}, {12, 28, 7, 26}}, 8.3052, 1e-4},
		{"chinese smoking", []Stratum{
			{126, 226, 35, 96}, {908, 1596, 497, 1304}, {913, 1660, 336, 934}, {235, 407, 58, 179},
			{402, 710, 121, 336}, {182, 338, 72, 170}, {60, 159, 11, 54}, {104, 193, 21, 57},
		}, 280.138, 1e-3},
	} {
		p, err := MantelHaenszel(tc.strata, 0.95)
		if err != nil {
			t.Fatal(err)
		}
		if want := chiSquareSurvival(tc.stat, 1); !relNear(p.PValue, want, tc.rel) {
			t.Errorf("%s: p = %v, want %v (χ² %v)", tc.name, p.PValue, want, tc.stat)
		}
	}
}

// TestMantelHaenszelOneStratumEqualGroupsIsWald: with one stratum of equal
// groups (n1 = n0 = n) Sato's variance reduces algebraically to Wald's,
// [p1(1−p1) + p0(1−p0)]/n, so the intervals agree to rounding.
func TestMantelHaenszelOneStratumEqualGroupsIsWald(t *testing.T) {
	t.Parallel()
	for _, s := range []Stratum{{40, 100, 30, 100}, {3, 12, 9, 12}, {0, 50, 1, 50}} {
		p, err := MantelHaenszel([]Stratum{s}, 0.95)
		if err != nil {
			t.Fatal(err)
		}
		n := float64(s.Treatment)
		p1, p0 := float64(s.TreatmentConverted)/n, float64(s.HoldoutConverted)/n
		zq, _ := z(0.95)
		half := zq * math.Sqrt((p1*(1-p1)+p0*(1-p0))/n)
		if !near(p.Diff, p1-p0, 1e-15) || !near(p.CI.Lower, p1-p0-half, 1e-12) || !near(p.CI.Upper, p1-p0+half, 1e-12) {
			t.Errorf("%+v: %v %+v, Wald %v ± %v", s, p.Diff, p.CI, p1-p0, half)
		}
	}
}

// TestSimpsonAcrossRuns: two runs, each lifting conversion by 2 points,
// with opposite base rates and holdout shares. Summing the counts makes the
// campaign look 30 points harmful; Mantel–Haenszel recovers +2 points.
func TestSimpsonAcrossRuns(t *testing.T) {
	t.Parallel()
	runs := []Stratum{
		{52, 100, 450, 900}, // base rate 50%, 90% held out
		{108, 900, 10, 100}, // base rate 10%, 10% held out
	}
	p, err := MantelHaenszel(runs, 0.95)
	if err != nil {
		t.Fatal(err)
	}
	naive := float64(p.TreatmentConverted)/float64(p.Treatment) - float64(p.HoldoutConverted)/float64(p.Holdout)
	if !near(naive, -0.30, 1e-12) || !near(p.Diff, 0.02, 1e-12) || !(p.CI.Lower < 0.02 && p.CI.Upper > 0.02) {
		t.Errorf("naive %v, Mantel–Haenszel %v %+v", naive, p.Diff, p.CI)
	}
}

// TestNeverNaN sweeps small tables and extreme levels: every field is
// finite, intervals are ordered, contain the estimate and stay in range.
func TestNeverNaN(t *testing.T) {
	t.Parallel()
	finite := func(vs ...float64) bool {
		for _, v := range vs {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return false
			}
		}
		return true
	}
	for _, conf := range []float64{0.95, 1e-12, math.Nextafter(1, 0)} {
		for n1 := int64(1); n1 <= 8; n1++ {
			for n2 := int64(1); n2 <= 8; n2++ {
				for x1 := int64(0); x1 <= n1; x1++ {
					for x2 := int64(0); x2 <= n2; x2++ {
						d, err := CompareProportions(x1, n1, x2, n2, conf)
						if err != nil {
							t.Fatal(err)
						}
						if !finite(d.Rate1, d.Rate2, d.Diff, d.CI.Lower, d.CI.Upper, d.RelativeUplift, d.PValue) ||
							!(-1 <= d.CI.Lower && d.CI.Lower <= d.Diff && d.Diff <= d.CI.Upper && d.CI.Upper <= 1) ||
							!(0 <= d.PValue && d.PValue <= 1) {
							t.Fatalf("%d/%d vs %d/%d at %v: %+v", x1, n1, x2, n2, conf, d)
						}
						p, err := MantelHaenszel([]Stratum{{x1, n1, x2, n2}, {x2, n2, x1, n1}, {0, 0, x1, n1}}, conf)
						if err != nil {
							t.Fatal(err)
						}
						if !finite(p.Diff, p.CI.Lower, p.CI.Upper, p.PValue) ||
							!(-1 <= p.CI.Lower && p.CI.Lower <= p.Diff && p.Diff <= p.CI.Upper && p.CI.Upper <= 1) {
							t.Fatalf("pooled %d/%d vs %d/%d at %v: %+v", x1, n1, x2, n2, conf, p)
						}
					}
				}
			}
		}
	}
}

// TestPlanningRoundTrip: MinimumDetectableEffect at the audience SampleSize
// asks for gives back the lift SampleSize was asked about.
func TestPlanningRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ p0, rel, h, alpha, power float64 }{
		{0.02, 0.10, 0.10, 0.05, 0.8},
		{0.30, 0.05, 0.50, 0.05, 0.9},
		{0.50, 0.20, 0.20, 0.01, 0.8},
		{0.001, 1.0, 0.05, 0.10, 0.8},
	} {
		n, err := SampleSize(tc.p0, tc.rel, tc.h, tc.alpha, tc.power)
		if err != nil {
			t.Fatal(err)
		}
		nh := int64(math.Round(tc.h * float64(n)))
		mde, err := MinimumDetectableEffect(tc.p0, n-nh, nh, tc.alpha, tc.power)
		if err != nil || !relNear(mde, tc.p0*tc.rel, 1e-3) {
			t.Errorf("%+v: N = %d, MDE %v, %v; want %v", tc, n, mde, err, tc.p0*tc.rel)
		}
	}
}

// TestErrorsAreSentinels: invalid input and impossible plans wrap the
// package's sentinels, and nothing panics on NaN.
func TestErrorsAreSentinels(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"wilson x > n", second(Wilson(3, 2, 0.95)), ErrInvalidInput},
		{"wilson NaN level", second(Wilson(1, 2, nan)), ErrInvalidInput},
		{"compare empty holdout", second(CompareProportions(1, 2, 0, 0, 0.95)), ErrInvalidInput},
		{"compare negative", second(CompareProportions(-1, 2, 0, 3, 0.95)), ErrInvalidInput},
		{"pooled nothing", second(MantelHaenszel(nil, 0.95)), ErrInvalidInput},
		{"pooled bad stratum", second(MantelHaenszel([]Stratum{{1, 2, 1, 2}, {0, 1, 2, 1}}, 0.95)), ErrInvalidInput},
		{"pooled level 0", second(MantelHaenszel(beitlerLandis, 0)), ErrInvalidInput},
		{"mde base rate 0", second(MinimumDetectableEffect(0, 100, 100, 0.05, 0.8)), ErrInvalidInput},
		{"mde base rate 1", second(MinimumDetectableEffect(1, 100, 100, 0.05, 0.8)), ErrInvalidInput},
		{"mde NaN base rate", second(MinimumDetectableEffect(nan, 100, 100, 0.05, 0.8)), ErrInvalidInput},
		{"mde empty group", second(MinimumDetectableEffect(0.1, 100, 0, 0.05, 0.8)), ErrInvalidInput},
		{"mde power below size", second(MinimumDetectableEffect(0.1, 100, 100, 0.5, 0.1)), ErrInvalidInput},
		{"mde tiny groups", second(MinimumDetectableEffect(0.999, 2, 1, 0.05, 0.8)), ErrUnderpowered},
		{"sample size NaN lift", second(SampleSize(0.1, nan, 0.1, 0.05, 0.8)), ErrInvalidInput},
		{"sample size past 100%", second(SampleSize(0.6, 1, 0.1, 0.05, 0.8)), ErrInvalidInput},
		{"sample size tiny lift", second(SampleSize(0.1, 1e-12, 0.1, 0.05, 0.8)), ErrUnderpowered},
		{"sample size underflowing lift", second(SampleSize(0.1, 1e-320, 0.1, 0.05, 0.8)), ErrUnderpowered},
		{"srm NaN share", third(SampleRatioMismatch([]int64{5, 5}, []float64{nan, 0.5})), ErrInvalidInput},
		{"srm shares sum", third(SampleRatioMismatch([]int64{5, 5}, []float64{0.5, 0.6})), ErrInvalidInput},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: error %v, want %v", tc.name, tc.err, tc.want)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func third[T, U any](_ T, _ U, err error) error { return err }
