package promcheck

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const runbookBase = "https://github.com/retention-dev/retention-operator/blob/main/docs/runbooks.md#"

var (
	alertName  = regexp.MustCompile(`^Retention[A-Z][A-Za-z0-9]+$`)
	recordName = regexp.MustCompile(`^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z0-9_]+$`)
)

// TestRuleConventions checks the rules against the mixins' conventions:
// level:metric:operations recording rules; CamelCase Retention* alerts
// with a `for`, a severity and the summary, description and runbook_url
// annotations, the runbook being a section of docs/runbooks.md.
func TestRuleConventions(t *testing.T) {
	root := repoRoot(t)
	rf, err := readRules(filepath.Join(root, RulesFile))
	if err != nil {
		t.Fatal(err)
	}
	runbooks := runbookSections(t, root)
	alerts := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				if !recordName.MatchString(r.Record) {
					t.Errorf("record %s: not level:metric:operations", r.Record)
				}
				continue
			}
			alerts[r.Alert] = true
			if !alertName.MatchString(r.Alert) {
				t.Errorf("alert %s: want a CamelCase name starting with Retention", r.Alert)
			}
			if d, err := time.ParseDuration(r.For); err != nil || d <= 0 {
				t.Errorf("alert %s: for %q; want a duration", r.Alert, r.For)
			}
			if s := r.Labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, s) {
				t.Errorf("alert %s: severity %q; want critical, warning or info", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("alert %s: no %s annotation", r.Alert, a)
				}
			}
			if r.Annotations["summary"] != "" && strings.Contains(r.Annotations["summary"], "{{") {
				t.Errorf("alert %s: the summary is templated; labels belong in the description", r.Alert)
			}
			if !strings.HasPrefix(r.Expr, "absent(") && !strings.Contains(r.Annotations["description"], "$labels") {
				t.Errorf("alert %s: the description names no label ($labels)", r.Alert)
			}
			if want := runbookBase + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
				t.Errorf("alert %s: runbook_url %q; want %q", r.Alert, r.Annotations["runbook_url"], want)
			}
			if !runbooks[r.Alert] {
				t.Errorf("alert %s: docs/runbooks.md has no section \"## %s\"", r.Alert, r.Alert)
			}
		}
	}
	for name := range runbooks {
		if !alerts[name] {
			t.Errorf("docs/runbooks.md has a section for %s, which is no alert", name)
		}
	}
}

// runbookSections returns the alert names of docs/runbooks.md's "## "
// headings (GitHub's anchor of "## RetentionX" is #retentionx).
func runbookSections(t *testing.T, root string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docs/runbooks.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if name, ok := strings.CutPrefix(line, "## "); ok && strings.HasPrefix(name, "Retention") {
			out[strings.TrimSpace(name)] = true
		}
	}
	return out
}

// ruleTests is a promtool unit test file.
type ruleTests struct {
	RuleFiles []string `json:"rule_files"`
	Tests     []struct {
		AlertRuleTest []struct {
			Alertname string `json:"alertname"`
			ExpAlerts []struct {
				ExpLabels map[string]string `json:"exp_labels"`
			} `json:"exp_alerts"`
		} `json:"alert_rule_test"`
		PromQLExprTest []struct {
			Expr       string `json:"expr"`
			ExpSamples []any  `json:"exp_samples"`
		} `json:"promql_expr_test"`
	} `json:"tests"`
}

// TestRulesAreTested checks that config/prometheus/tests covers every
// rule: each alert (and each severity of it) fires in some case and stays
// quiet in another; each recording rule's output is compared with samples.
func TestRulesAreTested(t *testing.T) {
	root := repoRoot(t)
	rf, err := readRules(filepath.Join(root, RulesFile))
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "config/prometheus/tests/*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no promtool tests in config/prometheus/tests (%v)", err)
	}
	fires := map[[2]string]bool{} // alert, severity
	quiet := map[string]bool{}
	var exprTests []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rt ruleTests
		if err := yaml.Unmarshal(b, &rt); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !slices.Contains(rt.RuleFiles, "../rules/"+filepath.Base(RulesFile)) {
			t.Errorf("%s: rule_files %v; want the rule file", f, rt.RuleFiles)
		}
		for _, tc := range rt.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) == 0 {
					quiet[a.Alertname] = true
				}
				for _, e := range a.ExpAlerts {
					fires[[2]string{a.Alertname, e.ExpLabels["severity"]}] = true
				}
			}
			for _, e := range tc.PromQLExprTest {
				if len(e.ExpSamples) > 0 {
					exprTests = append(exprTests, e.Expr)
				}
			}
		}
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				if !slices.ContainsFunc(exprTests, func(e string) bool { return strings.Contains(e, r.Record) }) {
					t.Errorf("record %s: no promql_expr_test with samples", r.Record)
				}
				continue
			}
			if !fires[[2]string{r.Alert, r.Labels["severity"]}] {
				t.Errorf("alert %s (%s): no test case where it fires", r.Alert, r.Labels["severity"])
			}
			if !quiet[r.Alert] {
				t.Errorf("alert %s: no test case where it stays quiet", r.Alert)
			}
		}
	}
}

// TestPrometheusRuleIsFresh checks that the PrometheusRule manifest holds
// exactly the rule file's groups (`make monitoring` regenerates it;
// `make verify` compares the bytes).
func TestPrometheusRuleIsFresh(t *testing.T) {
	root := repoRoot(t)
	rf, err := readRules(filepath.Join(root, RulesFile))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, PrometheusRuleFile))
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Spec       ruleFile `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &pr); err != nil {
		t.Fatal(err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Errorf("%s: %s %s; want a monitoring.coreos.com/v1 PrometheusRule", PrometheusRuleFile, pr.APIVersion, pr.Kind)
	}
	if !reflect.DeepEqual(pr.Spec, *rf) {
		t.Errorf("%s differs from %s: run `make monitoring`", PrometheusRuleFile, RulesFile)
	}
}
