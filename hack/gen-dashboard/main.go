// Command gen-dashboard writes the Grafana dashboard of the retention
// operator, config/grafana/retention-operator.json, from the panel table
// below: one place to read every panel's query, and a layout, panel ids and
// JSON that stay the same from run to run. `make monitoring` runs it;
// `make verify` fails when the checked-in JSON differs from its output;
// test/promcheck lints the JSON and runs every query against a real
// Prometheus.
//
// Usage: go run ./hack/gen-dashboard [-o FILE]   (stdout without -o)
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
)

// UID is the dashboard's stable uid: links and provisioning rely on it.
const UID = "retention-operator"

// Label filters of the rows, with Grafana variables. The campaign variable
// is multi-valued with an All of ".*", so it is matched as a regex.
const (
	ns   = `namespace="$namespace"`
	camp = `namespace="$namespace", campaign=~"$campaign"`
	job  = `job="$job"`
)

func main() {
	out := flag.String("o", "", "write the dashboard to this file instead of stdout")
	flag.Parse()
	b, err := render()
	if err == nil && *out != "" {
		err = os.WriteFile(*out, b, 0o644)
	} else if err == nil {
		_, err = os.Stdout.Write(b)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen-dashboard:", err)
		os.Exit(1)
	}
}

// rows are the dashboard's content, top to bottom.
var rows = []row{
	{"Sources", []spec{
		{Title: "Time since last successful scoring", Unit: "s", Min: zero,
			Description: "Freshness of each customer source: seconds since its last successful scoring, beside three refresh intervals, where RetentionSourceStale starts.",
			Targets: []query{
				{`time() - max by (source) (retention_source_last_success_timestamp_seconds{` + ns + `})`, "{{source}}"},
				{`3 * max by (source) (retention_source_scoring_interval_seconds{` + ns + `})`, "{{source}} stale after"},
			},
			Dashed: "/ stale after$/"},
		{Title: "Customers", Unit: "short", Min: zero,
			Description: "Customers in each source's current scored snapshot.",
			Targets:     []query{{`max by (source) (retention_source_customers{` + ns + `})`, "{{source}}"}}},
		{Title: "Customers by churn-risk band", Unit: "short", Min: zero, Stack: true,
			Description: "Customers of the current snapshot by churn-risk band: low (P(alive) ≥ 0.7), medium, high (P(alive) < 0.3).",
			Targets:     []query{{`max by (source, band) (retention_source_customers_by_risk{` + ns + `})`, "{{source}} {{band}}"}}},
		{Title: "High churn-risk share", Unit: "percentunit", Min: zero, Max: one,
			Description: "Share of each source's customers in the high churn-risk band (recording rule). RetentionSourceHighRiskShareJump fires when it moves by more than 10 points in a day.",
			Targets:     []query{{`namespace_source:retention_source_customers_high_risk:ratio{` + ns + `}`, "{{source}}"}}},
		{Title: "Retention rate", Unit: "percentunit", Min: zero, Max: one,
			Description: "Share of the customers who bought in the period before last that bought again in the last period.",
			Targets:     []query{{`max by (source) (retention_source_retention_rate_ratio{` + ns + `})`, "{{source}}"}}},
		{Title: "Expected customer value", Unit: "short", Min: zero,
			Description: "Total expected customer value over the scoring horizon, in the source's currency.",
			Targets:     []query{{`max by (source) (retention_source_expected_value{` + ns + `})`, "{{source}}"}}},
		{Title: "Scoring duration p50 / p95", Unit: "s", Min: zero, MinInterval: "1h",
			Description: "Duration of a scoring, read to commit, from the histogram. Sources are scored about hourly, so the window is at least an hour.",
			Targets: []query{
				{`histogram_quantile(0.5, sum by (source, le) (rate(retention_source_scoring_duration_seconds_bucket{` + ns + `}[$__rate_interval])))`, "{{source}} p50"},
				{`histogram_quantile(0.95, sum by (source, le) (rate(retention_source_scoring_duration_seconds_bucket{` + ns + `}[$__rate_interval])))`, "{{source}} p95"},
			}},
		{Title: "Scorings per hour by result", Unit: "short", Min: zero, MinInterval: "1h",
			Description: "Scorings that succeeded or failed, per hour. Failures with no success make RetentionSourceScoringFailing fire.",
			Targets:     []query{{`3600 * sum by (source, result) (rate(retention_source_scorings_total{` + ns + `}[$__rate_interval]))`, "{{source}} {{result}}"}}},
		{Title: "Rejected rows", Unit: "short", Min: zero,
			Description: "Rows rejected as unreadable in the last read of each source, and transactions read for its current snapshot.",
			Targets: []query{
				{`max by (source) (retention_source_rejected_rows{` + ns + `})`, "{{source}} rejected"},
				{`max by (source) (retention_source_transactions{` + ns + `})`, "{{source}} transactions"},
			}},
	}},
	{"Segments", []spec{
		{Title: "Segment size", Unit: "short", Min: zero,
			Description: "Members of each segment.",
			Targets:     []query{{`max by (segment) (retention_segment_size{` + ns + `})`, "{{segment}}"}}},
		{Title: "Entries and exits per hour", Unit: "short", Min: zero, MinInterval: "1h",
			Description: "Customers who entered or left each segment, per hour. Segments are evaluated on each new snapshot of their source.",
			Targets: []query{
				{`3600 * sum by (segment) (rate(retention_segment_entries_total{` + ns + `}[$__rate_interval]))`, "{{segment}} entered"},
				{`3600 * sum by (segment) (rate(retention_segment_exits_total{` + ns + `}[$__rate_interval]))`, "{{segment}} exited"},
			}},
		{Title: "Evaluations per hour by result", Unit: "short", Min: zero, MinInterval: "1h",
			Description: "Segment evaluations that succeeded or failed, per hour.",
			Targets:     []query{{`3600 * sum by (segment, result) (rate(retention_segment_evaluations_total{` + ns + `}[$__rate_interval]))`, "{{segment}} {{result}}"}}},
	}},
	{"Campaigns", []spec{
		{Title: "Messages per second by outcome", Unit: "short", Min: zero, Stack: true,
			Description: "Treatment messages by final outcome: sent, failed, or skipped (the customer opted out after the run was materialized).",
			Targets:     []query{{`sum by (campaign, outcome) (rate(retention_campaign_messages_total{` + camp + `}[$__rate_interval]))`, "{{campaign}} {{outcome}}"}}},
		{Title: "Delivery failure ratio (1h)", Unit: "percentunit", Min: zero, Max: one,
			Steps:       []step{{"green", nil}, {"orange", ptr(0.1)}, {"red", ptr(0.5)}},
			Description: "Share of the delivery attempts (sent or failed) that failed over the last hour (recording rule). RetentionCampaignDeliveryFailuresHigh: warning above 10%, critical above 50%.",
			Targets:     []query{{`namespace_campaign:retention_campaign_message_failures_per_attempts:ratio_rate1h{` + camp + `}`, "{{campaign}}"}}},
		{Title: "Messages queued", Unit: "short", Min: zero, Stack: true,
			Description: "Treatment messages not yet recorded: pending (waiting to be claimed, deferred ones included) or in flight (claimed by an outreach runner).",
			Targets:     []query{{`sum by (campaign, state) (retention_campaign_messages_queued{` + camp + `})`, "{{campaign}} {{state}}"}}},
		{Title: "Audience by outcome (time range)", Type: "bargauge", Unit: "short", Min: zero,
			Description: "Customers of the runs materialized in the dashboard's time range: treatment, held out, or why they were excluded.",
			Targets:     []query{{`sum by (outcome) (increase(retention_campaign_audience_total{` + camp + `}[$__range]))`, "{{outcome}}"}}},
		{Title: "Conversions by group (time range)", Type: "bargauge", Unit: "short", Min: zero,
			Description: "Converted customers counted by the measurements made in the dashboard's time range, by group (intent to treat).",
			Targets:     []query{{`sum by (group) (increase(retention_campaign_conversions_total{` + camp + `}[$__range]))`, "{{group}}"}}},
		{Title: "Runs by phase", Unit: "short", Min: zero, Stack: true,
			Description: "CampaignRun objects by phase.",
			Targets:     []query{{`sum by (phase) (retention_campaign_runs{` + camp + `})`, "{{phase}}"}}},
		{Title: "Conversion rate by group", Unit: "percentunit", Min: zero,
			Description: "Conversion rate of each campaign's measured runs by group, pooled over its runs: converted / assigned.",
			Targets:     []query{{`max by (campaign, group) (retention_campaign_conversion_ratio{` + camp + `})`, "{{campaign}} {{group}}"}}},
		{Title: "Uplift with 95% interval", Unit: "percentunit",
			Description: "Absolute uplift, treatment minus holdout conversion rate (Mantel–Haenszel, pooled over the measured runs), with its 95% confidence interval. Absent while there are too few customers to say.",
			Targets: []query{
				{`max by (campaign) (retention_campaign_uplift_ratio{` + camp + `})`, "{{campaign}} uplift"},
				{`max by (campaign) (retention_campaign_uplift_lower_ratio{` + camp + `})`, "{{campaign}} lower"},
				{`max by (campaign) (retention_campaign_uplift_upper_ratio{` + camp + `})`, "{{campaign}} upper"},
			},
			Dashed: "/ (lower|upper)$/"},
		{Title: "Uplift p-value", Unit: "none", LogScale: true,
			Steps:       []step{{"green", nil}, {"orange", ptr(0.05)}},
			Description: "Two-sided p-value of the Cochran–Mantel–Haenszel test of no uplift; below 0.05 the uplift is significant.",
			Targets:     []query{{`max by (campaign) (retention_campaign_uplift_p_value{` + camp + `})`, "{{campaign}}"}}},
		{Title: "Revenue per customer by group", Unit: "short",
			Description: "Revenue since the baseline per assigned customer, by group, pooled over the measured runs, in the source's currency.",
			Targets:     []query{{`max by (campaign, group) (retention_campaign_revenue_per_customer{` + camp + `})`, "{{campaign}} {{group}}"}}},
		{Title: "Ended runs per hour by result", Unit: "short", Min: zero, MinInterval: "1h",
			Description: "Campaign runs that ended, per hour, by result. A failed run makes RetentionCampaignRunFailed fire.",
			Targets:     []query{{`3600 * sum by (campaign, result) (rate(retention_campaign_runs_total{` + camp + `}[$__rate_interval]))`, "{{campaign}} {{result}}"}}},
		{Title: "Opt-outs per hour by channel", Unit: "short", Min: zero,
			Description: "One-click unsubscribes per hour over the last hour, per channel of the namespace (recording rule). RetentionChannelOptOutSpike fires at three times the day's rate.",
			Targets:     []query{{`3600 * namespace_channel:retention_channel_optouts:rate1h{` + ns + `}`, "{{channel}}"}}},
		{Title: "Minimum detectable effect (latest run)", Unit: "percentunit", Min: zero, Width: 12,
			Description: "Smallest absolute uplift the latest materialized run can detect at 80% power and two-sided alpha 0.05.",
			Targets:     []query{{`max by (campaign) (retention_campaign_mde_ratio{` + camp + `})`, "{{campaign}}"}}},
		{Title: "Sample-ratio p-value (latest run)", Unit: "none", LogScale: true, Width: 12,
			Steps:       []step{{"red", nil}, {"green", ptr(0.001)}},
			Description: "p-value of the chi-square test of the latest materialized run's group sizes against the planned split. Below 0.001 is a sample-ratio mismatch (RetentionCampaignSampleRatioMismatch): the run's uplift cannot be trusted.",
			Targets:     []query{{`max by (campaign) (retention_campaign_sample_ratio_p_value{` + camp + `})`, "{{campaign}}"}}},
	}},
	{"Operator", []spec{
		{Title: "Reconciles per second by result", Unit: "short", Min: zero, Stack: true,
			Description: "Reconciles of the operator's controllers by result (controller-runtime).",
			Targets:     []query{{`sum by (controller, result) (rate(controller_runtime_reconcile_total{` + job + `}[$__rate_interval]))`, "{{controller}} {{result}}"}}},
		{Title: "Reconcile errors per second", Unit: "short", Min: zero,
			Description: "Reconciles that returned an error, by controller. RetentionOperatorReconcileErrors fires above 10% of the reconciles.",
			Targets:     []query{{`sum by (controller) (rate(controller_runtime_reconcile_errors_total{` + job + `}[$__rate_interval]))`, "{{controller}}"}}},
		{Title: "Reconcile latency p50 / p99", Unit: "s", Min: zero,
			Description: "Time a reconcile takes, by controller.",
			Targets: []query{
				{`histogram_quantile(0.5, sum by (controller, le) (rate(controller_runtime_reconcile_time_seconds_bucket{` + job + `}[$__rate_interval])))`, "{{controller}} p50"},
				{`histogram_quantile(0.99, sum by (controller, le) (rate(controller_runtime_reconcile_time_seconds_bucket{` + job + `}[$__rate_interval])))`, "{{controller}} p99"},
			}},
		{Title: "Workqueue depth", Unit: "short", Min: zero,
			Description: "Objects waiting in each controller's workqueue.",
			Targets:     []query{{`sum by (name) (workqueue_depth{` + job + `})`, "{{name}}"}}},
		{Title: "Workqueue wait p95", Unit: "s", Min: zero,
			Description: "Time an object waits in the workqueue before a worker takes it, by controller.",
			Targets:     []query{{`histogram_quantile(0.95, sum by (name, le) (rate(workqueue_queue_duration_seconds_bucket{` + job + `}[$__rate_interval])))`, "{{name}}"}}},
		{Title: "Goroutines", Unit: "short", Min: zero,
			Description: "Goroutines of each operator pod.",
			Targets:     []query{{`sum by (instance) (go_goroutines{` + job + `})`, "{{instance}}"}}},
		{Title: "Resident memory", Unit: "bytes", Min: zero, Width: 12,
			Description: "Resident memory of each operator pod.",
			Targets:     []query{{`sum by (instance) (process_resident_memory_bytes{` + job + `})`, "{{instance}}"}}},
		{Title: "CPU (cores)", Unit: "short", Min: zero, Width: 12,
			Description: "CPU time used per second by each operator pod.",
			Targets:     []query{{`sum by (instance) (rate(process_cpu_seconds_total{` + job + `}[$__rate_interval]))`, "{{instance}}"}}},
	}},
}

// variables are the dashboard's template variables after the data source.
var variables = []queryVariable{
	{Name: "namespace", Label: "Namespace",
		Query: `label_values({__name__=~"retention_(source|segment|campaign|channel)_.+"}, namespace)`},
	{Name: "campaign", Label: "Campaign", Multi: true,
		Query: `label_values(retention_campaign_runs{namespace="$namespace"}, campaign)`},
	{Name: "job", Label: "Operator job",
		Query: `label_values(controller_runtime_reconcile_total{controller="campaignrun"}, job)`},
}

type row struct {
	Title  string
	Panels []spec
}

// spec is a panel as the table above writes it.
type spec struct {
	Title, Description string
	// Type is timeseries (the default) or bargauge (instant queries).
	Type string
	// Unit is a Grafana unit id: s, short, percentunit, bytes, none.
	Unit     string
	Min, Max *float64
	// Width in grid columns (of 24); 8 when zero.
	Width int
	// MinInterval is the panel's lower bound of $__interval (and so of
	// $__rate_interval), for metrics that change about hourly.
	MinInterval string
	Stack       bool
	LogScale    bool
	// Dashed is a regex of the series (by legend) drawn as dashed lines
	// without fill: thresholds and interval bounds.
	Dashed string
	// Steps, when set, are the thresholds, drawn as lines.
	Steps   []step
	Targets []query
}

type query struct{ Expr, Legend string }

type step struct {
	Color string
	Value *float64
}

type queryVariable struct {
	Name, Label, Query string
	Multi              bool
}

var zero, one = ptr(0), ptr(1)

func ptr(v float64) *float64 { return &v }

// datasource is the ${datasource} variable every panel and query uses.
var datasource = &dsRef{Type: "prometheus", UID: "${datasource}"}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type gridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

type rowPanel struct {
	Collapsed bool    `json:"collapsed"`
	GridPos   gridPos `json:"gridPos"`
	ID        int     `json:"id"`
	Panels    []any   `json:"panels"`
	Title     string  `json:"title"`
	Type      string  `json:"type"`
}

type panel struct {
	Datasource  *dsRef      `json:"datasource"`
	Description string      `json:"description"`
	FieldConfig fieldConfig `json:"fieldConfig"`
	GridPos     gridPos     `json:"gridPos"`
	ID          int         `json:"id"`
	Interval    string      `json:"interval,omitempty"`
	Options     any         `json:"options"`
	Targets     []target    `json:"targets"`
	Title       string      `json:"title"`
	Type        string      `json:"type"`
}

type target struct {
	Datasource   *dsRef `json:"datasource"`
	Expr         string `json:"expr"`
	Instant      bool   `json:"instant"`
	LegendFormat string `json:"legendFormat"`
	Range        bool   `json:"range"`
	RefID        string `json:"refId"`
}

type fieldConfig struct {
	Defaults  fieldDefaults `json:"defaults"`
	Overrides []any         `json:"overrides"`
}

type fieldDefaults struct {
	Color      map[string]string `json:"color"`
	Custom     map[string]any    `json:"custom,omitempty"`
	Max        *float64          `json:"max,omitempty"`
	Min        *float64          `json:"min,omitempty"`
	Thresholds thresholds        `json:"thresholds"`
	Unit       string            `json:"unit"`
}

type thresholds struct {
	Mode  string          `json:"mode"`
	Steps []thresholdStep `json:"steps"`
}

type thresholdStep struct {
	Color string   `json:"color"`
	Value *float64 `json:"value"`
}

// height of every panel, in grid rows.
const height = 8

func render() ([]byte, error) {
	var panels []any
	id, y := 0, 0
	for _, r := range rows {
		id++
		panels = append(panels, rowPanel{GridPos: gridPos{H: 1, W: 24, X: 0, Y: y}, ID: id, Panels: []any{}, Title: r.Title, Type: "row"})
		y++
		x := 0
		for _, s := range r.Panels {
			w := s.Width
			if w == 0 {
				w = 8
			}
			if x+w > 24 {
				x, y = 0, y+height
			}
			id++
			p, err := build(s, id, gridPos{H: height, W: w, X: x, Y: y})
			if err != nil {
				return nil, err
			}
			panels = append(panels, p)
			x += w
		}
		y += height
	}
	d := map[string]any{
		"annotations": map[string]any{"list": []any{map[string]any{
			"builtIn":    1,
			"datasource": map[string]string{"type": "grafana", "uid": "-- Grafana --"},
			"enable":     true,
			"hide":       true,
			"iconColor":  "rgba(0, 211, 255, 1)",
			"name":       "Annotations & Alerts",
			"type":       "dashboard",
		}}},
		"description":          "Customer sources, segments, campaigns and the operator's controllers of the retention operator. Generated by hack/gen-dashboard.",
		"editable":             true,
		"fiscalYearStartMonth": 0,
		"graphTooltip":         1,
		"id":                   nil,
		"links":                []any{},
		"liveNow":              false,
		"panels":               panels,
		"refresh":              "1m",
		"schemaVersion":        39,
		"tags":                 []string{"retention-operator"},
		"templating":           map[string]any{"list": templating()},
		"time":                 map[string]string{"from": "now-24h", "to": "now"},
		"timepicker":           map[string]any{},
		"timezone":             "",
		"title":                "Retention operator",
		"uid":                  UID,
		"version":              1,
		"weekStart":            "",
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func build(s spec, id int, pos gridPos) (panel, error) {
	if len(s.Targets) == 0 || len(s.Targets) > 26 {
		return panel{}, fmt.Errorf("panel %q: %d queries", s.Title, len(s.Targets))
	}
	typ := s.Type
	if typ == "" {
		typ = "timeseries"
	}
	steps := []thresholdStep{{Color: "green"}}
	if len(s.Steps) > 0 {
		steps = steps[:0]
		for _, st := range s.Steps {
			steps = append(steps, thresholdStep{Color: st.Color, Value: st.Value})
		}
	}
	p := panel{
		Datasource:  datasource,
		Description: s.Description,
		FieldConfig: fieldConfig{Defaults: fieldDefaults{
			Color:      map[string]string{"mode": "palette-classic"},
			Max:        s.Max,
			Min:        s.Min,
			Thresholds: thresholds{Mode: "absolute", Steps: steps},
			Unit:       s.Unit,
		}, Overrides: []any{}},
		GridPos:  pos,
		ID:       id,
		Interval: s.MinInterval,
		Title:    s.Title,
		Type:     typ,
	}
	if s.Dashed != "" {
		p.FieldConfig.Overrides = append(p.FieldConfig.Overrides, map[string]any{
			"matcher": map[string]string{"id": "byRegexp", "options": s.Dashed},
			"properties": []any{
				map[string]any{"id": "custom.lineStyle", "value": map[string]any{"dash": []int{10, 10}, "fill": "dash"}},
				map[string]any{"id": "custom.fillOpacity", "value": 0},
			},
		})
	}
	instant := typ == "bargauge"
	for i, q := range s.Targets {
		p.Targets = append(p.Targets, target{
			Datasource: datasource, Expr: q.Expr, Instant: instant, LegendFormat: q.Legend,
			Range: !instant, RefID: string(rune('A' + i)),
		})
	}
	switch typ {
	case "timeseries":
		stacking, fill := "none", 10
		if s.Stack {
			stacking, fill = "normal", 30
		}
		thresholdsStyle := "off"
		if len(s.Steps) > 0 {
			thresholdsStyle = "dashed"
		}
		scale := map[string]any{"type": "linear"}
		if s.LogScale {
			scale = map[string]any{"type": "log", "log": 10}
		}
		p.FieldConfig.Defaults.Custom = map[string]any{
			"drawStyle":         "line",
			"fillOpacity":       fill,
			"lineWidth":         1,
			"scaleDistribution": scale,
			"showPoints":        "never",
			"spanNulls":         false,
			"stacking":          map[string]string{"group": "A", "mode": stacking},
			"thresholdsStyle":   map[string]string{"mode": thresholdsStyle},
		}
		p.Options = map[string]any{
			"legend":  map[string]any{"calcs": []string{"lastNotNull"}, "displayMode": "table", "placement": "bottom", "showLegend": true},
			"tooltip": map[string]string{"mode": "multi", "sort": "desc"},
		}
	case "bargauge":
		p.Options = map[string]any{
			"displayMode":   "basic",
			"orientation":   "horizontal",
			"reduceOptions": map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": false},
			"showUnfilled":  true,
		}
	default:
		return panel{}, fmt.Errorf("panel %q: unknown type %q", s.Title, typ)
	}
	return p, nil
}

func templating() []any {
	list := []any{map[string]any{
		"current":    map[string]any{},
		"hide":       0,
		"includeAll": false,
		"label":      "Data source",
		"multi":      false,
		"name":       "datasource",
		"options":    []any{},
		"query":      "prometheus",
		"refresh":    1,
		"regex":      "",
		"type":       "datasource",
	}}
	for _, v := range variables {
		m := map[string]any{
			"current":    map[string]any{},
			"datasource": datasource,
			"definition": v.Query,
			"hide":       0,
			"includeAll": v.Multi,
			"label":      v.Label,
			"multi":      v.Multi,
			"name":       v.Name,
			"options":    []any{},
			"query":      v.Query,
			"refresh":    2,
			"regex":      "",
			"sort":       1,
			"type":       "query",
		}
		if v.Multi {
			m["allValue"] = ".*"
		}
		list = append(list, m)
	}
	return list
}
