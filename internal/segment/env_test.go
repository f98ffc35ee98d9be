package segment

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
)

// testSchema declares one attribute of each type, the demo source's
// attributes and a custom score.
var testSchema = Schema{
	Attributes: map[string]customer.AttributeType{
		"first_name":      customer.String,
		"complaints":      customer.Number,
		"satisfaction":    customer.Number,
		"referral_source": customer.String,
		"vip":             customer.Bool,
		"signup":          customer.Timestamp,
	},
	CustomScores: []string{"valueAtRisk"},
}

var testNow = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

// fixture is a customer with every field set to a distinct value.
func fixture() *customer.Scored {
	return &customer.Scored{
		ID: "c0000042",
		Features: customer.Features{
			Frequency: 3, Recency: 20.5, Age: 52.25, Monetary: 41.5, Transactions: 5, TotalSpend: 180.75,
			FirstPurchase: day("2024-01-02"), LastPurchase: day("2024-05-21"), RecencyDays: 224, TenureDays: 364,
		},
		Scores: customer.Scores{
			PAlive: 0.625, ExpectedPurchases: 1.5, ExpectedSpend: 43.25, ExpectedValue: 61.125,
			RecencyScore: 2, FrequencyScore: 4, MonetaryScore: 3,
			ValuePercentile: 81.5, FrequencyPercentile: 77.25, RecencyPercentile: 33.5,
			Custom: map[string]float64{"valueAtRisk": 22.921875},
		},
		Attributes: customer.Attributes{
			"first_name": "نیلوفر", "complaints": 2.0, "satisfaction": 3.0, "referral_source": "friend",
			"vip": true, "signup": time.Date(2023, 12, 1, 10, 0, 0, 0, time.UTC),
		},
		Contact: customer.Contact{Email: "niloufar@example.org", Phone: "+98 21 5555 0100", Timezone: "Asia/Tehran", Locale: "fa-IR", OptOut: true},
	}
}

func mustCompile(t testing.TB, expr string, s Schema) *Rule {
	t.Helper()
	r, err := Compile(expr, s)
	if err != nil {
		t.Fatalf("Compile(%q): %v", expr, err)
	}
	return r
}

func match(t testing.TB, r *Rule, c *customer.Scored) bool {
	t.Helper()
	ok, err := r.NewMatcher(testNow).Match(c)
	if err != nil {
		t.Fatalf("Match(%q): %v", r, err)
	}
	return ok
}

// celTypeExpr is how a rule names a type.
var celTypeExpr = map[string]string{
	"int": "int", "double": "double", "string": "string", "bool": "bool", "timestamp": "google.protobuf.Timestamp",
}

// TestFieldsReachable reads every field of the environment, checking its
// type and the value it carries from the customer. The table must list
// every field Env.Fields reports.
func TestFieldsReachable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, typ, value string
	}{
		{"customer.id", "string", `"c0000042"`},
		{"customer.frequency", "int", "3"},
		{"customer.recency", "double", "20.5"},
		{"customer.age", "double", "52.25"},
		{"customer.monetary", "double", "41.5"},
		{"customer.transactions", "int", "5"},
		{"customer.totalSpend", "double", "180.75"},
		{"customer.firstPurchase", "timestamp", `timestamp("2024-01-02T00:00:00Z")`},
		{"customer.lastPurchase", "timestamp", `timestamp("2024-05-21T00:00:00Z")`},
		{"customer.recencyDays", "int", "224"},
		{"customer.tenureDays", "int", "364"},
		{"customer.pAlive", "double", "0.625"},
		{"customer.expectedPurchases", "double", "1.5"},
		{"customer.expectedSpend", "double", "43.25"},
		{"customer.expectedValue", "double", "61.125"},
		{"customer.recencyScore", "int", "2"},
		{"customer.frequencyScore", "int", "4"},
		{"customer.monetaryScore", "int", "3"},
		{"customer.valuePercentile", "double", "81.5"},
		{"customer.frequencyPercentile", "double", "77.25"},
		{"customer.recencyPercentile", "double", "33.5"},
		{"customer.contact.email", "string", `"niloufar@example.org"`},
		{"customer.contact.phone", "string", `"+98 21 5555 0100"`},
		{"customer.contact.timezone", "string", `"Asia/Tehran"`},
		{"customer.contact.locale", "string", `"fa-IR"`},
		{"customer.contact.optOut", "bool", "true"},
		{"now", "timestamp", `timestamp("2025-01-01T12:00:00Z")`},
		{"customer.attributes.complaints", "double", "2.0"},
		{"customer.attributes.first_name", "string", `"نیلوفر"`},
		{"customer.attributes.referral_source", "string", `"friend"`},
		{"customer.attributes.satisfaction", "double", "3.0"},
		{"customer.attributes.signup", "timestamp", `timestamp("2023-12-01T10:00:00Z")`},
		{"customer.attributes.vip", "bool", "true"},
		{"customer.custom.valueAtRisk", "double", "22.921875"},
	}
	env, err := NewEnv(testSchema, EnvOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fields := env.Fields()
	if len(fields) != len(tests) {
		t.Errorf("Env.Fields has %d fields, the table %d", len(fields), len(tests))
	}
	for i, f := range fields {
		if i < len(tests) && (f.Name != tests[i].name || f.Type != tests[i].typ) {
			t.Errorf("field %d = %s %s, table says %s %s", i, f.Name, f.Type, tests[i].name, tests[i].typ)
		}
		if f.Doc == "" {
			t.Errorf("field %s has no doc", f.Name)
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := env.Compile(fmt.Sprintf("type(%s) == %s && %s == %s", tc.name, celTypeExpr[tc.typ], tc.name, tc.value))
			if err != nil {
				t.Fatal(err)
			}
			if !match(t, r, fixture()) {
				t.Errorf("%s is not a %s equal to %s", tc.name, tc.typ, tc.value)
			}
			// The static type too: comparing with a value of another type
			// does not compile (ints and doubles compare, so use a string
			// or a bool).
			other := `"x"`
			if tc.typ == "string" {
				other = "true"
			}
			if _, err := env.Compile(fmt.Sprintf("%s == %s", tc.name, other)); err == nil {
				t.Errorf("%s == %s compiled", tc.name, other)
			}
		})
	}
}

// TestNaturalRules compiles and evaluates the rules of the brief.
func TestNaturalRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rule string
		want bool
	}{
		{`customer.pAlive < 0.5 && customer.recencyDays <= 180`, false},
		{`customer.pAlive < 0.7 && customer.recencyDays <= 365`, true},
		{`customer.attributes.complaints > 0`, true},
		{`customer.attributes.referral_source == "friend"`, true},
		{`customer.custom.valueAtRisk > 100.0`, false},
		{`customer.contact.optOut`, true},
		{`customer.lastPurchase > now - duration("720h")`, false},
		{`customer.lastPurchase > now - duration("8760h")`, true},
		{`now - customer.lastPurchase > duration("5000h")`, true},
		{`customer.firstPurchase < timestamp("2024-02-01T00:00:00Z")`, true},
		{`customer.attributes.signup < customer.firstPurchase`, true},
		{`customer.recencyDays <= 224.0 && customer.pAlive > 0`, true},
		{`double(customer.frequency) * customer.monetary > 100.0`, true},
		{`customer.frequency in [1, 2, 3]`, true},
		{`customer.contact.email.endsWith("@example.org")`, true},
		{`customer.contact.locale.startsWith("fa")`, true},
		{`[1, 2, 3].exists(x, x == customer.frequency)`, true},
	}
	for _, tc := range tests {
		t.Run(tc.rule, func(t *testing.T) {
			t.Parallel()
			if got := match(t, mustCompile(t, tc.rule, testSchema), fixture()); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestInvalidRules: unknown names, type errors, non-boolean rules and
// syntax errors are *RuleError with Reason InvalidRule, and the message
// names the problem.
func TestInvalidRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, rule string
		want       []string // substrings of the message
	}{
		{"unknown field", `customer.pAliv < 0.5`, []string{"pAliv", `did you mean "pAlive"`}},
		{"unknown field deep in a rule", `customer.frequency > 1 && (customer.recencyDays < 30 || customer.churnRisk > 0.5)`, []string{"churnRisk"}},
		{"unknown attribute", `customer.attributes.complaint > 0`, []string{`"complaint"`, `did you mean "complaints"`, "first_name"}},
		{"unknown attribute in has", `has(customer.attributes.loyalty_tier)`, []string{"loyalty_tier"}},
		{"unknown custom score", `customer.custom.clv > 1.0`, []string{`"clv"`, "valueAtRisk"}},
		{"unknown contact field", `customer.contact.mail != ""`, []string{`"mail"`}},
		{"attribute as a field", `customer.complaints > 0`, []string{`"complaints"`}},
		{"two unknown names", `customer.foo > 1 && customer.attributes.bar == ""`, []string{`"foo"`, `"bar"`}},
		{"unknown variable", `custmer.pAlive < 0.5`, []string{"custmer"}},
		{"customer alone", `customer == null`, []string{"customer is not a value"}},
		{"has on a built-in field", `has(customer.pAlive)`, []string{"always has a value"}},
		{"string compared with a number", `customer.attributes.first_name > 3`, []string{"no matching overload", "string"}},
		{"bool attribute as a number", `customer.attributes.vip + 1 > 2`, []string{"no matching overload"}},
		{"int plus double", `customer.frequency + 1.5 > 2.0`, []string{"no matching overload"}},
		{"timestamp compared with a string", `customer.lastPurchase > "2024-01-01"`, []string{"no matching overload"}},
		{"field of a scalar", `customer.pAlive.value > 1`, []string{"field selection"}},
		{"not boolean: double", `customer.pAlive`, []string{"must yield a bool", "double"}},
		{"not boolean: string", `customer.attributes.first_name`, []string{"must yield a bool", "string"}},
		{"not boolean: int", `customer.frequency + 1`, []string{"must yield a bool", "int"}},
		{"syntax error", `customer.pAlive <`, []string{"Syntax error"}},
		{"empty", `  `, []string{"empty"}},
	}
	env, err := NewEnv(testSchema, EnvOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := env.Compile(tc.rule)
			var re *RuleError
			if !errors.As(err, &re) {
				t.Fatalf("Compile(%q) = %v, want a *RuleError", tc.rule, err)
			}
			if re.Reason != ReasonInvalidRule || !IsInvalidRule(err) {
				t.Errorf("reason %q", re.Reason)
			}
			for _, w := range tc.want {
				if !strings.Contains(re.Message, w) {
					t.Errorf("message %q does not contain %q", re.Message, w)
				}
			}
		})
	}
}

// TestMissingValues: a declared attribute or custom score a customer lacks
// reads as its type's zero value, and has() tells it apart.
func TestMissingValues(t *testing.T) {
	t.Parallel()
	bare := fixture()
	bare.Attributes = nil
	bare.Scores.Custom = nil
	zeroes := fixture()
	zeroes.Attributes = customer.Attributes{"first_name": "", "complaints": 0.0, "vip": false, "signup": time.Unix(0, 0).UTC()}
	zeroes.Scores.Custom = map[string]float64{"valueAtRisk": 0}
	tests := []struct {
		rule             string
		bare, zero, full bool
	}{
		{`customer.attributes.first_name == ""`, true, true, false},
		{`customer.attributes.complaints == 0.0`, true, true, false},
		{`customer.attributes.vip == false`, true, true, false},
		{`customer.attributes.signup == timestamp(0)`, true, true, false},
		{`customer.custom.valueAtRisk == 0.0`, true, true, false},
		{`has(customer.attributes.first_name)`, false, true, true},
		{`has(customer.attributes.complaints)`, false, true, true},
		{`has(customer.attributes.vip)`, false, true, true},
		{`has(customer.attributes.signup)`, false, true, true},
		{`has(customer.custom.valueAtRisk)`, false, true, true},
		{`has(customer.attributes.satisfaction)`, false, false, true},
		// The pitfall has() avoids: a missing satisfaction is not a low one.
		{`customer.attributes.satisfaction <= 2.0`, true, true, false},
		{`has(customer.attributes.satisfaction) && customer.attributes.satisfaction <= 3.0`, false, false, true},
		{`!has(customer.attributes.vip) || customer.attributes.vip`, true, false, true},
		// The standard has() still works on maps.
		{`has({"a": 1}.a) && !has({"a": 1}.b)`, true, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.rule, func(t *testing.T) {
			t.Parallel()
			r := mustCompile(t, tc.rule, testSchema)
			for _, c := range []struct {
				name string
				c    *customer.Scored
				want bool
			}{{"bare", bare, tc.bare}, {"zero values", zeroes, tc.zero}, {"full", fixture(), tc.full}} {
				if got := match(t, r, c.c); got != c.want {
					t.Errorf("%s customer: got %v, want %v", c.name, got, c.want)
				}
			}
		})
	}
}

// TestUnicode: strings in any script compare by code points, in a rule
// and in attributes; size() counts characters.
func TestUnicode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rule string
		want bool
	}{
		{`customer.attributes.first_name == "نیلوفر"`, true},
		{`customer.attributes.first_name != "نیلوفر"`, false},
		{`customer.attributes.first_name == "نيلوفر"`, false}, // Arabic yeh (U+064A), not Persian yeh (U+06CC)
		{`customer.attributes.first_name.startsWith("نی")`, true},
		{`customer.attributes.first_name.contains("لوف")`, true},
		{`size(customer.attributes.first_name) == 6`, true},
		{`customer.attributes.first_name in ["آرش", "نیلوفر", "مریم"]`, true},
		{`customer.attributes.first_name.matches("^نی.*ر$")`, true},
		{`customer.attributes.referral_source == "دوست"`, false},
		{`customer.contact.locale == "fa-IR" && customer.attributes.first_name > "ن"`, true},
	}
	for _, tc := range tests {
		t.Run(tc.rule, func(t *testing.T) {
			t.Parallel()
			if got := match(t, mustCompile(t, tc.rule, testSchema), fixture()); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	// A Persian attribute value selected by a Persian rule, and by a
	// German one for a German name.
	c := fixture()
	c.Attributes["referral_source"] = "دوست"
	if !match(t, mustCompile(t, `customer.attributes.referral_source == "دوست"`, testSchema), c) {
		t.Error("Persian attribute value not matched")
	}
	c.Attributes["first_name"] = "Jürgen"
	if !match(t, mustCompile(t, `customer.attributes.first_name == "Jürgen"`, testSchema), c) {
		t.Error("Jürgen not matched")
	}
}

// TestCostLimit: a rule that may cost more than the limit does not
// compile; a rule whose cost depends on string sizes is checked at run
// time, and a customer whose strings make it exceed the limit is an
// evaluation error.
func TestCostLimit(t *testing.T) {
	t.Parallel()
	const big = `[1,2,3,4,5,6,7,8].all(x, [1,2,3,4,5,6,7,8].all(y, [1,2,3,4,5,6,7,8].exists(z, x + y + z > customer.frequency)))`
	small, err := NewEnv(testSchema, EnvOptions{CostLimit: 500})
	if err != nil {
		t.Fatal(err)
	}
	_, err = small.Compile(big)
	var re *RuleError
	if !errors.As(err, &re) || re.Reason != ReasonInvalidRule || !strings.Contains(re.Message, "limit of 500") {
		t.Fatalf("big comprehension under limit 500: %v", err)
	}
	r, err := Compile(big, testSchema) // the default limit admits it
	if err != nil {
		t.Fatalf("big comprehension under the default limit: %v", err)
	}
	if lo, hi := r.EstimatedCost(); lo == 0 || hi <= 500 || hi > DefaultCostLimit || r.CostTracked() {
		t.Errorf("estimated cost %d..%d, tracked %v", lo, hi, r.CostTracked())
	}
	if !match(t, r, fixture()) {
		t.Error("big comprehension: no match")
	}

	// String sizes: estimated with MaxStringSize, enforced at run time.
	env, err := NewEnv(testSchema, EnvOptions{CostLimit: 100, MaxStringSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	rule := `customer.attributes.first_name.contains("xyz")`
	r, err = env.Compile(rule)
	if err != nil {
		t.Fatal(err)
	}
	if !r.CostTracked() {
		t.Fatal("a rule whose cost depends on a string's size is not cost-tracked")
	}
	c := fixture()
	c.Attributes["first_name"] = strings.Repeat("ن", 10000)
	ok, err := r.NewMatcher(testNow).Match(c)
	var ee *EvalError
	if ok || !errors.As(err, &ee) || !strings.Contains(ee.Message, "cost limit") {
		t.Errorf("long string: %v, %v; want a cost limit error", ok, err)
	}
	if strings.Contains(err.Error(), "ن") {
		t.Errorf("error %q holds customer data", err)
	}
	if match(t, r, fixture()) { // short: within the limit
		t.Error("short string matched")
	}
	// The same rule, estimated for long strings, may cost too much.
	long, err := NewEnv(testSchema, EnvOptions{CostLimit: 100, MaxStringSize: 100000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := long.Compile(rule); !IsInvalidRule(err) || !strings.Contains(err.Error(), "100000 characters") {
		t.Errorf("contains over 100000-character strings under limit 100: %v", err)
	}
}

// TestEvalErrors: run-time failures are *EvalError without customer data.
func TestEvalErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, rule string
		c          func(*customer.Scored)
		want       string
	}{
		{"division by zero", `100 / (customer.frequency - 3) > 1`, nil, "division by zero"},
		{"modulus by zero", `customer.frequency % (customer.transactions - 5) == 0`, nil, "modulus by zero"},
		{"string to int", `int(customer.attributes.first_name) > 1`, nil, "conversion error from 'string' to 'int'"},
		{"attribute of the wrong type", `customer.attributes.complaints > 0`,
			func(c *customer.Scored) { c.Attributes["complaints"] = "many" }, "declares it Number"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := fixture()
			if tc.c != nil {
				tc.c(c)
			}
			ok, err := mustCompile(t, tc.rule, testSchema).NewMatcher(testNow).Match(c)
			var ee *EvalError
			if ok || !errors.As(err, &ee) {
				t.Fatalf("got %v, %v; want an *EvalError", ok, err)
			}
			if !strings.Contains(ee.Message, tc.want) {
				t.Errorf("message %q does not contain %q", ee.Message, tc.want)
			}
			for _, private := range []string{"نیلوفر", "many", c.ID} {
				if strings.Contains(err.Error(), private) {
					t.Errorf("message %q holds customer data %q", err, private)
				}
			}
		})
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"division by zero", "division by zero"},
		{`strconv.ParseInt: parsing "نیلوفر": invalid syntax`, `strconv.ParseInt: parsing "…": invalid syntax`},
		{`no such key: 'c0000042'`, `no such key: "…"`},
		{`range error converting 1e+20 to int64`, `range error converting # to int64`},
		{`utf8 value 12345 at 3.5`, `utf8 value # at #`},
		{`type conversion error from 'string' to 'int'`, `type conversion error from 'string' to 'int'`},
	} {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestSchemaNames: attribute names that are not CEL identifiers cannot be
// named by a rule; they are reported, not fatal. An unknown type is.
func TestSchemaNames(t *testing.T) {
	t.Parallel()
	env, err := NewEnv(Schema{
		Attributes:   map[string]customer.AttributeType{"first-name": customer.String, "in": customer.Number, "نام": customer.String, "tier": customer.String},
		CustomScores: []string{"ok_score", "bad score"},
	}, EnvOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(env.Unreachable(), ","), "bad score,first-name,in,نام"; got != want {
		t.Errorf("Unreachable = %s, want %s", got, want)
	}
	if _, err := env.Compile(`customer.attributes.tier == "gold" && customer.custom.ok_score > 1.0`); err != nil {
		t.Error(err)
	}
	if _, err := NewEnv(Schema{Attributes: map[string]customer.AttributeType{"x": "Money"}}, EnvOptions{}); err == nil {
		t.Error("unknown attribute type accepted")
	}
}

// TestMatchersConcurrently: one rule, a matcher per goroutine (run with
// -race).
func TestMatchersConcurrently(t *testing.T) {
	t.Parallel()
	r := mustCompile(t, `customer.attributes.first_name == "نیلوفر" && customer.pAlive > 0.5 && has(customer.custom.valueAtRisk)`, testSchema)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := r.NewMatcher(testNow)
			c := fixture()
			for i := range 1000 {
				c.Scores.PAlive = float64(i%2) * 0.9
				ok, err := m.Match(c)
				if err != nil || ok != (i%2 == 1) {
					t.Errorf("customer %d: %v, %v", i, ok, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestImports: the domain package stays free of Kubernetes and the API
// (ARCHITECTURE.md, STYLE.md §10).
func TestImports(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"sigs.k8s.io/controller-runtime", "k8s.io/client-go", "github.com/retention-dev/retention-operator/api/"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("internal/segment depends on %s", dep)
			}
		}
	}
}
