package promcheck

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// TestPrometheus starts Prometheus scraping a tiny registry and evaluating
// a recording rule, asks it questions, and checks that nothing outlives
// the test.
func TestPrometheus(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promcheck_test_value", Help: "A test gauge."}, []string{"namespace", "kind"})
	reg.MustRegister(g)
	g.WithLabelValues("shop", "a").Set(1)
	g.WithLabelValues("shop", "b").Set(2)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)

	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(`groups:
  - name: test
    rules:
      - record: namespace:promcheck_test_value:sum
        expr: sum by (namespace) (promcheck_test_value)
`), 0o644); err != nil {
		t.Fatal(err)
	}

	var pid int
	t.Run("queries", func(t *testing.T) {
		p := Start(t, Options{
			Targets:   []Target{{Address: srv.Listener.Addr().String(), Job: "tiny"}},
			RuleFiles: []string{rules},
		})
		pid = p.cmd.Process.Pid
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()

		n, err := p.WaitForSeries(ctx, `promcheck_test_value`, 30*time.Second)
		if err != nil || n != 2 {
			t.Fatalf("WaitForSeries = %d, %v; want 2 series", n, err)
		}
		// The scraped series keep their own namespace label (honor_labels)
		// and get the job's.
		s, err := p.Samples(ctx, `promcheck_test_value{kind="b"}`)
		if err != nil || len(s) != 1 || s[0].Value != 2 || s[0].Labels["namespace"] != "shop" || s[0].Labels["job"] != "tiny" {
			t.Errorf("Samples = %+v, %v; want one sample 2 with namespace shop and job tiny", s, err)
		}
		if n, err := p.Query(ctx, `promcheck_test_value{kind="none"}`); err != nil || n != 0 {
			t.Errorf("Query of a selector matching nothing = %d, %v; want 0, nil", n, err)
		}
		if n, err := p.Query(ctx, `1 + 1`); err != nil || n != 1 {
			t.Errorf("Query of a scalar = %d, %v; want 1, nil", n, err)
		}
		// A parse error and an evaluation error are errors.
		if _, err := p.Query(ctx, `sum(promcheck_test_value`); err == nil || !strings.Contains(err.Error(), "bad_data") {
			t.Errorf("Query of a bad expression: err = %v; want a bad_data error", err)
		}
		if _, err := p.Query(ctx, `promcheck_test_value + on (namespace) promcheck_test_value`); err == nil {
			t.Error("Query of a many-to-many match: no error")
		}
		if _, err := p.WaitForSeries(ctx, `rate(promcheck_test_value[`, time.Minute); err == nil {
			t.Error("WaitForSeries of a bad expression: no error")
		}

		// The recording rule is loaded, evaluated, and its series queryable.
		if n, err := p.WaitForSeries(ctx, `namespace:promcheck_test_value:sum`, 30*time.Second); err != nil || n != 1 {
			t.Fatalf("WaitForSeries(recorded) = %d, %v; want 1", n, err)
		}
		rs, err := p.Rules(ctx)
		if err != nil || len(rs) != 1 || rs[0].Name != "namespace:promcheck_test_value:sum" || rs[0].Health != "ok" {
			t.Errorf("Rules = %+v, %v; want the one recording rule, healthy", rs, err)
		}

		// A timeout says what the targets report.
		_, err = p.WaitForSeries(ctx, `promcheck_test_missing`, time.Second)
		if err == nil || !strings.Contains(err.Error(), "up") {
			t.Errorf("WaitForSeries of a missing series: err = %v; want a timeout naming the healthy target", err)
		}
	})
	if pid == 0 {
		t.Fatal("Prometheus was not started")
	}
	// The subtest's cleanup stopped Prometheus and reaped it.
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("Prometheus (pid %d) still exists after the test: kill(pid, 0) = %v", pid, err)
	}
}

func TestConfigRejectsBadTargets(t *testing.T) {
	for _, opts := range []Options{
		{Targets: []Target{{Address: "http://127.0.0.1:1/metrics"}}},
		{Targets: []Target{{Address: "127.0.0.1:1", Path: "/a"}, {Address: "127.0.0.1:2", Path: "/b"}}},
		{RuleFiles: []string{"does-not-exist.yaml"}},
	} {
		if _, err := config(opts); err == nil {
			t.Errorf("config(%+v): no error", opts)
		}
	}
}

func TestSubstitute(t *testing.T) {
	vars := map[string]string{"namespace": "shop", "campaign": "(a|b)"}
	for _, c := range []struct{ in, want, err string }{
		{`x{namespace="$namespace"}`, `x{namespace="shop"}`, ""},
		{`x{namespace="${namespace}", campaign=~"${campaign:regex}"}`, `x{namespace="shop", campaign=~"(a|b)"}`, ""},
		{`x{namespace="[[namespace]]"}`, `x{namespace="shop"}`, ""},
		{`rate(x[$__rate_interval]) + increase(x[$__range]) + x offset $__interval`, `rate(x[1m]) + increase(x[1h]) + x offset 1m`, ""},
		{`label_replace(x, "a", "$1", "b", "(.*)")`, `label_replace(x, "a", "$1", "b", "(.*)")`, ""},
		{`x{namespace="$namepsace"}`, "", "undefined variable $namepsace"},
		{`x{datasource="${datasource}"}`, "", "data source variable"},
	} {
		got, err := Substitute(c.in, vars)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Substitute(%q): err = %v; want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Substitute(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	// The caller's values win over the built-ins.
	if got, _ := Substitute(`[$__rate_interval]`, map[string]string{"__rate_interval": "5m"}); got != "[5m]" {
		t.Errorf("Substitute with __rate_interval given = %q; want [5m]", got)
	}
}
