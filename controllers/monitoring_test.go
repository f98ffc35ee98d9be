package controllers

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/test/promcheck"
)

// TestMonitoringAgainstRunningOperator: a real Prometheus scrapes the
// suite's running operator — its reconcilers' metrics beside
// controller-runtime's — once a source is scored, its segments evaluated
// and a run sent and measured with conversions, and evaluates every
// expression of the shipped dashboard and rules. Every dashboard query and
// recording rule must return data for this namespace and campaign; every
// alert expression must evaluate (an alert that is quiet returns nothing,
// so each metric it reads must have series instead); every rule must be
// healthy.
func TestMonitoringAgainstRunningOperator(t *testing.T) {
	ctx := context.Background()
	w := newCampaignWorld(t)
	w.campaign(t, "win-back", nil)
	// Prometheus scrapes from before the run, so the counters it charts as
	// rates move while it watches, as they do in a cluster.
	srv := httptest.NewServer(promhttp.HandlerFor(prometheus.Gatherers{suiteRegistry, crmetrics.Registry}, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"namespace": w.ns, "campaign": "win-back", "job": "retention-operator"}
	p := promcheck.Start(t, promcheck.Options{
		Targets:   []promcheck.Target{{Address: srv.Listener.Addr().String(), Job: vars["job"]}},
		RuleFiles: []string{filepath.Join(root, promcheck.RulesFile)},
	})
	// Ready is not scraping yet: wait for the campaign's series.
	if _, err := p.WaitForSeries(ctx, `retention_campaign_messages_total{namespace="`+w.ns+`"}`, time.Minute); err != nil {
		t.Fatal(err)
	}
	run := adHocRun(t, w.ns, "win-back", "observed")
	waitPhase(t, run, retentionv1.RunSending)
	sendAll(t, string(run.UID), 2)
	completeJob(t, jobOf(t, run))
	waitPhase(t, run, retentionv1.RunMeasuring)
	treatment, holdout := groupsOf(t, string(run.UID))
	w.buy(t, run.Status.ReferenceTime.UTC().Truncate(24*time.Hour), append(append([]string{}, treatment[:15]...), holdout[:3]...)...)
	eventually(t, waitFor, func() error {
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(run), run); err != nil {
			return err
		}
		if m := run.Status.Measurement; m == nil || m.Treatment.Converted != 15 {
			return fmt.Errorf("measurement %+v", m)
		}
		return nil
	})

	promcheck.CheckShipped(ctx, t, p, root, vars)
}
