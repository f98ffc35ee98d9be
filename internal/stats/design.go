package stats

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// powerFactor is (z_{1−α/2} + z_{power}) for a two-sided test at level
// alpha with the given power.
func powerFactor(alpha, power float64) (float64, error) {
	if !(alpha > 0 && alpha < 1) || !(power > 0 && power < 1) {
		return 0, fmt.Errorf("stats: alpha %v and power %v must be in (0, 1)", alpha, power)
	}
	return distuv.UnitNormal.Quantile(1-alpha/2) + distuv.UnitNormal.Quantile(power), nil
}

// MinimumDetectableEffect returns the smallest absolute lift δ (the
// treatment's rate p0+δ minus the base rate p0) that a two-sided test at
// level alpha detects with the given power, for groups of nTreatment and
// nHoldout: the δ with (z_{1−α/2} + z_power)·√(p0(1−p0)/nHoldout +
// p1(1−p1)/nTreatment) = δ, p1 = p0 + δ (unpooled variances), found by
// bisection. An error when the base rate is not in (0, 1), a group is
// empty, or no lift up to a rate of 1 is detectable.
func MinimumDetectableEffect(p0 float64, nTreatment, nHoldout int64, alpha, power float64) (float64, error) {
	if !(p0 > 0 && p0 < 1) {
		return 0, fmt.Errorf("stats: base rate %v is not in (0, 1)", p0)
	}
	if nTreatment <= 0 || nHoldout <= 0 {
		return 0, fmt.Errorf("stats: groups of %d and %d: an empty group detects nothing", nTreatment, nHoldout)
	}
	k, err := powerFactor(alpha, power)
	if err != nil {
		return 0, err
	}
	gap := func(d float64) float64 {
		p1 := p0 + d
		return d - k*math.Sqrt(p0*(1-p0)/float64(nHoldout)+p1*(1-p1)/float64(nTreatment))
	}
	lo, hi := 0.0, 1-p0
	if gap(hi) < 0 {
		return 0, fmt.Errorf("stats: groups of %d and %d are too small to detect any lift from a base rate of %v", nTreatment, nHoldout, p0)
	}
	for range 200 {
		mid := (lo + hi) / 2
		if gap(mid) < 0 {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi, nil
}

// SampleSize returns the total audience (treatment plus holdout, the
// holdout a share holdoutShare of it) needed to detect a relative lift rel
// on base rate p0 with a two-sided test at level alpha and the given
// power, with the variances of MinimumDetectableEffect.
func SampleSize(p0, rel, holdoutShare, alpha, power float64) (int64, error) {
	if !(p0 > 0 && p0 < 1) || !(rel > 0) || !(p0*(1+rel) < 1) {
		return 0, fmt.Errorf("stats: base rate %v with a relative lift of %v is not a pair of rates in (0, 1)", p0, rel)
	}
	if !(holdoutShare > 0 && holdoutShare < 1) {
		return 0, fmt.Errorf("stats: holdout share %v is not in (0, 1)", holdoutShare)
	}
	k, err := powerFactor(alpha, power)
	if err != nil {
		return 0, err
	}
	d := p0 * rel
	p1 := p0 + d
	n := k * k * (p0*(1-p0)/holdoutShare + p1*(1-p1)/(1-holdoutShare)) / (d * d)
	return int64(math.Ceil(n)), nil
}

// SampleRatioMismatch tests observed group sizes against planned shares
// (summing to 1): Pearson's χ² goodness of fit with k−1 degrees of
// freedom. It returns the statistic and its p-value.
func SampleRatioMismatch(observed []int64, planned []float64) (chi2, p float64, err error) {
	if len(observed) < 2 || len(observed) != len(planned) {
		return 0, 0, fmt.Errorf("stats: %d groups against %d planned shares", len(observed), len(planned))
	}
	var total int64
	var shares float64
	for i, o := range observed {
		if o < 0 || !(planned[i] > 0) {
			return 0, 0, fmt.Errorf("stats: group %d: %d observed against a planned share of %v", i, o, planned[i])
		}
		total += o
		shares += planned[i]
	}
	if total == 0 || math.Abs(shares-1) > 1e-9 {
		return 0, 0, fmt.Errorf("stats: %d observed in all, planned shares summing to %v", total, shares)
	}
	for i, o := range observed {
		e := float64(total) * planned[i]
		chi2 += sq(float64(o)-e) / e
	}
	return chi2, ChiSquareSurvival(chi2, float64(len(observed)-1)), nil
}

// ChiSquareSurvival is P(X > x) for X χ²-distributed with df degrees of
// freedom.
func ChiSquareSurvival(x, df float64) float64 {
	return distuv.ChiSquared{K: df}.Survival(x)
}
