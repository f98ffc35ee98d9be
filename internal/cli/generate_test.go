package cli

import (
	"bytes"
	"compress/gzip"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/scoring"
	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
	"github.com/retention-dev/retention-operator/internal/source"
)

func generate(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := Generate(args, &out, &errOut); code != 0 {
		t.Fatalf("generate %v: exit %d: %s", args, code, errOut.String())
	}
	return out.String()
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGenerateDeterministic: the same seed writes the same bytes, gzipped
// or not; another seed does not.
func TestGenerateDeterministic(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	common := []string{"--customers", "2000", "--start", "2023-01-01", "--end", "2023-12-31"}
	generate(t, append(common, "--seed", "7", "--transactions", p("a.csv"), "--customers-file", p("ac.csv"))...)
	generate(t, append(common, "--seed", "7", "--transactions", p("b.csv.gz"), "--customers-file", p("bc.csv"))...)
	generate(t, append(common, "--seed", "8", "--transactions", p("c.csv"))...)
	a, c := readFile(t, p("a.csv")), readFile(t, p("c.csv"))
	zr, err := gzip.NewReader(bytes.NewReader(readFile(t, p("b.csv.gz"))))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) || !bytes.Equal(readFile(t, p("ac.csv")), readFile(t, p("bc.csv"))) {
		t.Error("the same seed wrote different data")
	}
	if bytes.Equal(a, c) {
		t.Error("different seeds wrote the same data")
	}
	generate(t, append(common, "--seed", "7", "--transactions", p("d.csv.gz"))...)
	if !bytes.Equal(readFile(t, p("b.csv.gz")), readFile(t, p("d.csv.gz"))) {
		t.Error("the same seed wrote different gzip bytes")
	}
	if !strings.HasPrefix(string(a), "customer_id,date,amount\nc00") {
		t.Errorf("transactions start %q", a[:40])
	}
	// Sorted by date, as a transaction log.
	lines := strings.Split(strings.TrimSpace(string(a)), "\n")[1:]
	for i := 1; i < len(lines); i++ {
		if strings.Split(lines[i], ",")[1] < strings.Split(lines[i-1], ",")[1] {
			t.Fatalf("line %d out of date order: %q after %q", i+2, lines[i], lines[i-1])
		}
	}
}

// TestGenerateFitsBack: BG/NBD and Gamma-Gamma fitted to generated data
// recover the parameters it was drawn from.
func TestGenerateFitsBack(t *testing.T) {
	t.Parallel()
	o := DefaultSynth()
	o.Customers = 30000
	o.Seed = 3
	o.Start, o.End = time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	if _, err := Synthesize(o, &buf, nil); err != nil {
		t.Fatal(err)
	}
	r := &source.CSV{Transactions: source.FromBytes(buf.Bytes()), Mapping: source.Mapping{Timestamp: "date", DateLayout: "2006-01-02"}}
	res, err := scoring.Score(t.Context(), r, scoring.Options{ObservationEnd: o.End, Model: btyd.NameBGNBD}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Published()
	if m == nil || !res.Spend.Fitted {
		t.Fatalf("fits failed: %+v %+v", res.Models, res.Spend)
	}
	t.Logf("BG/NBD %v (drawn from r=%v alpha=%v a=%v b=%v)", m.Params, o.R, o.Alpha, o.A, o.B)
	t.Logf("Gamma-Gamma %v (drawn from p=%v q=%v v=%v)", res.Spend.Params, o.P, o.Q, o.V)
	// Tolerances: sampling error with 30 000 customers, plus purchases on
	// the same day counting once.
	for k, want := range map[string]float64{"r": o.R, "alpha": o.Alpha, "a": o.A, "b": o.B} {
		if got := m.Params[k]; math.Abs(got-want) > 0.2*want {
			t.Errorf("BG/NBD %s = %.4f, drawn from %.4f", k, got, want)
		}
	}
	// Gamma-Gamma's p and v trade off along a ridge; its mean spend is well determined.
	gg := btyd.GammaGamma{P: res.Spend.Params["p"], Q: res.Spend.Params["q"], V: res.Spend.Params["v"]}
	if want := o.P * o.V / (o.Q - 1); math.Abs(gg.MeanSpend()-want) > 0.1*want {
		t.Errorf("mean spend %.2f, drawn from %.2f", gg.MeanSpend(), want)
	}
}

// TestGenerateSegments: the defaults give every marketing segment a
// sensible, non-empty share, and the customers file maps cleanly.
func TestGenerateSegments(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tx, cf := filepath.Join(dir, "tx.csv"), filepath.Join(dir, "customers.csv")
	generate(t, "--transactions", tx, "--customers-file", cf)
	o := DefaultSynth()
	attrs, contact, err := sniffCustomers(cf, ',', "customer_id")
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]customer.AttributeType{}
	for _, a := range attrs {
		types[a.Name] = a.Type
	}
	wantTypes := map[string]customer.AttributeType{"first_name": customer.String, "complaints": customer.Number,
		"satisfaction": customer.Number, "referral_source": customer.String, "discount_share": customer.Number,
		"cost_to_serve": customer.Number}
	for k, v := range wantTypes {
		if types[k] != v {
			t.Errorf("attribute %s typed %q, want %q", k, types[k], v)
		}
	}
	if contact.Email == "" || contact.Timezone == "" || contact.Locale == "" || contact.OptOut == "" {
		t.Errorf("contact columns %+v", contact)
	}
	r := &source.CSV{Transactions: source.FromFile(tx), Customers: source.FromFile(cf),
		Mapping: source.Mapping{Timestamp: "date", DateLayout: "2006-01-02", Attributes: attrs, Contact: contact}}
	counts := map[string]int{}
	n := 0
	persian := false
	res, err := scoring.Score(t.Context(), r, scoring.Options{ObservationEnd: o.End, Model: btyd.NameMBGNBD, AnnualDiscountPercent: 10},
		func(c *customer.Scored) error {
			n++
			f, s, a := c.Features, c.Scores, c.Attributes
			num := func(k string) float64 { v, _ := a[k].(float64); return v }
			ref, _ := a["referral_source"].(string)
			seg := map[string]bool{
				"new":             f.TenureDays <= 30,
				"active":          s.PAlive >= 0.5,
				"at risk":         f.Frequency > 0 && s.PAlive < 0.5,
				"dormant":         f.RecencyDays > 180,
				"dissatisfied":    num("satisfaction") <= 2 || num("complaints") >= 2,
				"referred":        ref != "",
				"high value":      s.ValuePercentile > 80,
				"unprofitable":    s.ExpectedValue < num("cost_to_serve"),
				"discount-driven": num("discount_share") > 0.5,
				"opted out":       c.Contact.OptOut,
			}
			for k, v := range seg {
				if v {
					counts[k]++
				}
			}
			if name, _ := a["first_name"].(string); !persian && strings.ContainsFunc(name, func(r rune) bool { return unicode.Is(unicode.Arabic, r) }) {
				persian = true
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"new", "active", "at risk", "dormant", "dissatisfied", "referred", "high value",
		"unprofitable", "discount-driven", "opted out"} {
		share := float64(counts[k]) / float64(n)
		t.Logf("%-16s %5.1f%%", k, 100*share)
		lo, hi := 0.01, 0.95
		if k == "opted out" {
			lo, hi = 0.01, 0.06
		}
		if share < lo || share > hi {
			t.Errorf("segment %q has share %.3f, want between %v and %v", k, share, lo, hi)
		}
	}
	if !persian {
		t.Error("no first name in the Persian/Arabic script")
	}
	if res.Customers != int64(o.Customers) || res.Unscored != 0 {
		t.Errorf("customers %d unscored %d", res.Customers, res.Unscored)
	}
}

func TestGenerateErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{nil, 2, "--transactions is required"},
		{[]string{"--transactions", filepath.Join(dir, "x.csv"), "--customers", "0"}, 2, "customers"},
		{[]string{"--transactions", filepath.Join(dir, "x.csv"), "--start", "2024-02-01", "--end", "2024-01-01"}, 2, "start"},
		{[]string{"--transactions", filepath.Join(dir, "x.csv"), "--alpha", "-1"}, 2, "alpha"},
		{[]string{"--transactions", filepath.Join(dir, "x.csv"), "--end", "yesterday"}, 2, "--end"},
		{[]string{"--transactions", filepath.Join(dir, "no", "such", "dir.csv")}, 1, "no such file"},
	} {
		var out, errOut bytes.Buffer
		if code := Generate(tc.args, &out, &errOut); code != tc.code || !strings.Contains(errOut.String(), tc.msg) {
			t.Errorf("%v: exit %d, %q; want %d mentioning %q", tc.args, code, errOut.String(), tc.code, tc.msg)
		}
	}
}
