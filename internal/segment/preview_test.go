package segment

import (
	"bytes"
	"context"
	"errors"
	"math"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/retention-dev/retention-operator/internal/customer"
)

// exactQuantile is the nearest-rank quantile of sorted values.
func exactQuantile(sorted []float64, q float64) float64 {
	rank := max(int(math.Ceil(q*float64(len(sorted)))), 1)
	return sorted[rank-1]
}

func checkSummary(t *testing.T, name string, got Summary, values []float64, relTol float64) {
	t.Helper()
	if got.Count != int64(len(values)) {
		t.Errorf("%s: count %d, want %d", name, got.Count, len(values))
		return
	}
	if len(values) == 0 {
		return
	}
	sorted := slices.Clone(values)
	sort.Float64s(sorted)
	var sum float64
	for _, v := range values {
		sum += v
	}
	close := func(g, w, tol float64) bool { return math.Abs(g-w) <= tol*math.Abs(w)+1e-12 }
	for _, c := range []struct {
		what      string
		got, want float64
		tol       float64
	}{
		{"min", got.Min, sorted[0], 0},
		{"max", got.Max, sorted[len(sorted)-1], 0},
		{"mean", got.Mean, sum / float64(len(values)), 1e-12},
		{"p10", got.P10, exactQuantile(sorted, 0.10), relTol},
		{"p25", got.P25, exactQuantile(sorted, 0.25), relTol},
		{"median", got.Median, exactQuantile(sorted, 0.50), relTol},
		{"p75", got.P75, exactQuantile(sorted, 0.75), relTol},
		{"p90", got.P90, exactQuantile(sorted, 0.90), relTol},
	} {
		if !close(c.got, c.want, c.tol) {
			t.Errorf("%s %s = %v, want %v (±%v)", name, c.what, c.got, c.want, c.tol)
		}
	}
}

func TestPreview(t *testing.T) {
	t.Parallel()
	schema := Schema{Attributes: map[string]customer.AttributeType{"country": customer.String}}
	pop := population2()
	tests := []struct {
		name, rule string
		o          oracle
	}{
		{"at risk", `customer.pAlive < 0.5 && customer.attributes.country != "DE"`, func(c *customer.Scored) (bool, bool) {
			return c.Scores.PAlive < 0.5 && c.Attributes["country"] != "DE", false
		}},
		{"nobody", `customer.pAlive > 2.0`, func(c *customer.Scored) (bool, bool) { return false, false }},
		{"errors", `100 / (customer.frequency - 3) > 0`, func(c *customer.Scored) (bool, bool) {
			d := c.Features.Frequency - 3
			return d != 0 && 100/d > 0, d == 0
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := Preview(context.Background(), mustCompile(t, tc.rule, schema), slices.Values(pop), testNow)
			if err != nil {
				t.Fatal(err)
			}
			want, value, errs := expect(pop, tc.o)
			var total float64
			var all, members [3][]float64
			for _, c := range pop {
				total += c.Scores.ExpectedValue
				vals := [3]float64{c.Scores.PAlive, c.Scores.ExpectedValue, float64(c.Features.RecencyDays)}
				for i, v := range vals {
					all[i] = append(all[i], v)
					if want[c.ID] {
						members[i] = append(members[i], v)
					}
				}
			}
			if s.Rule != tc.rule || s.Customers != int64(len(pop)) || s.Size != int64(len(want)) || s.Errors != errs ||
				math.Abs(s.Share-float64(len(want))/float64(len(pop))) > 1e-12 ||
				math.Abs(s.Value-value) > 1e-6*(value+1) || math.Abs(s.TotalValue-total) > 1e-6*total {
				t.Errorf("stats %+v; want size %d, errors %d, value %v of %v", s, len(want), errs, value, total)
			}
			if (errs > 0) != (s.FirstError == "division by zero") {
				t.Errorf("first error %q", s.FirstError)
			}
			for i, name := range []string{"P(alive)", "expected value", "recency days"} {
				tol := sketchAlpha
				if i == 2 {
					tol = 0 // whole days are counted exactly
				}
				got := [3]Summary{s.Members.PAlive, s.Members.ExpectedValue, s.Members.RecencyDays}
				checkSummary(t, "members "+name, got[i], members[i], tol)
				got = [3]Summary{s.Everyone.PAlive, s.Everyone.ExpectedValue, s.Everyone.RecencyDays}
				checkSummary(t, "everyone "+name, got[i], all[i], tol)
			}
			var out bytes.Buffer
			if err := s.Print(&out); err != nil {
				t.Fatal(err)
			}
			text := out.String()
			for _, w := range []string{"rule      " + tc.rule, "customers (", "P(alive)", "expected value", "recency (days)", "members", "everyone", "2,000 customers"} {
				if !strings.Contains(text, w) {
					t.Errorf("output lacks %q:\n%s", w, text)
				}
			}
			if strings.Contains(text, "c0000") {
				t.Errorf("output holds customer ids:\n%s", text)
			}
			if testing.Verbose() {
				t.Logf("\n%s", text)
			}
		})
	}
}

func TestPreviewCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := mustCompile(t, `customer.pAlive < 0.5`, Schema{})
	if _, err := Preview(ctx, r, slices.Values(population1()), testNow); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled preview: %v", err)
	}
	if _, err := Preview(context.Background(), nil, slices.Values(population1()), testNow); err == nil {
		t.Error("nil rule accepted")
	}
	s, err := Preview(context.Background(), r, slices.Values([]*customer.Scored(nil)), testNow)
	if err != nil || s.Customers != 0 || s.Share != 0 {
		t.Fatalf("empty preview: %+v, %v", s, err)
	}
	var out bytes.Buffer
	if err := s.Print(&out); err != nil || !strings.Contains(out.String(), "0 of 0 customers") {
		t.Errorf("empty preview printed %q, %v", out.String(), err)
	}
}

func TestSketch(t *testing.T) {
	t.Parallel()
	s := newSketch(false)
	var vals []float64
	for i := range 100000 {
		v := math.Exp(float64(i%2000)/100-10) * float64(1+i%7) // 1e-5 .. 1e5
		if i%11 == 0 {
			v = -v
		}
		if i%13 == 0 {
			v = 0
		}
		s.add(v)
		vals = append(vals, v)
	}
	s.add(math.NaN())
	s.add(math.Inf(1))
	checkSummary(t, "sketch", s.summary(), vals, sketchAlpha)
}

func TestGroup(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		v    float64
		d    int
		want string
	}{{0, 0, "0"}, {999, 0, "999"}, {1000, 0, "1,000"}, {1234567.891, 2, "1,234,567.89"}, {-12345, 1, "-12,345.0"}} {
		if got := group(tc.v, tc.d); got != tc.want {
			t.Errorf("group(%v, %d) = %q, want %q", tc.v, tc.d, got, tc.want)
		}
	}
}
