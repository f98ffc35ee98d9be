package scoring

import (
	"errors"

	"github.com/google/cel-go/cel"
	"math"
	"strings"
	"testing"

	"github.com/retention-dev/retention-operator/internal/customer"
)

const smallLog = `customer_id,date,amount
a,2024-01-02,10
a,2024-02-10,30
a,2024-03-20,20
b,2024-01-05,15
b,2024-03-01,25
c,2024-02-15,40
d,2024-01-20,5
d,2024-01-21,5
d,2024-03-29,5
e,2024-03-30,50
`

func TestCustomScores(t *testing.T) {
	t.Parallel()
	end := date("2024-03-31")
	o := Options{ObservationEnd: end, Clock: fixedClock(end), CustomScores: []CustomScore{
		{Name: "risk", Expression: "(1.0 - customer.pAlive) * customer.expectedValue"},
		{Name: "loyal", Expression: "customer.frequency >= 2 && customer.recencyDays < 30 ? 1 : 0"},
		{Name: "spendPerDay", Expression: "customer.totalSpend / double(customer.frequency + 1)"},
		{Name: "weeks", Expression: "customer.age"},
		{Name: "tenure", Expression: "(timestamp('2024-03-31T00:00:00Z') - customer.firstPurchase).getHours() / 24"},
		{Name: "div", Expression: "100 / (customer.frequency - 1)"},   // int division by zero for x = 1
		{Name: "inf", Expression: "1.0 / double(customer.frequency)"}, // +Inf for x = 0
	}}
	res, cs := collect(t, csvReader(smallLog), o)
	for id, c := range cs {
		s, f := c.Scores, c.Features
		want := map[string]float64{
			"risk":        (1 - s.PAlive) * s.ExpectedValue,
			"spendPerDay": f.TotalSpend / float64(f.Frequency+1),
			"weeks":       f.Age,
			"tenure":      float64(f.TenureDays),
		}
		if f.Frequency >= 2 && f.RecencyDays < 30 {
			want["loyal"] = 1
		}
		if f.Frequency != 1 {
			want["div"] = float64(100 / (f.Frequency - 1))
		}
		if f.Frequency > 0 {
			want["inf"] = 1 / float64(f.Frequency)
		}
		for k, w := range want {
			if got := s.Custom[k]; math.Abs(got-w) > 1e-9*math.Max(1, math.Abs(w)) {
				t.Errorf("%s: %s = %v, want %v", id, k, got, w)
			}
		}
		if len(s.Custom) != len(o.CustomScores) {
			t.Errorf("%s: %d custom scores, want %d", id, len(s.Custom), len(o.CustomScores))
		}
	}
	if is := res.CustomScores["div"]; is.Errors != 1 || !strings.Contains(is.First, "divi") {
		t.Errorf("div issues %+v, want one division by zero", is)
	}
	if is := res.CustomScores["inf"]; is.NonFinite != 2 {
		t.Errorf("inf issues %+v, want 2 non-finite", is)
	}
	if _, ok := res.CustomScores["risk"]; ok {
		t.Errorf("risk reported issues: %+v", res.CustomScores)
	}
}

func TestCustomScoreErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, expr string
		limit      uint64
		want       error  // errors.Is target, or nil for any
		msg        string // substring of the message
	}{
		{"broken", "customer.pAlive +", 0, nil, "Syntax error"},
		{"unknown", "customer.nope * 2.0", 0, nil, "undeclared reference"},
		{"typed", "customer.pAlive + customer.frequency", 0, nil, "no matching overload"},
		{"boolean", "customer.pAlive > 0.5", 0, ErrNotNumeric, "bool"},
		{"text", "'high'", 0, ErrNotNumeric, "string"},
		{"costly", "double([1,2,3,4,5,6,7,8].map(x, [1,2,3,4,5,6,7,8].map(y, x*y)).size()) + customer.pAlive", 50, ErrCostLimit, "limit 50"},
		{"1bad", "1.0", 0, nil, "not an identifier"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			called := false
			_, err := Score(t.Context(), csvReader(smallLog), Options{ObservationEnd: date("2024-03-31"),
				CustomScores: []CustomScore{{Name: "ok", Expression: "1.0"}, {Name: tc.name, Expression: tc.expr}},
				CELCostLimit: tc.limit}, func(*customer.Scored) error { called = true; return nil })
			var ce *CustomScoreError
			if !errors.As(err, &ce) || ce.Name != tc.name {
				t.Fatalf("error %v, want a *CustomScoreError naming %q", err, tc.name)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v is not %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), `"`+tc.name+`"`) {
				t.Errorf("error %q does not name the score or contain %q", err, tc.msg)
			}
			if called {
				t.Error("customers were emitted")
			}
		})
	}
	// Duplicate names.
	_, err := Score(t.Context(), csvReader(smallLog), Options{CustomScores: []CustomScore{
		{Name: "x", Expression: "1"}, {Name: "x", Expression: "2"}}}, nil)
	var ce *CustomScoreError
	if !errors.As(err, &ce) || ce.Name != "x" {
		t.Errorf("duplicate name: %v", err)
	}
}

// TestCustomScoreRuntimeCostLimit: an evaluation over the run-time cost
// limit is an evaluation error (scored 0 and counted by the caller), not a panic.
func TestCustomScoreRuntimeCostLimit(t *testing.T) {
	t.Parallel()
	env, err := newCELEnv()
	if err != nil {
		t.Fatal(err)
	}
	ast, iss := env.Compile("double([1,2,3,4,5,6,7,8,9,10].filter(x, x > customer.frequency).size())")
	if iss.Err() != nil {
		t.Fatal(iss.Err())
	}
	for _, c := range []struct {
		limit uint64
		want  float64
		prob  byte
	}{{1000, 8, 0}, {5, 0, 'e'}} {
		prg, err := env.Program(ast, cel.CostLimit(c.limit))
		if err != nil {
			t.Fatal(err)
		}
		rec := customer.Scored{Features: customer.Features{Frequency: 2}}
		v, prob, err := evalCustom(&customProgram{name: "s", prg: prg}, &activation{c: &rec})
		if v != c.want || prob != c.prob || (prob != 0) != (err != nil) {
			t.Errorf("limit %d: %v %q %v, want %v %q", c.limit, v, prob, err, c.want, c.prob)
		}
		if err != nil && !strings.Contains(err.Error(), "cost limit") {
			t.Errorf("limit %d: error %v", c.limit, err)
		}
	}
}
