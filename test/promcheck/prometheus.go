// Package promcheck checks the operator's monitoring against the real
// thing, for tests: it starts the prometheus binary from PATH on a free
// port with a temporary configuration and storage, scraping the targets a
// test serves and evaluating the project's rule file, and asks it PromQL
// questions over its HTTP API. It also lists every expression of the
// Grafana dashboard and the rule file, with Grafana's variables
// substituted, so a test can send each one to that Prometheus.
//
// Tests never skip for want of Prometheus: `make tools` installs it, and
// Start fails the test with that advice when it is missing.
package promcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Binary is the name of the Prometheus server looked up in PATH.
const Binary = "prometheus"

// Interval is the scrape and rule evaluation interval of a started
// Prometheus.
const Interval = time.Second

// Target is an HTTP endpoint for Prometheus to scrape.
type Target struct {
	// Address is host:port, e.g. an httptest.Server's Listener.Addr().
	Address string
	// Path is the metrics path. If empty, it defaults to /metrics.
	Path string
	// Job is the job label of the target's series. If empty, it defaults
	// to "promcheck". Targets of one job share their Path.
	Job string
}

// Options configure a Prometheus started by Start.
type Options struct {
	// Targets are scraped every Interval, with honor_labels (as the
	// operator's ServiceMonitor does), so a metric's own namespace label
	// is kept.
	Targets []Target
	// RuleFiles are rule files (recording and alerting rules) Prometheus
	// loads and evaluates every Interval. Relative paths are taken from
	// the working directory.
	RuleFiles []string
}

// Prometheus is a running Prometheus server.
type Prometheus struct {
	// URL is the server's base URL, http://127.0.0.1:PORT.
	URL string
	// Dir holds its configuration, storage and log (prometheus.log).
	Dir string

	cmd    *exec.Cmd
	done   chan struct{}
	client *http.Client
}

// Start starts Prometheus with opts, waits until it is ready and stops it
// (its whole process group) when the test ends. It fails the test when
// prometheus is not in PATH, with the advice to run `make tools`.
func Start(t testing.TB, opts Options) *Prometheus {
	t.Helper()
	bin, err := exec.LookPath(Binary)
	if err != nil {
		t.Fatalf("promcheck: %s is not in PATH (%v): run `make tools`, which installs it from Debian's packages (hack/tools.sh debian)", Binary, err)
	}
	dir := t.TempDir()
	cfg, err := config(opts)
	if err != nil {
		t.Fatalf("promcheck: %v", err)
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatalf("promcheck: %v", err)
	}
	// A free port can be taken between choosing it and Prometheus binding
	// it; try again with another then.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		p, err := start(t, bin, dir, cfgPath)
		if err == nil {
			return p
		}
		lastErr = err
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	t.Fatalf("promcheck: %v", lastErr)
	return nil
}

var errAddrInUse = errors.New("address already in use")

func start(t testing.TB, bin, dir, cfgPath string) (*Prometheus, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "prometheus.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--web.console.templates="+filepath.Join(dir, "consoles"),
		"--web.console.libraries="+filepath.Join(dir, "console_libraries"),
	)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &Prometheus{
		URL:    "http://" + addr,
		Dir:    dir,
		cmd:    cmd,
		done:   make(chan struct{}),
		client: &http.Client{Timeout: 30 * time.Second},
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.stop)
	if err := p.waitReady(60 * time.Second); err != nil {
		p.stop()
		log, _ := os.ReadFile(logPath)
		if bytes.Contains(log, []byte("address already in use")) {
			return nil, fmt.Errorf("%w: %s", errAddrInUse, addr)
		}
		return nil, fmt.Errorf("%v; its log (%s):\n%s", err, logPath, tail(log, 40))
	}
	return p, nil
}

// config renders the Prometheus configuration as JSON, which is YAML.
func config(opts Options) ([]byte, error) {
	type staticConfig struct {
		Targets []string `json:"targets"`
	}
	type scrapeConfig struct {
		JobName       string         `json:"job_name"`
		MetricsPath   string         `json:"metrics_path"`
		HonorLabels   bool           `json:"honor_labels"`
		StaticConfigs []staticConfig `json:"static_configs"`
	}
	var scrapes []*scrapeConfig
	byJob := map[string]*scrapeConfig{}
	for _, tg := range opts.Targets {
		job, path := tg.Job, tg.Path
		if job == "" {
			job = "promcheck"
		}
		if path == "" {
			path = "/metrics"
		}
		if tg.Address == "" || strings.Contains(tg.Address, "/") {
			return nil, fmt.Errorf("target %+v: Address must be host:port", tg)
		}
		sc := byJob[job]
		if sc == nil {
			sc = &scrapeConfig{JobName: job, MetricsPath: path, HonorLabels: true, StaticConfigs: []staticConfig{{}}}
			byJob[job] = sc
			scrapes = append(scrapes, sc)
		}
		if sc.MetricsPath != path {
			return nil, fmt.Errorf("job %s: targets with two paths (%s, %s): give them different jobs", job, sc.MetricsPath, path)
		}
		sc.StaticConfigs[0].Targets = append(sc.StaticConfigs[0].Targets, tg.Address)
	}
	rules := make([]string, 0, len(opts.RuleFiles))
	for _, f := range opts.RuleFiles {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(abs); err != nil {
			return nil, fmt.Errorf("rule file: %w", err)
		}
		rules = append(rules, abs)
	}
	iv := Interval.String()
	return json.MarshalIndent(map[string]any{
		"global": map[string]string{
			"scrape_interval":     iv,
			"scrape_timeout":      iv,
			"evaluation_interval": iv,
		},
		"rule_files":     rules,
		"scrape_configs": scrapes,
	}, "", "  ")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (p *Prometheus) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("prometheus exited before it was ready (%v)", p.cmd.ProcessState)
		default:
		}
		resp, err := p.client.Get(p.URL + "/-/ready")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("prometheus was not ready at %s/-/ready after %s (last: %v)", p.URL, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop terminates the process group, then kills it if it lingers.
func (p *Prometheus) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	signalGroup(p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(10 * time.Second):
	}
	signalGroup(p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Sample is one series of an instant query's result.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// apiResponse is the envelope of Prometheus' HTTP API.
type apiResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

// api calls a Prometheus API endpoint and returns its data, or the API's
// error (a PromQL parse or evaluation error among them).
func (p *Prometheus) api(ctx context.Context, path string, form url.Values) (json.RawMessage, error) {
	method, body := http.MethodGet, io.Reader(nil)
	if form != nil {
		method, body = http.MethodPost, strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, p.URL+path, body)
	if err != nil {
		return nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r apiResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, tail(b, 5))
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	return r.Data, nil
}

// Samples runs an instant query at the current time and returns the
// series of its result; a scalar is one sample without labels. A PromQL
// error (parse or evaluation) is an error.
func (p *Prometheus) Samples(ctx context.Context, expr string) ([]Sample, error) {
	data, err := p.api(ctx, "/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	var d struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, err
	}
	switch d.ResultType {
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(d.Result, &vec); err != nil {
			return nil, err
		}
		out := make([]Sample, 0, len(vec))
		for _, s := range vec {
			v, err := value(s.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, Sample{Labels: s.Metric, Value: v})
		}
		return out, nil
	case "scalar", "string":
		var pair [2]any
		if err := json.Unmarshal(d.Result, &pair); err != nil {
			return nil, err
		}
		v, _ := value(pair)
		return []Sample{{Labels: map[string]string{}, Value: v}}, nil
	default:
		return nil, fmt.Errorf("query %q: unexpected result type %q", expr, d.ResultType)
	}
}

func value(pair [2]any) (float64, error) {
	s, ok := pair[1].(string)
	if !ok {
		return 0, fmt.Errorf("sample value %v is not a string", pair[1])
	}
	return strconv.ParseFloat(s, 64) // NaN, +Inf and -Inf included
}

// Query runs an instant query at the current time and returns the number
// of series in its result (1 for a scalar). A PromQL error (parse or
// evaluation) is an error; an empty result is not.
func (p *Prometheus) Query(ctx context.Context, expr string) (series int, err error) {
	s, err := p.Samples(ctx, expr)
	return len(s), err
}

// WaitForSeries polls expr every quarter second until its result has at
// least one series and returns how many it has. It returns at once on a
// PromQL error, and with an error (saying what the scrape targets report)
// when timeout passes first.
func (p *Prometheus) WaitForSeries(ctx context.Context, expr string, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		n, err := p.Query(ctx, expr)
		if err != nil && ctx.Err() == nil {
			return 0, err
		}
		if n > 0 {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("no series for %q after %s; targets: %s", expr, timeout, p.targetHealth())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// targetHealth summarises the scrape targets for an error message.
func (p *Prometheus) targetHealth() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	data, err := p.api(ctx, "/api/v1/targets", nil)
	if err != nil {
		return err.Error()
	}
	var d struct {
		ActiveTargets []struct {
			ScrapeURL string `json:"scrapeUrl"`
			Health    string `json:"health"`
			LastError string `json:"lastError"`
		} `json:"activeTargets"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return err.Error()
	}
	if len(d.ActiveTargets) == 0 {
		return "none"
	}
	var parts []string
	for _, tg := range d.ActiveTargets {
		s := tg.ScrapeURL + " " + tg.Health
		if tg.LastError != "" {
			s += " (" + tg.LastError + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// RuleStatus is a loaded rule as /api/v1/rules reports it.
type RuleStatus struct {
	Group string
	// Name is the alert's name or the recorded series' name.
	Name string
	// Type is "alerting" or "recording".
	Type string
	// Health is "ok", "err" or "unknown" (not evaluated yet).
	Health    string
	LastError string
	// State of an alerting rule: inactive, pending or firing.
	State string
}

// Rules returns the loaded rules with their health, group by group in
// file order.
func (p *Prometheus) Rules(ctx context.Context) ([]RuleStatus, error) {
	data, err := p.api(ctx, "/api/v1/rules", nil)
	if err != nil {
		return nil, err
	}
	var d struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Name      string `json:"name"`
				Type      string `json:"type"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
				State     string `json:"state"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, err
	}
	var out []RuleStatus
	for _, g := range d.Groups {
		for _, r := range g.Rules {
			out = append(out, RuleStatus{Group: g.Name, Name: r.Name, Type: r.Type, Health: r.Health, LastError: r.LastError, State: r.State})
		}
	}
	return out, nil
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = slices.Clone(lines[len(lines)-n:])
	}
	return strings.Join(lines, "\n")
}
