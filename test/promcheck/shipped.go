package promcheck

import (
	"context"
	"strings"
	"testing"
	"time"
)

// CheckShipped evaluates every expression of the shipped dashboard and
// rules (Expressions with vars) on p: every dashboard query and recording
// rule must return data, every alert expression must evaluate (an alert
// that is quiet returns nothing, so each operator metric it reads must have
// series instead), and every rule must be healthy. Rates need two scrapes
// and recorded series a rule evaluation after them, so each waits a little.
func CheckShipped(ctx context.Context, t testing.TB, p *Prometheus, repoRoot string, vars map[string]string) {
	t.Helper()
	exprs, err := Expressions(repoRoot, vars)
	if err != nil {
		t.Fatal(err)
	}
	qctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	alerts := 0
	for _, e := range exprs {
		if strings.HasPrefix(e.Where, "alert ") {
			alerts++
			if _, err := p.Query(qctx, e.Expr); err != nil {
				t.Errorf("%s: %v", e, err)
			}
			for _, name := range MetricNames(e.Expr) {
				if _, err := p.WaitForSeries(qctx, name, 20*time.Second); err != nil {
					t.Errorf("%s reads %s, which has no series: %v", e, name, err)
				}
			}
			continue
		}
		if _, err := p.WaitForSeries(qctx, e.Expr, 20*time.Second); err != nil {
			t.Errorf("%s: no data for %s: %v", e, e.Expr, err)
		}
	}
	if alerts == 0 || len(exprs) < 20 {
		t.Fatalf("%d expressions, %d alerts: the shipped files were not read", len(exprs), alerts)
	}
	rules, err := p.Rules(qctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if r.Health == "err" {
			t.Errorf("rule %s (group %s): %s", r.Name, r.Group, r.LastError)
		}
	}
}

// MetricNames returns the operator's metric names an expression reads
// (the retention_, controller_runtime_ and workqueue_ families, and the
// recorded namespace_…: series).
func MetricNames(expr string) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range strings.FieldsFunc(expr, func(r rune) bool {
		return !(r == '_' || r == ':' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	}) {
		if seen[f] || !(strings.HasPrefix(f, "retention_") || strings.HasPrefix(f, "controller_runtime_") || strings.HasPrefix(f, "workqueue_") || strings.HasPrefix(f, "namespace_")) {
			continue
		}
		seen[f] = true
		out = append(out, f)
	}
	return out
}
