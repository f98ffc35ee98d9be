package scoring

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
)

// transactionModels is every transaction model, in the default fallback order.
var transactionModels = []btyd.ModelName{btyd.NameBGNBD, btyd.NameMBGNBD, btyd.NameParetoNBD}

// fallbackOrder is the order in which models are tried when first cannot
// be fitted: the closest relative first.
func fallbackOrder(first btyd.ModelName) []btyd.ModelName {
	switch first {
	case btyd.NameMBGNBD:
		return []btyd.ModelName{btyd.NameMBGNBD, btyd.NameBGNBD, btyd.NameParetoNBD}
	case btyd.NameParetoNBD:
		return []btyd.ModelName{btyd.NameParetoNBD, btyd.NameBGNBD, btyd.NameMBGNBD}
	}
	return []btyd.ModelName{btyd.NameBGNBD, btyd.NameMBGNBD, btyd.NameParetoNBD}
}

func fittedModel(name btyd.ModelName, period Period, m btyd.Model, fr btyd.FitResult, err error, customers float64) FittedModel {
	fm := FittedModel{Name: name, Period: period, Converged: fr.Converged, Iterations: fr.Iterations,
		Evaluations: fr.Evaluations, Customers: customers}
	if err != nil {
		fm.Err = err.Error()
		fm.Converged = false
		return fm
	}
	fm.Params = m.Params()
	fm.LogLikelihood = finite(fr.LogLikelihood)
	return fm
}

// finite maps NaN and ±Inf to 0: nothing in a Result is ever NaN.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

// holdoutUsable says whether calibration fits can be evaluated, and why not.
func (j *job) holdoutUsable() (bool, string) {
	switch {
	case !j.p.holdout:
		return false, ""
	case j.nsums > 0:
		return false, "pre-aggregated summaries carry no purchase dates"
	case len(j.m.calTriples) == 0:
		return false, "no customer bought before the calibration end"
	}
	return true, ""
}

// fit fits the transaction models and Gamma-Gamma and decides which model
// is published (see Score).
func (j *job) fit(ctx context.Context) error {
	res := j.res
	// The Gamma-Gamma input is built first and alone, and its fit then runs
	// beside the transaction models: building btyd's inputs is what
	// allocates most, and doing it one at a time keeps the peak heap lower.
	sd := j.spendData()
	runtime.GC()
	var wg sync.WaitGroup
	if sd != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j.fitSpend(ctx, sd)
		}()
	}
	defer wg.Wait()

	// The full-period input is built when first needed: with a holdout,
	// after the calibration input is released, so the two never coexist.
	var full *btyd.Data
	fullData := func() (*btyd.Data, error) {
		if full != nil {
			return full, nil
		}
		d, err := btyd.NewDataShared(j.m.triples)
		if err != nil {
			return nil, fmt.Errorf("scoring: %w", err)
		}
		full = d
		return d, nil
	}
	requested := j.p.o.Model
	order := fallbackOrder(requested)
	var fullFits map[btyd.ModelName]btyd.Model
	usable, why := j.holdoutUsable()
	switch {
	case usable:
		cal, err := btyd.NewDataShared(j.m.calTriples)
		if err != nil {
			return fmt.Errorf("scoring: calibration data: %w", err)
		}
		horizon := float64(j.p.end-j.p.split) / j.p.unit
		type ranked struct {
			name btyd.ModelName
			mae  float64
		}
		var ok []ranked
		var failed []btyd.ModelName
		for _, name := range transactionModels {
			m, fr, err := btyd.Fit(ctx, name, cal, j.p.o.Fit)
			if cerr := ctx.Err(); cerr != nil {
				return fmt.Errorf("scoring: fit cancelled: %w", cerr)
			}
			fm := fittedModel(name, Calibration, m, fr, err, cal.Customers())
			if err == nil {
				rep := j.holdoutReport(m, horizon)
				fm.Holdout = &rep
				ok = append(ok, ranked{name, rep.MAE})
			} else {
				failed = append(failed, name)
			}
			res.Models = append(res.Models, fm)
		}
		// The calibration input is done with: release it, and collect it
		// before the refit builds the full-period input.
		cal = nil
		j.m.calTriples, j.m.groups = nil, nil
		runtime.GC()
		if requested == Auto {
			slices.SortStableFunc(ok, func(a, b ranked) int {
				switch {
				case a.mae < b.mae:
					return -1
				case a.mae > b.mae:
					return 1
				}
				return 0
			})
			order = order[:0]
			var parts []string
			for _, r := range ok {
				order = append(order, r.name)
				parts = append(parts, fmt.Sprintf("%s %.4f", r.name, r.mae))
			}
			order = append(order, failed...)
			if len(ok) > 0 {
				res.Selection = fmt.Sprintf("lowest holdout MAE per customer over %s–%s (%s)",
					dayTime(j.p.split+1).Format("2006-01-02"), dayTime(j.p.end).Format("2006-01-02"), strings.Join(parts, ", "))
			} else {
				res.Selection = "no model could be fitted on the calibration period"
			}
		} else {
			res.Selection = "requested"
		}
	case requested == Auto:
		// No holdout to compare forecasts: compare the fits by
		// log-likelihood (the models have four parameters each).
		full, err := fullData()
		if err != nil {
			return err
		}
		fullFits = map[btyd.ModelName]btyd.Model{}
		lls := map[btyd.ModelName]float64{}
		order = order[:0]
		var failed []btyd.ModelName
		for _, name := range transactionModels {
			m, fr, err := btyd.Fit(ctx, name, full, j.p.o.Fit)
			if cerr := ctx.Err(); cerr != nil {
				return fmt.Errorf("scoring: fit cancelled: %w", cerr)
			}
			res.Models = append(res.Models, fittedModel(name, Observation, m, fr, err, full.Customers()))
			if err != nil {
				failed = append(failed, name)
				continue
			}
			fullFits[name] = m
			lls[name] = fr.LogLikelihood
			order = append(order, name)
		}
		slices.SortStableFunc(order, func(a, b btyd.ModelName) int {
			switch {
			case lls[a] > lls[b]:
				return -1
			case lls[a] < lls[b]:
				return 1
			}
			return 0
		})
		order = append(order, failed...)
		res.Selection = "highest log-likelihood (holdout not evaluated: " + why + ")"
	default:
		res.Selection = "requested"
		if why != "" {
			res.Selection += " (holdout not evaluated: " + why + ")"
		}
	}

	var failures []string
	for _, name := range order {
		m, done := fullFits[name]
		var err error
		if !done {
			if fullFits != nil {
				// Auto without holdout: a failed fit is not retried.
				failures = append(failures, fmt.Sprintf("%s: %s", name, res.Model(name, Observation).Err))
				continue
			}
			var fr btyd.FitResult
			full, ferr := fullData()
			if ferr != nil {
				return ferr
			}
			m, fr, err = btyd.Fit(ctx, name, full, j.p.o.Fit)
			if cerr := ctx.Err(); cerr != nil {
				return fmt.Errorf("scoring: fit cancelled: %w", cerr)
			}
			res.Models = append(res.Models, fittedModel(name, Observation, m, fr, err, full.Customers()))
		}
		if err != nil {
			failures = append(failures, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		j.model = m
		res.Selected = name
		break
	}
	if j.model == nil {
		res.Selected = RFMOnly
		res.Fallback = "no transaction model could be fitted (" + strings.Join(failures, "; ") +
			"): RFM scores only, P(alive) from the recency rank"
	} else if len(failures) > 0 {
		res.Fallback = fmt.Sprintf("%s; using %s", strings.Join(failures, "; "), res.Selected)
	}
	return nil
}

// holdoutReport evaluates m's forecast of the holdout purchases of every
// calibration customer, one accumulator per worker.
func (j *job) holdoutReport(m btyd.Model, horizon float64) btyd.HoldoutReport {
	groups := j.m.groups
	hs := make([]*btyd.Holdout, max(j.p.workers, 1))
	chunks(j.p.workers, len(groups), func(c, lo, hi int) {
		h, err := btyd.NewHoldout(newFactored(m, horizon), horizon)
		if err != nil {
			return
		}
		for _, g := range groups[lo:hi] {
			t := j.m.calTriples[g.cal]
			_ = h.AddN(t.X, t.TX, t.T, float64(g.actual), g.n)
		}
		hs[c] = h
	})
	var h *btyd.Holdout
	for _, x := range hs {
		switch {
		case x == nil:
		case h == nil:
			h = x
		default:
			h.Merge(x)
		}
	}
	if h == nil {
		return btyd.HoldoutReport{Horizon: horizon}
	}
	return h.Report()
}

// spendData builds the Gamma-Gamma input, or records why there is none
// (nil).
func (j *job) spendData() *btyd.SpendData {
	sp := &j.res.Spend
	st := &j.spendStats
	sp.Customers, sp.Excluded = int64(len(j.m.spends)), st.excluded
	observed := 0.0
	switch {
	case st.monN > 0:
		observed = st.monSum / float64(st.monN)
	case st.scored > 0:
		observed = st.firstSum / float64(st.scored)
	}
	observed = math.Max(finite(observed), 0)
	fail := func(why string) {
		sp.Fitted = false
		sp.Params = nil
		sp.Fallback = why + ": expected spend is the customer's mean repeat value, or the population mean"
		sp.MeanSpend = observed
	}
	sp.MeanSpend = observed
	sd, err := btyd.NewSpendData(j.m.spends)
	j.m.spends = nil
	if err != nil {
		fail(err.Error())
		return nil
	}
	return sd
}

// fitSpend fits Gamma-Gamma, or records why expected spend falls back to
// observed means.
func (j *job) fitSpend(ctx context.Context, sd *btyd.SpendData) {
	sp := &j.res.Spend
	fail := func(why string) {
		sp.Fitted = false
		sp.Params = nil
		sp.Fallback = why + ": expected spend is the customer's mean repeat value, or the population mean"
	}
	gg, fr, err := btyd.FitGammaGamma(ctx, sd, j.p.o.Fit)
	sp.Converged, sp.Iterations = fr.Converged, fr.Iterations
	if err != nil {
		fail(err.Error())
		return
	}
	mean := gg.MeanSpend()
	if !(mean > 0) || math.IsInf(mean, 0) {
		fail(fmt.Sprintf("Gamma-Gamma q = %.4g <= 1 has no mean spend", gg.Q))
		return
	}
	sp.Fitted = true
	sp.Params = gg.Params()
	sp.LogLikelihood = finite(fr.LogLikelihood)
	sp.MeanSpend = mean
	j.gg = gg
}
