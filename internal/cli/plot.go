package cli

import (
	"errors"
	"fmt"
	"image/color"
	"math"

	"github.com/retention-dev/retention-operator/internal/plot"
	"github.com/retention-dev/retention-operator/internal/scoring"
	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
)

// The holdout plot: mean holdout purchases by calibration repeat purchases
// 0..7+, actual against each model's prediction, as lines with markers.

var modelInks = map[btyd.ModelName]color.RGBA{
	btyd.NameBGNBD:     plot.Blue,
	btyd.NameMBGNBD:    plot.Green,
	btyd.NameParetoNBD: plot.Red,
}

// writePlot draws the holdout table of every model that has one.
func writePlot(path string, res *scoring.Result) error {
	var ms []scoring.FittedModel
	for _, m := range res.Models {
		if m.Holdout != nil {
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		return errors.New("no holdout report to plot (no model could be fitted on the calibration period)")
	}
	const W, H = 1060, 600
	const left, right, top, bottom = 90, 350, 70, 80
	c := plot.New(W, H)
	ymax := 0.0
	for _, m := range ms {
		for _, b := range m.Holdout.Buckets {
			ymax = math.Max(ymax, math.Max(b.MeanActual, b.MeanPredicted))
		}
	}
	step := plot.NiceStep(ymax / 5)
	ytop := math.Max(step, math.Ceil(ymax*1.05/step)*step)
	pw, ph := W-left-right, H-top-bottom
	px := func(b int) int { return left + int(float64(pw)*(float64(b)+0.5)/btyd.HoldoutBuckets) }
	py := func(v float64) int { return top + ph - int(math.Round(float64(ph)*v/ytop)) }
	// Grid, ticks and labels.
	for v := 0.0; v <= ytop+step/2; v += step {
		y := py(v)
		c.Line(left, y, left+pw, y, 1, 0, plot.Grey)
		l := plot.TrimFloat(v)
		c.Text(left-10-plot.TextWidth(l, 2), y-7, 2, l, plot.DarkGrey)
	}
	for b := 0; b < btyd.HoldoutBuckets; b++ {
		l := fmt.Sprint(b)
		if b == btyd.HoldoutBuckets-1 {
			l += "+"
		}
		c.Text(px(b)-plot.TextWidth(l, 2)/2, top+ph+10, 2, l, plot.DarkGrey)
	}
	c.Line(left, top, left, top+ph, 2, 0, plot.Black)
	c.Line(left, top+ph, left+pw, top+ph, 2, 0, plot.Black)
	xl := "repeat purchases in the calibration period (x)"
	c.Text(left+pw/2-plot.TextWidth(xl, 2)/2, top+ph+40, 2, xl, plot.Black)
	yl := "mean purchases in the holdout"
	c.TextUp(20, top+ph/2+plot.TextWidth(yl, 2)/2, 2, yl, plot.Black)
	title := fmt.Sprintf("holdout %s to %s: actual vs predicted", res.CalibrationEnd.AddDate(0, 0, 1).Format("2006-01-02"),
		res.ObservationEnd.Format("2006-01-02"))
	c.Text(left, 25, 2, title, plot.Black)
	// Series: actual (plot.Black, solid), each model (coloured, dashed).
	series := func(vals func(b int) float64, ink color.RGBA, dash int) {
		for b := 0; b < btyd.HoldoutBuckets; b++ {
			x, y := px(b), py(vals(b))
			if b > 0 {
				c.Line(px(b-1), py(vals(b-1)), x, y, 3, dash, ink)
			}
			c.Fill(x-5, y-5, x+5, y+5, ink)
		}
	}
	ly := top + 10
	legend := func(name string, ink color.RGBA, dash int) {
		x := left + pw + 20
		c.Line(x, ly+7, x+40, ly+7, 3, dash, ink)
		c.Fill(x+15, ly+2, x+25, ly+12, ink)
		c.Text(x+50, ly, 2, name, plot.Black)
		ly += 30
	}
	for _, m := range ms {
		h := m.Holdout
		ink := modelInks[m.Name]
		series(func(b int) float64 { return h.Buckets[b].MeanPredicted }, ink, 8)
		legend(fmt.Sprintf("%s (MAE %.3f)", m.Name, h.MAE), ink, 8)
	}
	act := ms[0].Holdout
	series(func(b int) float64 { return act.Buckets[b].MeanActual }, plot.Black, 0)
	legend("actual", plot.Black, 0)
	return c.SavePNG(path)
}
