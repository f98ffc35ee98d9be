package stats

import (
	"fmt"
	"math"
)

// Stratum is one run of a campaign: a 2×2 table of intent-to-treat counts,
// TreatmentConverted of Treatment customers and HoldoutConverted of
// Holdout customers.
type Stratum struct {
	TreatmentConverted, Treatment, HoldoutConverted, Holdout int64
}

// Pooled is the Mantel–Haenszel risk difference over strata (runs).
type Pooled struct {
	// Diff is the pooled risk difference, treatment minus holdout: the
	// within-run differences averaged with Mantel–Haenszel weights
	// n1·n0/(n1+n0), so a run's base rate and holdout share never enter the
	// comparison.
	Diff float64
	// CI is Diff ± z·SE with the variance estimator of Sato, Greenland &
	// Robins (1989, Biometrics 45:1323–1324), the one SAS PROC FREQ's
	// COMMONRISKDIFF and R's metafor use; it reproduces Agresti's (2013,
	// p. 231) worked example. It is consistent both with many small strata
	// (a campaign of many small runs) and with few large ones. The
	// Greenland–Robins (1985) estimator for the risk difference (Stata's
	// metan) is consistent only in the second limit: its per-stratum
	// binomial variances p̂(1−p̂)/n are biased low by (n−1)/n, a bias that
	// does not shrink when strata stay small however many there are.
	CI Interval
	// PValue is the two-sided p-value of the Cochran–Mantel–Haenszel test
	// of no association (no continuity correction).
	PValue float64
	// Strata counts the strata that contributed (both groups non-empty).
	Strata int
	// The groups' counts summed over those strata.
	Treatment, TreatmentConverted, Holdout, HoldoutConverted int64
}

// MantelHaenszel pools strata at two-sided confidence conf. A stratum
// with an empty group carries no comparison and contributes nothing: not
// to Diff, CI or PValue, nor to Strata and the summed counts. It fails
// with ErrInvalidInput when a count is invalid, conf is outside (0, 1) or
// no stratum has both groups.
//
// The interval is a Wald-type interval on the pooled difference: with all
// conversions 0 (or all 1) its variance is 0 and it collapses onto Diff.
// Callers should apply TooFewToSay to the summed groups first.
func MantelHaenszel(strata []Stratum, conf float64) (Pooled, error) {
	zz, err := z(conf)
	if err != nil {
		return Pooled{}, fmt.Errorf("mantel-haenszel: %w", err)
	}
	var out Pooled
	var num, weights, sumP, sumQ float64 // risk difference and Sato's variance
	var dev, cmhVar float64              // CMH: Σ(a − E a), Σ Var a
	for i, s := range strata {
		if s.Treatment < 0 || s.Holdout < 0 || s.TreatmentConverted < 0 || s.HoldoutConverted < 0 ||
			s.TreatmentConverted > s.Treatment || s.HoldoutConverted > s.Holdout {
			return Pooled{}, fmt.Errorf("mantel-haenszel: stratum %d: %w: %d of %d treatment and %d of %d holdout customers converted",
				i, ErrInvalidInput, s.TreatmentConverted, s.Treatment, s.HoldoutConverted, s.Holdout)
		}
		if s.Treatment == 0 || s.Holdout == 0 {
			continue
		}
		a, n1 := float64(s.TreatmentConverted), float64(s.Treatment)
		c, n0 := float64(s.HoldoutConverted), float64(s.Holdout)
		n := n1 + n0
		out.Strata++
		out.Treatment, out.TreatmentConverted = out.Treatment+s.Treatment, out.TreatmentConverted+s.TreatmentConverted
		out.Holdout, out.HoldoutConverted = out.Holdout+s.Holdout, out.HoldoutConverted+s.HoldoutConverted

		num += (a*n0 - c*n1) / n
		weights += n1 * n0 / n
		sumP += (n1*n1*c - n0*n0*a + n1*n0*(n0-n1)/2) / (n * n)
		sumQ += (a*(n0-c) + c*(n1-a)) / (2 * n)

		m1 := a + c
		dev += a - n1*m1/n
		if n > 1 {
			cmhVar += n1 * n0 * m1 * (n - m1) / (n * n * (n - 1))
		}
	}
	if out.Strata == 0 {
		return Pooled{}, fmt.Errorf("mantel-haenszel: %w: none of %d strata has both a treatment and a holdout customer", ErrInvalidInput, len(strata))
	}
	out.Diff = num / weights
	// Sato's estimator is not guaranteed non-negative in floating point;
	// a negative rounding residue would make the square root NaN.
	v := math.Max(0, (out.Diff*sumP+sumQ)/(weights*weights))
	half := zz * math.Sqrt(v)
	out.CI = Interval{Lower: math.Max(-1, out.Diff-half), Upper: math.Min(1, out.Diff+half)}
	// The CMH χ² (1 df) is (Σ(a − E a))² / Σ Var a; its p-value is the
	// two-sided normal tail of the signed root. No variance (every run all
	// converted or none) leaves nothing to test.
	out.PValue = 1
	if cmhVar > 0 {
		out.PValue = twoSidedP(dev / math.Sqrt(cmhVar))
	}
	return out, nil
}
