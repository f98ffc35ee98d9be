package plugin

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/plot"
)

// CampaignReport is what `report campaign` shows: each run's experiment
// design and measurement, and the campaign's pooled measurement.
type CampaignReport struct {
	Campaign string      `json:"campaign"`
	Runs     []RunReport `json:"runs"`
	// Pooled is the campaign's measurement over its measured runs
	// (Mantel–Haenszel), nil before any.
	Pooled *retentionv1.Measurement `json:"pooled,omitempty"`
}

// RunReport is one run of a CampaignReport.
type RunReport struct {
	Name        string                        `json:"name"`
	Phase       retentionv1.RunPhase          `json:"phase"`
	Experiment  *retentionv1.ExperimentDesign `json:"experiment,omitempty"`
	Measurement *retentionv1.Measurement      `json:"measurement,omitempty"`
}

// report prints a campaign's runs as an experiment report: per run the
// groups' conversions, the uplift with its 95% interval and p-value, the
// minimum detectable effect and the sample-ratio check; then the pooled
// figures and the verdicts.
func (e *Env) report(ctx context.Context, args []string) error {
	f := e.newFlags("report")
	out := outputFlag(f, "table")
	var plotPath string
	f.StringVar(&plotPath, "plot", "", "also draw each run's uplift with its 95% interval, and the pooled one, to this PNG file")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 2 || kindByName(pos[0]) == nil || kindByName(pos[0]).Kind != "Campaign" {
		return usageErrorf("usage: kubectl retention report campaign NAME [-o table|json|yaml] [--plot FILE.png]")
	}
	if err := checkOutput(*out, "table", "json", "yaml"); err != nil {
		return err
	}
	conn, err := e.Connect(f.conn)
	if err != nil {
		return err
	}
	rep, err := campaignReport(ctx, conn.Client, conn.Namespace, pos[1])
	if err != nil {
		return err
	}
	if *out != "table" {
		err = printObject(e.Stdout, *out, rep)
	} else {
		err = printCampaignReport(e, rep)
	}
	if err != nil || plotPath == "" {
		return err
	}
	// After the report, so that a campaign with nothing to draw yet still
	// shows its table.
	if err := plotUplift(plotPath, rep); err != nil {
		return fmt.Errorf("drawing %s: %w", plotPath, err)
	}
	fmt.Fprintf(e.Stderr, "uplift plot written to %s\n", plotPath)
	return nil
}

// plotUplift draws each measured run's uplift (percentage points) as a
// point with its 95% interval, in schedule order, then the pooled one, with
// the zero line: a person sees at a glance which runs cleared zero.
func plotUplift(path string, rep *CampaignReport) error {
	type bar struct {
		label          string
		mid, low, high float64
		pooled         bool
	}
	var bars []bar
	add := func(label string, m *retentionv1.Measurement, pooled bool) error {
		if m == nil || m.Uplift == nil {
			return nil
		}
		var vals [3]float64
		for i, s := range []string{m.Uplift.PercentagePoints, m.Uplift.Lower, m.Uplift.Upper} {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return fmt.Errorf("%s: uplift %q: %w", label, s, err)
			}
			vals[i] = v
		}
		bars = append(bars, bar{label, vals[0], vals[1], vals[2], pooled})
		return nil
	}
	for _, r := range rep.Runs {
		if err := add(r.Name, r.Measurement, false); err != nil {
			return err
		}
	}
	if err := add("pooled", rep.Pooled, true); err != nil {
		return err
	}
	if len(bars) == 0 {
		return errors.New("no run of the campaign has a measured uplift yet")
	}
	lo, hi := 0.0, 0.0
	for _, b := range bars {
		lo, hi = math.Min(lo, b.low), math.Max(hi, b.high)
	}
	step := plot.NiceStep((hi - lo) / 6)
	lo, hi = math.Floor(lo/step)*step, math.Ceil(hi/step)*step
	if hi-lo < step {
		hi = lo + step
	}
	// Run names read upwards under the axis: the longest sets the margin.
	labels := make([]string, len(bars))
	longest := 0
	for i, b := range bars {
		labels[i] = b.label
		if len(labels[i]) > 28 {
			labels[i] = labels[i][:27] + "~"
		}
		longest = max(longest, plot.TextWidth(labels[i], 2))
	}
	const W, left, right, top, ph = 1000, 100, 40, 70, 400
	H := top + ph + 30 + longest
	c := plot.New(W, H)
	pw := W - left - right
	px := func(i int) int { return left + int(float64(pw)*(float64(i)+0.5)/float64(len(bars))) }
	py := func(v float64) int { return top + ph - int(math.Round(float64(ph)*(v-lo)/(hi-lo))) }
	for v := lo; v <= hi+step/2; v += step {
		y := py(v)
		c.Line(left, y, left+pw, y, 1, 0, plot.Grey)
		l := plot.TrimFloat(v)
		c.Text(left-10-plot.TextWidth(l, 2), y-7, 2, l, plot.DarkGrey)
	}
	c.Line(left, py(0), left+pw, py(0), 2, 8, plot.DarkGrey)
	c.Line(left, top, left, top+ph, 2, 0, plot.Black)
	for i, b := range bars {
		ink := plot.Blue
		if b.pooled {
			ink = plot.Red
		}
		x := px(i)
		c.Line(x, py(b.low), x, py(b.high), 3, 0, ink)
		c.Line(x-8, py(b.low), x+8, py(b.low), 3, 0, ink)
		c.Line(x-8, py(b.high), x+8, py(b.high), 3, 0, ink)
		c.Fill(x-6, py(b.mid)-6, x+7, py(b.mid)+7, ink)
		c.TextUp(x-7, top+ph+15+plot.TextWidth(labels[i], 2), 2, labels[i], plot.Black)
	}
	yl := "uplift (percentage points)"
	c.TextUp(20, top+ph/2+plot.TextWidth(yl, 2)/2, 2, yl, plot.Black)
	c.Text(left, 25, 2, "campaign "+rep.Campaign+": uplift by run, 95% interval (red: pooled)", plot.Black)
	return c.SavePNG(path)
}

func campaignReport(ctx context.Context, c client.Client, ns, name string) (*CampaignReport, error) {
	var camp retentionv1.Campaign
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &camp); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("Campaign %q not found in namespace %q", name, ns)
		}
		return nil, err
	}
	var runs retentionv1.CampaignRunList
	if err := c.List(ctx, &runs, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	rep := &CampaignReport{Campaign: name, Pooled: camp.Status.Measurement, Runs: []RunReport{}}
	items := runs.Items
	sort.Slice(items, func(i, j int) bool {
		if a, b := items[i].Spec.ScheduledTime, items[j].Spec.ScheduledTime; !a.Equal(&b) {
			return a.Before(&b)
		}
		return items[i].Name < items[j].Name
	})
	for _, r := range items {
		if r.Spec.CampaignRef.Name != name {
			continue
		}
		phase := r.Status.Phase
		if phase == "" {
			phase = retentionv1.RunPending
		}
		rep.Runs = append(rep.Runs, RunReport{Name: r.Name, Phase: phase, Experiment: r.Status.Experiment, Measurement: r.Status.Measurement})
	}
	return rep, nil
}

func printCampaignReport(e *Env, rep *CampaignReport) error {
	rows := [][]string{{"RUN", "PHASE", "TREATMENT", "HOLDOUT", "UPLIFT (95% CI)", "P", "MDE", "SRM P", "FINAL"}}
	for _, r := range rep.Runs {
		mde, srm := "<none>", "<none>"
		if x := r.Experiment; x != nil {
			if x.MinimumDetectableEffect != "" {
				mde = x.MinimumDetectableEffect + "pp"
			}
			srm = orNone(x.SampleRatioPValue)
		}
		rows = append(rows, append(append([]string{r.Name, string(r.Phase)}, measurementColumns(r.Measurement)...), mde, srm, finalColumn(r.Measurement)))
	}
	if rep.Pooled != nil {
		rows = append(rows, append(append([]string{fmt.Sprintf("pooled (%d runs)", rep.Pooled.Runs), ""}, measurementColumns(rep.Pooled)...), "", "", finalColumn(rep.Pooled)))
	}
	if err := printTable(e.Stdout, rows); err != nil {
		return err
	}
	if len(rep.Runs) == 0 {
		fmt.Fprintf(e.Stdout, "\nCampaign %s has no runs yet.\n", rep.Campaign)
		return nil
	}
	fmt.Fprintln(e.Stdout)
	for _, r := range rep.Runs {
		if m := r.Measurement; m != nil && m.Verdict != "" {
			fmt.Fprintf(e.Stdout, "%s: %s\n", r.Name, m.Verdict)
		}
	}
	if m := rep.Pooled; m != nil && m.Verdict != "" {
		fmt.Fprintf(e.Stdout, "campaign %s: %s\n", rep.Campaign, m.Verdict)
	}
	return nil
}

// measurementColumns are TREATMENT, HOLDOUT, UPLIFT and P of a measurement.
func measurementColumns(m *retentionv1.Measurement) []string {
	if m == nil {
		return []string{"<none>", "<none>", "<none>", "<none>"}
	}
	group := func(g retentionv1.GroupConversion) string {
		s := fmt.Sprintf("%d/%d", g.Converted, g.Customers)
		if g.RatePercent != "" {
			s += " (" + g.RatePercent + "%)"
		}
		return s
	}
	uplift, p := "<none>", "<none>"
	if u := m.Uplift; u != nil {
		uplift = fmt.Sprintf("%spp [%s, %s]", u.PercentagePoints, u.Lower, u.Upper)
		p = orNone(u.PValue)
	}
	return []string{group(m.Treatment), group(m.Holdout), uplift, p}
}

func finalColumn(m *retentionv1.Measurement) string {
	if m == nil {
		return "<none>"
	}
	return strings.ToLower(fmt.Sprint(m.Final))
}
