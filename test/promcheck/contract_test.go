package promcheck

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/retention-dev/retention-operator/internal/metrics"
)

// TestMetricsContract checks the dashboard, the rules and docs/metrics.md
// against the collectors internal/metrics registers: every retention_*
// metric a query names is one of them (a histogram's _bucket, _sum and
// _count included), every recorded series a dashboard query names is
// recorded by the rule file, and every collector is documented.
func TestMetricsContract(t *testing.T) {
	root := repoRoot(t)
	names := operatorMetricNames(t)
	exprs, err := Expressions(root, dashboardVars)
	if err != nil {
		t.Fatal(err)
	}
	rf, err := readRules(filepath.Join(root, RulesFile))
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}
	known := func(n string) bool {
		for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(n, suffix); ok && names[base] {
				return true
			}
		}
		return false
	}
	for _, e := range exprs {
		for _, tok := range identifier.FindAllString(quoted.ReplaceAllString(e.Expr, `""`), -1) {
			switch {
			case recordName.MatchString(tok) && !recorded[tok]:
				t.Errorf("%s: %s is recorded by no rule of %s", e, tok, RulesFile)
			case strings.HasPrefix(tok, "retention_") && !known(tok):
				t.Errorf("%s: %s is not a metric of internal/metrics", e, tok)
			}
		}
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs/metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	for n := range names {
		if !strings.Contains(string(doc), "`"+n+"`") {
			t.Errorf("docs/metrics.md does not document %s", n)
		}
	}
	for r := range recorded {
		if !strings.Contains(string(doc), "`"+r+"`") {
			t.Errorf("docs/metrics.md does not document the recording rule %s", r)
		}
	}
}

// identifier matches PromQL identifiers: metric names (recorded ones with
// colons), label names, function names and keywords.
var identifier = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)

// quoted matches PromQL string literals, whose contents are no identifiers.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)

// operatorMetricNames returns the names of the metrics internal/metrics
// registers, read from their descriptors.
func operatorMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	c := &describer{names: map[string]bool{}}
	if _, err := metrics.New(c); err != nil {
		t.Fatal(err)
	}
	if len(c.names) == 0 {
		t.Fatal("internal/metrics registered no collector")
	}
	return c.names
}

// describer is a prometheus.Registerer that remembers the names of the
// metrics its collectors describe.
type describer struct{ names map[string]bool }

var fqName = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)

func (d *describer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	for desc := range ch {
		if m := fqName.FindStringSubmatch(desc.String()); m != nil {
			d.names[m[1]] = true
		}
	}
	return nil
}

func (d *describer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = d.Register(c)
	}
}

func (d *describer) Unregister(prometheus.Collector) bool { return true }

// TestMonitoringAgainstPrometheus serves the operator's real collectors
// (internal/metrics), fed as a running operator feeds them, beside
// controller-runtime's reconcile and workqueue metrics and the process and
// Go collectors; a real Prometheus scrapes them and evaluates the rule
// file. Every dashboard query and every recording rule must return data,
// every alert expression must evaluate, and every rule must be healthy.
func TestMonitoringAgainstPrometheus(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{m: m, op: newOperatorMetrics(reg)}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	w.tick(0)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for i := 1; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
				w.tick(i)
			}
		}
	}()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)

	p := Start(t, Options{
		Targets:   []Target{{Address: srv.Listener.Addr().String(), Job: dashboardVars["job"]}},
		RuleFiles: []string{filepath.Join(root, RulesFile)},
	})
	qctx, qcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer qcancel()
	exprs, err := Expressions(root, dashboardVars)
	if err != nil {
		t.Fatal(err)
	}
	// Rates need two scrapes, recorded series a rule evaluation after them.
	for _, e := range exprs {
		if strings.HasPrefix(e.Where, "record ") {
			if _, err := p.WaitForSeries(qctx, strings.TrimPrefix(e.Where, "record "), 30*time.Second); err != nil {
				t.Fatalf("%s: %v", e, err)
			}
		}
	}
	for _, e := range exprs {
		n, err := p.Query(qctx, e.Expr)
		switch {
		case err != nil:
			t.Errorf("%s: %v", e, err)
		case n == 0 && !strings.HasPrefix(e.Where, "alert "):
			t.Errorf("%s: no data for %s", e, e.Expr)
		}
	}
	rules, err := p.Rules(qctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) == 0 {
		t.Fatal("Prometheus loaded no rules")
	}
	for _, r := range rules {
		if r.Health == "err" {
			t.Errorf("rule %s (group %s): %s", r.Name, r.Group, r.LastError)
		}
	}
}

// world feeds the collectors what a running operator would: two sources,
// two segments, two campaigns and a channel in namespace shop, the five
// controllers, with counters that grow on every tick.
type world struct {
	m  *metrics.Metrics
	op *operatorMetrics
}

const shop = "shop"

func (w *world) tick(i int) {
	m, n := w.m, float64(i)
	now := float64(time.Now().Unix())
	for _, s := range []string{"orders", "events"} {
		m.SourceCustomers.WithLabelValues(shop, s).Set(1000 + n)
		m.SourceTransactions.WithLabelValues(shop, s).Set(5000 + 10*n)
		m.SourceRejectedRows.WithLabelValues(shop, s).Set(3)
		m.SourceLastSuccess.WithLabelValues(shop, s).Set(now)
		m.SourceScoringInterval.WithLabelValues(shop, s).Set(3600)
		m.SourceScoringDuration.WithLabelValues(shop, s).Observe(0.5 + n/100)
		m.SourceScoringsTotal.WithLabelValues(shop, s, "success").Inc()
		m.SourceScoringsTotal.WithLabelValues(shop, s, "failure").Add(float64(i % 2))
		for j, band := range metrics.RiskBands {
			m.SourceCustomersByRisk.WithLabelValues(shop, s, band).Set(float64(600 - 200*j))
		}
		m.SourceRetentionRate.WithLabelValues(shop, s).Set(0.8)
		m.SourceExpectedValue.WithLabelValues(shop, s).Set(12345)
	}
	for _, s := range []string{"at-risk", "vip"} {
		m.SegmentSize.WithLabelValues(shop, s).Set(200 + n)
		m.SegmentEntriesTotal.WithLabelValues(shop, s).Add(2)
		m.SegmentExitsTotal.WithLabelValues(shop, s).Add(1)
		m.SegmentEvaluationTotal.WithLabelValues(shop, s, "success").Inc()
		m.SegmentEvaluationTotal.WithLabelValues(shop, s, "failure").Add(0)
	}
	k := int64(i)
	for _, c := range []string{"winback", "onboarding"} {
		m.CampaignTotals.Set(shop, c, metrics.CampaignCounts{
			Audience: map[string]int64{
				metrics.OutcomeTreatment: 90 * k, metrics.OutcomeHeldOut: 10 * k, metrics.OutcomeUnreachable: k,
				metrics.OutcomeOptedOut: k, metrics.OutcomeSuppressed: k, metrics.OutcomeCapped: k, metrics.OutcomeOverMax: 0,
			},
			Messages:    map[string]int64{"sent": 80 * k, "failed": 8 * k, "skipped": 2 * k},
			Conversions: map[string]int64{metrics.GroupTreatment: 9 * k, metrics.GroupHoldout: k / 2},
		})
		m.CampaignMessagesQueued.WithLabelValues(shop, c, "pending").Set(50)
		m.CampaignMessagesQueued.WithLabelValues(shop, c, "in_flight").Set(10)
		for _, phase := range []string{"Pending", "Materializing", "Sending", "Measuring", "Succeeded", "Failed", "Cancelled"} {
			m.CampaignRuns.WithLabelValues(shop, c, phase).Set(1)
		}
		m.CampaignRunsTotal.WithLabelValues(shop, c, "succeeded").Inc()
		m.CampaignRunsTotal.WithLabelValues(shop, c, "failed").Add(0)
		m.CampaignRunsTotal.WithLabelValues(shop, c, "cancelled").Add(0)
		m.CampaignConversionRatio.WithLabelValues(shop, c, metrics.GroupTreatment).Set(0.1)
		m.CampaignConversionRatio.WithLabelValues(shop, c, metrics.GroupHoldout).Set(0.05)
		m.CampaignUplift.WithLabelValues(shop, c).Set(0.05)
		m.CampaignUpliftLower.WithLabelValues(shop, c).Set(0.02)
		m.CampaignUpliftUpper.WithLabelValues(shop, c).Set(0.08)
		m.CampaignUpliftPValue.WithLabelValues(shop, c).Set(0.003)
		m.CampaignRevenuePerCust.WithLabelValues(shop, c, metrics.GroupTreatment).Set(12.5)
		m.CampaignRevenuePerCust.WithLabelValues(shop, c, metrics.GroupHoldout).Set(11)
		m.CampaignMDE.WithLabelValues(shop, c).Set(0.01)
		m.CampaignSampleRatioP.WithLabelValues(shop, c).Set(0.4)
	}
	m.ChannelOptOutsTotal.WithLabelValues(shop, "email").Inc()
	w.op.tick(i)
}

// operatorMetrics stand in for controller-runtime's metrics (its
// pkg/internal/controller/metrics and pkg/internal/metrics, names and
// labels as of v0.25), which only a running controller feeds.
type operatorMetrics struct {
	reconciles     *prometheus.CounterVec
	errors         *prometheus.CounterVec
	reconcileTime  *prometheus.HistogramVec
	depth          *prometheus.GaugeVec
	queueDurations *prometheus.HistogramVec
}

var controllers = []string{"customersource", "segment", "campaign", "campaignrun", "channel"}

func newOperatorMetrics(reg prometheus.Registerer) *operatorMetrics {
	o := &operatorMetrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "controller_runtime_reconcile_total",
			Help: "Total number of reconciliations per controller"}, []string{"controller", "result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "controller_runtime_reconcile_errors_total",
			Help: "Total number of reconciliation errors per controller"}, []string{"controller"}),
		reconcileTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "controller_runtime_reconcile_time_seconds",
			Help: "Length of time per reconciliation per controller"}, []string{"controller"}),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "workqueue_depth",
			Help: "Current depth of workqueue by workqueue and priority"}, []string{"name", "controller", "priority"}),
		queueDurations: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "workqueue_queue_duration_seconds",
			Help: "How long in seconds an item stays in workqueue before being requested", Buckets: prometheus.ExponentialBuckets(10e-9, 10, 12)},
			[]string{"name", "controller"}),
	}
	reg.MustRegister(o.reconciles, o.errors, o.reconcileTime, o.depth, o.queueDurations)
	return o
}

func (o *operatorMetrics) tick(i int) {
	for _, c := range controllers {
		o.reconciles.WithLabelValues(c, "success").Add(10)
		o.reconciles.WithLabelValues(c, "error").Add(float64(i % 2))
		o.reconciles.WithLabelValues(c, "requeue").Add(0)
		o.reconciles.WithLabelValues(c, "requeue_after").Add(1)
		o.errors.WithLabelValues(c).Add(float64(i % 2))
		o.reconcileTime.WithLabelValues(c).Observe(0.02)
		o.depth.WithLabelValues(c, c, "").Set(float64(i % 3))
		o.queueDurations.WithLabelValues(c, c).Observe(0.001)
	}
}
