package stats

import (
	"errors"
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// Stratum is one run of a campaign: a 2×2 table.
type Stratum struct {
	TreatmentConverted, Treatment, HoldoutConverted, Holdout int64
}

// Pooled is the Mantel–Haenszel risk difference over strata (runs).
type Pooled struct {
	// Diff is the pooled risk difference, treatment minus holdout.
	Diff float64
	// CI is its interval from Sato's (1989) variance estimator, which is
	// consistent both with many small strata (a campaign of many small
	// runs) and with few large ones, where the Greenland–Robins (1985)
	// estimator of the risk difference is not.
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
// with an empty group carries no comparison and contributes nothing; an
// error when no stratum does or when a count is invalid.
func MantelHaenszel(strata []Stratum, conf float64) (Pooled, error) {
	zz, err := z(conf)
	if err != nil {
		return Pooled{}, err
	}
	var out Pooled
	var num, weights, sumP, sumQ float64 // risk difference and Sato's variance
	var dev, cmhVar float64              // CMH: Σ(a − E a), Σ Var a
	for _, s := range strata {
		if s.Treatment < 0 || s.Holdout < 0 || s.TreatmentConverted < 0 || s.HoldoutConverted < 0 ||
			s.TreatmentConverted > s.Treatment || s.HoldoutConverted > s.Holdout {
			return Pooled{}, errors.New("stats: a stratum's counts are not two proportions")
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
		return Pooled{}, errors.New("stats: no stratum has both groups")
	}
	out.Diff = num / weights
	v := math.Max(0, (out.Diff*sumP+sumQ)/(weights*weights))
	half := zz * math.Sqrt(v)
	out.CI = Interval{Lower: math.Max(-1, out.Diff-half), Upper: math.Min(1, out.Diff+half)}
	out.PValue = 1
	if cmhVar > 0 {
		out.PValue = 2 * distuv.UnitNormal.Survival(math.Abs(dev)/math.Sqrt(cmhVar))
	}
	return out, nil
}
