package stats

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// Interval is a confidence interval.
type Interval struct{ Lower, Upper float64 }

// MinGroupSize is the smallest group TooFewToSay lets through. Below ten
// customers a group's rate moves by at least ten percentage points per
// customer, and an interval for the difference spans most of [−1, 1]:
// a number would be read as a measurement when it is noise.
const MinGroupSize = 10

// TooFewToSay reports whether either group is too small for an interval
// to mean anything (fewer than MinGroupSize customers).
func TooFewToSay(n1, n2 int64) bool { return n1 < MinGroupSize || n2 < MinGroupSize }

// z returns the two-sided normal quantile of a confidence level.
func z(conf float64) (float64, error) {
	if !(conf > 0 && conf < 1) {
		return 0, fmt.Errorf("stats: confidence %v is not in (0, 1)", conf)
	}
	return distuv.UnitNormal.Quantile(1 - (1-conf)/2), nil
}

func checkCount(x, n int64) error {
	if n <= 0 || x < 0 || x > n {
		return fmt.Errorf("stats: %d of %d is not a proportion", x, n)
	}
	return nil
}

// Wilson returns the Wilson score interval (no continuity correction) for
// x successes in n trials at two-sided confidence conf.
func Wilson(x, n int64, conf float64) (Interval, error) {
	if err := checkCount(x, n); err != nil {
		return Interval{}, err
	}
	zz, err := z(conf)
	if err != nil {
		return Interval{}, err
	}
	return wilson(float64(x), float64(n), zz), nil
}

func wilson(x, n, z float64) Interval {
	p := x / n
	z2 := z * z
	center := (2*n*p + z2) / (2 * (n + z2))
	half := z * math.Sqrt(z2+4*n*p*(1-p)) / (2 * (n + z2))
	return Interval{Lower: math.Max(0, center-half), Upper: math.Min(1, center+half)}
}

// Difference compares a treatment group (x1 of n1 converted) with a
// holdout group (x2 of n2).
type Difference struct {
	// Rate1 and Rate2 are x1/n1 and x2/n2.
	Rate1, Rate2 float64
	// Diff is Rate1 − Rate2, the absolute uplift.
	Diff float64
	// CI is Newcombe's hybrid score interval for Diff.
	CI Interval
	// RelativeUplift is Diff / Rate2, set when HasRelative (Rate2 > 0).
	RelativeUplift float64
	HasRelative    bool
	// PValue is the two-sided p-value of the pooled two-proportion z-test
	// (Pearson's χ² with one degree of freedom, no continuity correction);
	// 1 when the pooled rate is 0 or 1 (nothing to tell apart).
	PValue float64
}

// CompareProportions compares two independent proportions at two-sided
// confidence conf: Newcombe's hybrid score interval (method 10), built
// from the groups' Wilson intervals, and the pooled z-test.
func CompareProportions(x1, n1, x2, n2 int64, conf float64) (Difference, error) {
	if err := checkCount(x1, n1); err != nil {
		return Difference{}, err
	}
	if err := checkCount(x2, n2); err != nil {
		return Difference{}, err
	}
	zz, err := z(conf)
	if err != nil {
		return Difference{}, err
	}
	p1, p2 := float64(x1)/float64(n1), float64(x2)/float64(n2)
	w1, w2 := wilson(float64(x1), float64(n1), zz), wilson(float64(x2), float64(n2), zz)
	d := Difference{Rate1: p1, Rate2: p2, Diff: p1 - p2}
	d.CI = Interval{
		Lower: d.Diff - math.Sqrt(sq(p1-w1.Lower)+sq(w2.Upper-p2)),
		Upper: d.Diff + math.Sqrt(sq(w1.Upper-p1)+sq(p2-w2.Lower)),
	}
	if p2 > 0 {
		d.RelativeUplift, d.HasRelative = d.Diff/p2, true
	}
	d.PValue = pooledZTest(x1, n1, x2, n2)
	return d, nil
}

func sq(v float64) float64 { return v * v }

// pooledZTest is the two-sided p-value of the pooled two-proportion z-test.
func pooledZTest(x1, n1, x2, n2 int64) float64 {
	p := float64(x1+x2) / float64(n1+n2)
	se := math.Sqrt(p * (1 - p) * (1/float64(n1) + 1/float64(n2)))
	if se == 0 {
		return 1
	}
	zs := (float64(x1)/float64(n1) - float64(x2)/float64(n2)) / se
	return 2 * distuv.UnitNormal.Survival(math.Abs(zs))
}
