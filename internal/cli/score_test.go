package cli

import (
	"bytes"
	"encoding/json"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/retention-dev/retention-operator/internal/testfiles"
)

// cdnowPath is the CDNOW sample in testdata/; a missing one fails the test.
func cdnowPath(t *testing.T) string { return testfiles.CDNOWSample(t) }

// runScore runs the score command and returns its exit code, stdout and stderr.
func scoreCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Score(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func scoreJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	code, out, errOut := scoreCLI(t, append(args, "--output", "json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	return m
}

// lookup reads the value at a jq-like dotted path ("bgnbd.r" is
// m["bgnbd"]["r"]) of the nested JSON output.
func lookup(m map[string]any, path string) (any, bool) {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = obj[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// number is the number at path, or false.
func number(m map[string]any, path string) (float64, bool) {
	v, _ := lookup(m, path)
	f, ok := v.(float64)
	return f, ok
}

// checkKeys compares numbers at dotted paths to references at their
// printed precision.
func checkKeys(t *testing.T, m map[string]any, want map[string]float64) {
	t.Helper()
	for k, w := range want {
		v, ok := number(m, k)
		if !ok {
			raw, _ := lookup(m, k)
			t.Errorf("%s missing or not a number: %v", k, raw)
			continue
		}
		dec := 0
		if s := strings.TrimLeft(fmtRef(w), "-0123456789"); strings.HasPrefix(s, ".") {
			dec = len(s) - 1
		}
		if half := 0.5 * math.Pow(10, -float64(dec)); !(math.Abs(v-w) <= half*(1+1e-9)) {
			t.Errorf("%s = %v, want %s at printed precision", k, v, fmtRef(w))
		}
	}
}

func fmtRef(v float64) string { return strings.TrimRight(strings.TrimRight(jsonNum(v), "0"), ".") }

func jsonNum(v float64) string {
	b, _ := json.Marshal(v)
	s := string(b)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// TestScoreCDNOW runs the documented command and compares the published
// BG/NBD and Gamma-Gamma estimates of the CDNOW sample.
func TestScoreCDNOW(t *testing.T) {
	t.Parallel()
	m := scoreJSON(t, "--csv", cdnowPath(t), "--customer-col", "customer_id", "--date-col", "date",
		"--amount-col", "amount", "--date-layout", "20060102", "--time-unit", "week", "--calibration-end", "1997-09-30")
	checkKeys(t, m, map[string]float64{
		"bgnbd.r": 0.243, "bgnbd.alpha": 4.414, "bgnbd.a": 0.793, "bgnbd.b": 2.426, "bgnbd.logLikelihood": -9582.4,
		"gammaGamma.p": 6.25, "gammaGamma.q": 3.74, "gammaGamma.v": 15.44,
		"customers": 2357, "transactions": 4960,
	})
	if m["model"] != "bgnbd" {
		t.Errorf("model %v, want bgnbd", m["model"])
	}
	for _, k := range []string{"mbgnbd", "paretoNBD", "holdout"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s present without --model auto or a holdout", k)
		}
	}
}

// TestScoreJSONNested: --output json prints nested objects, read as
// `jq .bgnbd.r`, never keys with dots in their names.
func TestScoreJSONNested(t *testing.T) {
	t.Parallel()
	m := scoreJSON(t, "--csv", cdnowPath(t), "--date-layout", "20060102", "--calibration-end", "1997-09-30",
		"--holdout-end", "1998-06-30", "--stats", "--score", "risk=(1.0-customer.pAlive)*customer.expectedValue")
	bgnbd, ok := m["bgnbd"].(map[string]any)
	if !ok {
		t.Fatalf("bgnbd is %T, want an object", m["bgnbd"])
	}
	if r, ok := bgnbd["r"].(float64); !ok || math.Abs(r-0.243) > 0.0005 {
		t.Errorf(`["bgnbd"]["r"] = %v, want 0.243`, bgnbd["r"])
	}
	holdout, _ := m["holdout"].(map[string]any)
	hb, _ := holdout["bgnbd"].(map[string]any)
	x0, _ := hb["x0"].(map[string]any)
	if _, ok := x0["actual"].(float64); !ok {
		t.Errorf(`["holdout"]["bgnbd"]["x0"]["actual"] missing: %v`, holdout)
	}
	for _, k := range []string{"gammaGamma", "population", "durations", "custom"} {
		if _, ok := m[k].(map[string]any); !ok {
			t.Errorf("%s is %T, want an object", k, m[k])
		}
	}
	custom, _ := m["custom"].(map[string]any)
	risk, _ := custom["risk"].(map[string]any)
	if _, ok := risk["mean"].(float64); !ok {
		t.Errorf(`["custom"]["risk"]["mean"] missing: %v`, custom)
	}
	var dotted func(path string, v any)
	dotted = func(path string, v any) {
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		for k, sub := range obj {
			if strings.Contains(k, ".") {
				t.Errorf("key %q at %q has a dot", k, path)
			}
			dotted(path+"."+k, sub)
		}
	}
	dotted("", m)
}

// TestScoreCDNOWHoldout: with a holdout every model is fitted on the
// calibration period and judged on the holdout; Auto publishes the best.
func TestScoreCDNOWHoldout(t *testing.T) {
	t.Parallel()
	plot := filepath.Join(t.TempDir(), "holdout.png")
	m := scoreJSON(t, "--csv", cdnowPath(t), "--date-layout", "20060102", "--calibration-end", "1997-09-30",
		"--holdout-end", "1998-06-30", "--model", "auto", "--plot", plot)
	checkKeys(t, m, map[string]float64{
		"bgnbd.r": 0.243, "bgnbd.alpha": 4.414, "bgnbd.a": 0.793, "bgnbd.b": 2.426, "bgnbd.logLikelihood": -9582.4,
		"paretoNBD.r": 0.55, "paretoNBD.alpha": 10.58, "paretoNBD.s": 0.61, "paretoNBD.beta": 11.67,
		"holdout.bgnbd.actual": 1882, "holdout.bgnbd.predicted": 1653, "holdout.mbgnbd.predicted": 1577,
		"holdout.paretoNBD.predicted": 1666,
	})
	best, bestMAE := "", math.Inf(1)
	for _, k := range []string{"bgnbd", "mbgnbd", "paretoNBD"} {
		mae, ok := number(m, "holdout."+k+".mae")
		if !ok {
			t.Fatalf("holdout.%s.mae missing", k)
		}
		for _, sub := range []string{"rmse", "predicted", "actual", "x0.actual", "x7.predicted"} {
			if _, ok := number(m, "holdout."+k+"."+sub); !ok {
				t.Errorf("holdout.%s.%s missing", k, sub)
			}
		}
		if mae < bestMAE {
			best, bestMAE = k, mae
		}
	}
	if m["model"] != best {
		t.Errorf("model %v, want %s (lowest MAE)", m["model"], best)
	}
	t.Logf("auto picked %v: %v", m["model"], m["selection"])
	f, err := os.Open(plot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("plot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 600 || b.Dy() < 400 {
		t.Errorf("plot is %v", b)
	}
}

func TestScoreTable(t *testing.T) {
	t.Parallel()
	code, out, errOut := scoreCLI(t, "--csv", cdnowPath(t), "--date-layout", "20060102", "--calibration-end", "1997-09-30",
		"--holdout-end", "1998-06-30", "--stats", "--score", "risk=(1.0-customer.pAlive)*customer.expectedValue")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"BGNBD", "calibration", "r=0.2426", "holdout MAE", "7+", "retention rate",
		"custom.risk.mean", "peak RSS MiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// TestScoreErrors: usage errors exit 2, failures exit 1, both with a clear message.
func TestScoreErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.csv", "customer_id,date,amount\na,2024-01-01,10\na,2024-02-01,5\nb,2024-01-15,7\n")
	wrongCols := write("cols.csv", "id,when,value\na,2024-01-01,10\n")
	var junk strings.Builder
	junk.WriteString("customer_id,date,amount\n")
	for i := 0; i < 100; i++ {
		if i%10 == 0 {
			junk.WriteString("a,not-a-date,10\n")
		} else {
			junk.WriteString("a,2024-01-01,10\n")
		}
	}
	junkPath := write("junk.csv", junk.String())
	empty := write("empty.csv", "")
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no csv", nil, 2, "--csv is required"},
		{"unknown flag", []string{"--csv", good, "--nope"}, 2, "flag provided but not defined"},
		{"bad time unit", []string{"--csv", good, "--time-unit", "fortnight"}, 2, "--time-unit"},
		{"bad date", []string{"--csv", good, "--calibration-end", "1997-13-01"}, 2, "--calibration-end"},
		{"holdout without calibration", []string{"--csv", good, "--holdout-end", "2024-03-01"}, 2, "needs --calibration-end"},
		{"holdout before calibration", []string{"--csv", good, "--calibration-end", "2024-03-01", "--holdout-end", "2024-02-01"}, 2, "must be after"},
		{"bad model", []string{"--csv", good, "--model", "magic"}, 2, "--model"},
		{"bad output", []string{"--csv", good, "--output", "xml"}, 2, "--output"},
		{"plot without holdout", []string{"--csv", good, "--plot", filepath.Join(dir, "p.png")}, 2, "--plot"},
		{"bad custom score", []string{"--csv", good, "--calibration-end", "2024-03-01", "--score", "oops=customer.pAlive >"}, 2, `custom score "oops"`},
		{"missing file", []string{"--csv", filepath.Join(dir, "missing.csv")}, 1, "no such file"},
		{"missing column", []string{"--csv", wrongCols}, 1, `no column "customer_id"`},
		{"too many rejected rows", []string{"--csv", junkPath, "--calibration-end", "2024-03-01"}, 1, "rejected"},
		{"empty file", []string{"--csv", empty}, 1, "empty input"},
		{"nothing in the period", []string{"--csv", good, "--calibration-end", "2023-01-01"}, 1, "no customer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := scoreCLI(t, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.msg) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q (stdout %q)", code, errOut, tc.code, tc.msg, out)
			}
		})
	}
	if code, _, _ := scoreCLI(t, "-h"); code != 0 {
		t.Errorf("-h exits %d", code)
	}
}
