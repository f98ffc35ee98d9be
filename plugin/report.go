package plugin

import (
	"context"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
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
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 2 || kindByName(pos[0]) == nil || kindByName(pos[0]).Kind != "Campaign" {
		return usageErrorf("usage: kubectl retention report campaign NAME [-o table|json|yaml]")
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
		return printObject(e.Stdout, *out, rep)
	}
	return printCampaignReport(e, rep)
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
