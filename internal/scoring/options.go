package scoring

import (
	"errors"
	"fmt"
	"github.com/retention-dev/retention-operator/internal/clock"
	"io"
	"math"
	"runtime"
	"time"

	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
)

// Clock tells the time. Scoring reads it for the default observation end
// and for stage durations; tests inject a fixed clock.
type Clock = clock.Clock

// RealClock is the wall clock.
type RealClock = clock.Real

// Model choices beyond btyd's transaction models.
const (
	// Auto fits every model on the calibration period and publishes the one
	// with the lowest holdout mean absolute error per customer, refitted on
	// the whole observation period.
	Auto btyd.ModelName = "Auto"
	// RFMOnly is Result.Selected when no transaction model could be fitted:
	// P(alive) then comes from the recency rank (see Score).
	RFMOnly btyd.ModelName = "RFM"
)

// Defaults.
const (
	// DefaultTimeUnit is a week, in days: the BTYD literature's unit.
	DefaultTimeUnit = 7.0
	// DefaultHorizonDays is 52 weeks.
	DefaultHorizonDays = 364.0
	// DefaultAtRiskThreshold is the P(alive) under which a repeat buyer is at risk.
	DefaultAtRiskThreshold = 0.5
	// DefaultRetentionPeriodDays is the period of the retention rate: a quarter.
	DefaultRetentionPeriodDays = 91
	// DefaultAutoHoldoutDays is the holdout of Model Auto when none is
	// configured: the last quarter (91 days) of the observation period.
	DefaultAutoHoldoutDays = 91
	// DefaultCELCostLimit bounds the cost of one custom score evaluation.
	DefaultCELCostLimit = 10000
)

// CustomScore is a named CEL expression evaluated for every scored
// customer (see compileCustomScores for the variables it sees).
type CustomScore struct {
	// Name is a CEL identifier; the score appears as Scores.Custom[Name].
	Name string
	// Expression must yield a number (int, uint or double).
	Expression string
}

// Options configure Score. The zero value scores with BG/NBD in weeks up to
// Clock.Now(), over a 52-week horizon without discounting.
type Options struct {
	// TimeUnit is the model time unit in days: 7 (weeks, the default) or 1 (days).
	TimeUnit float64

	// ObservationEnd ends the observed period: transactions on later days are
	// ignored, and customer age T and recency in days are measured to its
	// calendar date (in its own location). If zero, Clock.Now() in UTC.
	ObservationEnd time.Time
	// CalibrationEnd, when set, splits the observed period into a
	// calibration period (up to and including its date) and a holdout
	// period (after it, up to ObservationEnd). Every model is fitted on the
	// calibration period and its forecast of the holdout reported; the
	// published scores come from a refit on the whole observed period.
	// Cannot be set with HoldoutPeriod; must be before ObservationEnd.
	CalibrationEnd time.Time
	// HoldoutPeriod sets CalibrationEnd to ObservationEnd minus this many
	// whole days (rounded; at least one day).
	HoldoutPeriod time.Duration

	// Model is BGNBD (default), MBGNBD, ParetoNBD or Auto. Auto without a
	// holdout holds out the last DefaultAutoHoldoutDays days.
	Model btyd.ModelName

	// HorizonDays is the forecast horizon of expected purchases and value.
	// If zero, DefaultHorizonDays.
	HorizonDays float64
	// AnnualDiscountPercent discounts future value (monthly periods, as
	// lifetimes' customer_lifetime_value). Zero means no discounting.
	AnnualDiscountPercent float64
	// AtRiskThreshold is the P(alive) threshold of the population summary.
	// If zero, DefaultAtRiskThreshold. In (0, 1).
	AtRiskThreshold float64
	// RetentionPeriodDays is the period of the retention rate. If zero,
	// DefaultRetentionPeriodDays.
	RetentionPeriodDays int

	// CustomScores are compiled before any data is read; a score that does
	// not compile or does not yield a number fails Score with a
	// *CustomScoreError.
	CustomScores []CustomScore
	// CELCostLimit bounds one evaluation of a custom score (estimated at
	// compile time and enforced at run time). If zero, DefaultCELCostLimit.
	CELCostLimit uint64

	// MaxRejectedRatio, when positive, fails Score with a
	// *source.TooManyRejectedError when the reader's Report shows a larger
	// share of rejected rows (the reader usually enforces its own limit too).
	MaxRejectedRatio float64

	// Clock defaults to RealClock.
	Clock Clock
	// Progress, when set, receives a one-line progress display (rewritten
	// with carriage returns) while the source is read.
	Progress io.Writer
	// ProgressBytes, when set, reports bytes read so far and the total
	// (total <= 0 if unknown), so Progress can show a bar.
	ProgressBytes func() (done, total int64)

	// Workers is the number of aggregation shards and scoring goroutines.
	// If zero, min(2, GOMAXPROCS).
	Workers int
	// Fit tunes the maximum-likelihood fits (the zero value is right).
	Fit btyd.FitOptions
}

// ErrInvalidOptions reports Options that can never work.
var ErrInvalidOptions = errors.New("scoring: invalid options")

// plan is validated Options with the dates turned into day numbers.
type plan struct {
	o        Options
	unit     float64 // days per time unit
	end      int32   // observation end day (days since 1970-01-01)
	split    int32   // calibration end day; == end without a holdout
	holdout  bool
	endTime  time.Time
	calTime  time.Time
	horizon  float64 // in time units
	prevFrom int32   // retention: the period before last is (prevFrom, lastFrom]
	lastFrom int32   // the last period is (lastFrom, end]
	workers  int
	// discounting: n periods of periodUnits each, rate per period
	periods     int
	periodUnits float64
	periodRate  float64
}

// dayOf returns the calendar date of t, in t's location, as days since 1970-01-01.
func dayOf(t time.Time) int32 {
	y, m, d := t.Date()
	u := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix()
	return int32(floorDiv(u, 86400))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// dayTime returns midnight UTC of a day number.
func dayTime(d int32) time.Time { return time.Unix(int64(d)*86400, 0).UTC() }

func (o Options) compile() (*plan, error) {
	bad := func(format string, args ...any) (*plan, error) {
		return nil, fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, args...))
	}
	p := &plan{o: o}
	if p.o.Clock == nil {
		p.o.Clock = RealClock{}
	}
	p.unit = o.TimeUnit
	if p.unit == 0 {
		p.unit = DefaultTimeUnit
	}
	if !(p.unit > 0) || math.IsInf(p.unit, 0) {
		return bad("time unit %v days must be positive", o.TimeUnit)
	}
	switch o.Model {
	case "":
		p.o.Model = btyd.NameBGNBD
	case btyd.NameBGNBD, btyd.NameMBGNBD, btyd.NameParetoNBD, Auto:
	default:
		return bad("unknown model %q (want BGNBD, MBGNBD, ParetoNBD or Auto)", o.Model)
	}
	p.endTime = o.ObservationEnd
	if p.endTime.IsZero() {
		p.endTime = p.o.Clock.Now().UTC()
	}
	p.end = dayOf(p.endTime)
	switch {
	case !o.CalibrationEnd.IsZero() && o.HoldoutPeriod != 0:
		return bad("set either CalibrationEnd or HoldoutPeriod, not both")
	case !o.CalibrationEnd.IsZero():
		p.split = dayOf(o.CalibrationEnd)
		if p.split >= p.end {
			return bad("calibration end %s is not before the observation end %s",
				o.CalibrationEnd.Format(time.DateOnly), p.endTime.Format(time.DateOnly))
		}
		p.holdout = true
	case o.HoldoutPeriod != 0:
		days := math.Round(o.HoldoutPeriod.Hours() / 24)
		if !(days >= 1) || days > 1e6 {
			return bad("holdout period %v must be at least one day", o.HoldoutPeriod)
		}
		p.split = p.end - int32(days)
		p.holdout = true
	case p.o.Model == Auto:
		p.split = p.end - DefaultAutoHoldoutDays
		p.holdout = true
	default:
		p.split = p.end
	}
	if p.holdout {
		p.calTime = dayTime(p.split)
	}
	h := o.HorizonDays
	if h == 0 {
		h = DefaultHorizonDays
	}
	if !(h > 0) || math.IsInf(h, 0) {
		return bad("horizon %v days must be positive", o.HorizonDays)
	}
	p.horizon = h / p.unit
	if !(o.AnnualDiscountPercent >= 0 && o.AnnualDiscountPercent <= 100) {
		return bad("annual discount %v%% must be between 0 and 100", o.AnnualDiscountPercent)
	}
	// Monthly discounting periods, as lifetimes' customer_lifetime_value.
	p.periods = max(1, int(math.Round(h/(365.25/12))))
	p.periodUnits = p.horizon / float64(p.periods)
	p.periodRate = math.Pow(1+o.AnnualDiscountPercent/100, h/float64(p.periods)/365.25) - 1
	if p.o.AtRiskThreshold == 0 {
		p.o.AtRiskThreshold = DefaultAtRiskThreshold
	}
	if t := p.o.AtRiskThreshold; !(t > 0 && t < 1) {
		return bad("at-risk threshold %v must be in (0, 1)", t)
	}
	rp := o.RetentionPeriodDays
	if rp == 0 {
		rp = DefaultRetentionPeriodDays
	}
	if rp < 1 || rp > 1e6 {
		return bad("retention period %d days must be positive", o.RetentionPeriodDays)
	}
	p.lastFrom = p.end - int32(rp)
	p.prevFrom = p.end - 2*int32(rp)
	if p.o.CELCostLimit == 0 {
		p.o.CELCostLimit = DefaultCELCostLimit
	}
	if o.MaxRejectedRatio < 0 || math.IsNaN(o.MaxRejectedRatio) {
		return bad("max rejected ratio %v must not be negative", o.MaxRejectedRatio)
	}
	p.workers = o.Workers
	if p.workers <= 0 {
		p.workers = min(2, runtime.GOMAXPROCS(0))
	}
	p.workers = min(p.workers, 64)
	return p, nil
}
