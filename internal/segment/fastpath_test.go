package segment

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/cel-go/common/types"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store/storetest"
)

// noFast returns r without its fast path: CEL alone.
func noFast(r *Rule) *Rule {
	c := *r
	c.fast = nil
	return &c
}

// fastOnly loads c into m as Match does and runs the fast path alone.
func (m *Matcher) fastOnly(c *customer.Scored) tri {
	a := &m.act
	a.c = c
	for i, k := range a.r.attrs {
		m.attrs[i] = c.Attributes[k]
	}
	for i, k := range a.r.customs {
		m.custom[i], m.customOK[i] = c.Scores.Custom[k]
	}
	a.attrs, a.custom, a.customOK = m.attrs, m.custom, m.customOK
	t := a.r.fast(a)
	a.c = nil
	return t
}

// fastSchema is testSchema and storeSchema together, so that one
// population serves testRules, batchRules and the rules below.
var fastSchema = Schema{
	Attributes: map[string]customer.AttributeType{
		"first_name": customer.String, "complaints": customer.Number, "satisfaction": customer.Number,
		"referral_source": customer.String, "vip": customer.Bool, "signup": customer.Timestamp, "country": customer.String,
	},
	CustomScores: []string{"valueAtRisk", "churn_risk"},
}

// fastRules have a fast path: every supported node, alone and combined.
var fastRules = []string{
	// double fields and literals, every operator
	`customer.pAlive < 0.5`, `customer.pAlive <= 0.5`, `customer.pAlive > 0.5`, `customer.pAlive >= 0.5`,
	`customer.pAlive == 0.5`, `customer.pAlive != 0.5`, `0.5 < customer.pAlive`, `0.5 >= customer.pAlive`,
	`customer.pAlive == customer.pAlive`, `customer.pAlive != customer.pAlive`, `customer.pAlive < customer.expectedValue`,
	`customer.expectedValue >= customer.totalSpend`, `customer.recency > customer.age || customer.monetary <= customer.expectedSpend`,
	`customer.expectedPurchases > 1.0 && customer.valuePercentile >= customer.frequencyPercentile && customer.recencyPercentile < 50.0`,
	`customer.pAlive > -1.7976931348623157e308 && customer.expectedValue < 1e300`,
	// int fields and literals
	`customer.frequency >= 1`, `customer.frequency == 3`, `customer.frequency != customer.transactions`,
	`customer.recencyDays <= 365 && customer.tenureDays > customer.recencyDays`,
	`customer.recencyScore >= 4 || customer.frequencyScore == 5 || customer.monetaryScore < 2`,
	`customer.frequency < 9223372036854775807`, `customer.frequency > -9223372036854775808`, `-9223372036854775808 == customer.frequency`,
	// mixed numbers (cel.CrossTypeNumericComparisons)
	`customer.frequency > 1.5`, `customer.recencyDays <= 365.0`, `2.5 < customer.transactions`, `customer.pAlive > customer.frequency`,
	`customer.frequency < 9223372036854775807.0`, `customer.frequency >= -9223372036854775808.0`, `customer.pAlive < 9223372036854775807`,
	`customer.expectedValue > -9223372036854775808`, `customer.totalSpend >= 9007199254740993`, `customer.custom.valueAtRisk <= customer.recencyDays`,
	`customer.frequency > 1u`, `customer.recencyScore <= 3u`, `customer.pAlive >= 0u`, `customer.expectedValue < 18446744073709551615u`,
	`customer.frequency < 18446744073709551615u`, `customer.recencyDays >= 9223372036854775808u`, `9223372036854775808u > customer.tenureDays`,
	`1u < customer.transactions`, `18446744073709551615u > customer.pAlive`, `2u == 2u`, `customer.attributes.complaints >= 2`,
	`customer.attributes.complaints >= 2u`, `customer.attributes.satisfaction < customer.frequency`,
	// strings
	`customer.attributes.first_name == "Niloufar"`, `customer.attributes.first_name != ""`, `"IR" == customer.attributes.country`,
	`customer.attributes.referral_source == "friend" || customer.attributes.vip`, `customer.attributes.first_name < "M"`,
	`customer.attributes.first_name >= "a"`, `customer.contact.locale == "fa-IR" && !customer.contact.optOut`,
	`customer.id != "c0000042"`, `customer.contact.email == "" || customer.contact.phone == "" || customer.contact.timezone == "UTC"`,
	// bools
	`customer.attributes.vip`, `!customer.attributes.vip`, `customer.attributes.vip == true`, `customer.attributes.vip != customer.contact.optOut`,
	`false < customer.attributes.vip`, `customer.attributes.vip >= customer.contact.optOut`, `(customer.pAlive < 0.5) == (customer.frequency > 2)`,
	`(customer.pAlive < 0.5) != customer.attributes.vip`, `true`, `false`, `!false`, `1 < 2`, `"a" == "a"`, `1.0 != 1.0`, `true == false`,
	// numbers attributes and custom scores, has()
	`customer.attributes.complaints > 0.0`, `has(customer.attributes.satisfaction) && customer.attributes.satisfaction <= 2.0`,
	`!has(customer.attributes.first_name) || customer.attributes.first_name == ""`, `customer.custom.valueAtRisk > 100.0`,
	`has(customer.custom.valueAtRisk) && customer.custom.valueAtRisk != 0.0`, `customer.custom.valueAtRisk == customer.custom.valueAtRisk`,
	`customer.custom.churn_risk > 0.5 || !has(customer.custom.churn_risk)`,
	// errors (a wrongly typed attribute) absorbed or not by && and ||
	`customer.attributes.complaints > 1.0 && customer.pAlive < 0.5`, `customer.pAlive < 0.5 && customer.attributes.complaints > 1.0`,
	`customer.attributes.vip || customer.pAlive < 0.5`, `customer.pAlive < 0.5 || customer.attributes.vip`,
	`customer.attributes.first_name == "x" || customer.attributes.complaints == 1.0`, `!(customer.attributes.vip && customer.attributes.complaints < 3.0)`,
	`customer.attributes.vip == customer.attributes.vip`,
	// nesting
	`((customer.pAlive < 0.3 || customer.pAlive > 0.7) && !(customer.frequency == 0)) || (customer.attributes.vip && customer.custom.valueAtRisk >= 50.0)`,
	`!(!(customer.pAlive < 0.5) || !(customer.recencyDays <= 180)) && (customer.attributes.country == "DE" || customer.attributes.country == "IR")`,
}

// slowRules have no fast path: CEL alone evaluates them.
var slowRules = []string{
	`customer.frequency + 1 > 2`, `customer.frequency / 0 > 1`, `100 / (customer.frequency - 3) > 0`, `double(customer.frequency) > 1.0`,
	`int(customer.pAlive) > 0`, `customer.lastPurchase > now - duration("720h")`, `customer.attributes.signup < now`,
	`customer.firstPurchase == customer.lastPurchase`, `customer.attributes.first_name.startsWith("N")`,
	`customer.attributes.first_name.matches("^N")`, `customer.attributes.first_name in ["a", "b"]`,
	`customer.pAlive > 0.5 ? true : false`, `[1, 2].exists(x, x == customer.frequency)`, `size(customer.contact.email) > 3`,
	`customer.contact.email < customer.id`, `customer.attributes.first_name == customer.contact.email`, `has({"a": 1}.a)`,
	`{"a": 1}["a"] == 1`, `type(customer.pAlive) == double`, `b"a" == b"a"`, `customer.pAlive < 0.5 && customer.frequency * 2 > 3`,
	`customer.custom.valueAtRisk > 1.0 || customer.attributes.first_name.contains("a")`, `-customer.frequency < 0`,
	`[customer.pAlive] == [0.5]`, `customer.attributes.complaints != customer.attributes.complaints + 0.0`,
}

// Values that make comparisons interesting.
var (
	edgeDoubles = []float64{
		0, math.Copysign(0, -1), 0.5, 1, -1, 0.3, 1.5, 2, 2.5, 10, 100, 365, 1e300, -1e300,
		math.NaN(), math.Inf(1), math.Inf(-1), math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64,
		9223372036854775807.0, -9223372036854775808.0, 18446744073709551615.0, 9007199254740993, 9007199254740992,
	}
	edgeInt32s  = []int32{0, 1, -1, 2, 3, 5, 180, 365, math.MaxInt32, math.MinInt32}
	edgeInt8s   = []int8{0, 1, 2, 3, 4, 5, math.MaxInt8, math.MinInt8}
	edgeStrings = []string{"", "IR", "DE", "friend", "Niloufar", "a", "M", "fa-IR", "UTC", "c0000042", "نیلوفر", "\xff\xfe", strings.Repeat("x", 300)}
)

// variedCustomers returns n customers mixing edge values, missing and
// wrongly typed attributes and custom scores, and storetest.Customer's.
func variedCustomers(n int) []*customer.Scored {
	rng := rand.New(rand.NewPCG(1, 2))
	dbl := func() float64 {
		switch rng.IntN(3) {
		case 0:
			return edgeDoubles[rng.IntN(len(edgeDoubles))]
		case 1:
			return rng.Float64()
		}
		return rng.Float64() * 200
	}
	i32 := func() int32 {
		if rng.IntN(2) == 0 {
			return edgeInt32s[rng.IntN(len(edgeInt32s))]
		}
		return int32(rng.IntN(400))
	}
	i8 := func() int8 { return edgeInt8s[rng.IntN(len(edgeInt8s))] }
	str := func() string { return edgeStrings[rng.IntN(len(edgeStrings))] }
	// attr returns a value of the declared type most of the time,
	// sometimes nothing, sometimes another type.
	attr := func(t customer.AttributeType) (any, bool) {
		switch r := rng.IntN(20); {
		case r < 5:
			return nil, false
		case r < 7:
			wrong := []any{"many", 1.5, true, int64(3), uint(2), float32(1.5), time.Unix(0, 0), []string{"x"}}
			return wrong[rng.IntN(len(wrong))], true
		}
		switch t {
		case customer.String:
			return str(), true
		case customer.Number:
			switch rng.IntN(5) {
			case 0:
				return int(i32()), true
			case 1:
				return int64(rng.IntN(5)) - 1, true
			case 2:
				return int32(rng.IntN(5)), true
			}
			return dbl(), true
		case customer.Bool:
			return rng.IntN(2) == 0, true
		default:
			return time.Unix(rng.Int64N(2e9), 0).UTC(), true
		}
	}
	var out []*customer.Scored
	for i := range n {
		c := &customer.Scored{}
		if i%4 == 0 {
			storetest.Customer(i, c)
			out = append(out, c)
			continue
		}
		c.ID = str()
		c.Features = customer.Features{
			Frequency: i32(), Recency: dbl(), Age: dbl(), Monetary: dbl(), Transactions: i32(), TotalSpend: dbl(),
			FirstPurchase: time.Unix(rng.Int64N(2e9), 0).UTC(), LastPurchase: time.Unix(rng.Int64N(2e9), 0).UTC(),
			RecencyDays: i32(), TenureDays: i32(),
		}
		c.Scores = customer.Scores{
			PAlive: dbl(), ExpectedPurchases: dbl(), ExpectedSpend: dbl(), ExpectedValue: dbl(),
			RecencyScore: i8(), FrequencyScore: i8(), MonetaryScore: i8(),
			ValuePercentile: dbl(), FrequencyPercentile: dbl(), RecencyPercentile: dbl(),
		}
		c.Contact = customer.Contact{Email: str(), Phone: str(), Timezone: str(), Locale: str(), OptOut: rng.IntN(2) == 0}
		if rng.IntN(10) > 0 {
			c.Attributes = customer.Attributes{}
			for name, t := range fastSchema.Attributes {
				if v, ok := attr(t); ok {
					c.Attributes[name] = v
				}
			}
		}
		if rng.IntN(10) > 0 {
			c.Scores.Custom = map[string]float64{}
			for _, name := range fastSchema.CustomScores {
				if rng.IntN(4) > 0 {
					c.Scores.Custom[name] = dbl()
				}
			}
		}
		out = append(out, c)
	}
	return out
}

// diffRule evaluates r with and without its fast path on every customer
// and fails on any difference: the bool, whether it is an error, the
// message. It also checks each answer of the fast path alone against CEL
// alone, and returns how many customers the fast path answered.
func diffRule(t *testing.T, r *Rule, cs []*customer.Scored) (answered int) {
	t.Helper()
	fast, slow := r.NewMatcher(testNow), noFast(r).NewMatcher(testNow)
	var only *Matcher
	if r.fast != nil {
		only = r.NewMatcher(testNow)
	}
	fails := 0
	for i, c := range cs {
		okF, errF := fast.Match(c)
		okS, errS := slow.Match(c)
		if okF != okS || (errF == nil) != (errS == nil) || (errF != nil && errF.Error() != errS.Error()) {
			t.Errorf("%q on customer %d: fast path (%v, %v), CEL (%v, %v)", r, i, okF, errF, okS, errS)
			fails++
		}
		if only == nil {
			continue
		}
		switch tr := only.fastOnly(c); tr {
		case triTrue, triFalse:
			answered++
			if errS != nil || okS != (tr == triTrue) {
				t.Errorf("%q on customer %d: the fast path alone says %v, CEL (%v, %v)", r, i, tr == triTrue, okS, errS)
				fails++
			}
		}
		if fails > 5 {
			t.Fatalf("%q: too many differences", r)
		}
	}
	return answered
}

// diffBatch evaluates rules as MaterializeBatch does (records, slots,
// chunks) with and without the fast path and compares the results.
func diffBatch(t *testing.T, rules []*Rule, cs []*customer.Scored) {
	t.Helper()
	run := func(rules []*Rule) []chunkResult {
		segs := make([]BatchSegment, len(rules))
		for k, r := range rules {
			segs[k] = BatchSegment{Segment: strconv.Itoa(k), Rule: r}
		}
		l := newLayout(segs)
		ms := l.matchers(testNow)
		ch := &chunk{recs: make([]record, chunkSize), segs: make([]chunkResult, len(rules))}
		for i := range ch.recs {
			ch.recs[i] = l.newRecord()
		}
		var out []chunkResult
		for lo := 0; lo < len(cs); lo += chunkSize {
			ch.n = 0
			for _, c := range cs[lo:min(lo+chunkSize, len(cs))] {
				ch.recs[ch.n].copyFrom(l, c)
				ch.n++
			}
			ch.evaluate(l, ms)
			out = append(out, ch.segs...)
		}
		return out
	}
	slow := make([]*Rule, len(rules))
	for k, r := range rules {
		slow[k] = noFast(r)
	}
	a, b := run(rules), run(slow)
	for i := range a {
		x, y := a[i], b[i]
		if x.bits != y.bits || x.errors != y.errors || x.firstErr != y.firstErr || x.firstErrAt != y.firstErrAt ||
			math.Float64bits(x.value) != math.Float64bits(y.value) {
			t.Errorf("%q, chunk %d: fast path %+v, CEL %+v", rules[i%len(rules)], i/len(rules), x, y)
		}
	}
}

// TestFastPathDifferential compares the fast path with CEL alone on
// testRules, batchRules(200) and fastRules over thousands of varied
// customers, through Match and through a batch's chunks.
func TestFastPathDifferential(t *testing.T) {
	cs := variedCustomers(4000)
	env, err := NewEnv(fastSchema, EnvOptions{})
	if err != nil {
		t.Fatal(err)
	}
	groups := []struct {
		name  string
		rules []string
		// fast: every rule must have a fast path
		fast bool
	}{
		{"testRules", func() []string {
			var out []string
			for _, tr := range testRules {
				out = append(out, tr.rule)
			}
			return out
		}(), false},
		{"batchRules", batchRules(200), true},
		{"fastRules", fastRules, true},
		{"slowRules", slowRules, false},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			var rules []*Rule
			withFast := 0
			for _, src := range g.rules {
				r, err := env.Compile(src)
				if err != nil {
					t.Fatalf("Compile(%q): %v", src, err)
				}
				rules = append(rules, r)
				if r.fast != nil {
					withFast++
				} else if g.fast {
					t.Errorf("%q: no fast path", src)
				}
				answered := diffRule(t, r, cs)
				if r.fast != nil && answered < len(cs)/2 {
					t.Errorf("%q: the fast path answered %d of %d customers, want most", src, answered, len(cs))
				}
			}
			t.Logf("%d of %d rules have a fast path", withFast, len(g.rules))
			diffBatch(t, rules, cs)
		})
	}
}

// TestFastPathCoverage pins which rules have a fast path: all of
// fastRules and batchRules(200), none of slowRules, and testRules but
// the division.
func TestFastPathCoverage(t *testing.T) {
	env, err := NewEnv(fastSchema, EnvOptions{})
	if err != nil {
		t.Fatal(err)
	}
	has := func(src string) bool {
		r, err := env.Compile(src)
		if err != nil {
			t.Fatalf("Compile(%q): %v", src, err)
		}
		return r.fast != nil
	}
	for _, src := range slowRules {
		if has(src) {
			t.Errorf("%q has a fast path, want none", src)
		}
	}
	n := 0
	for _, src := range batchRules(200) {
		if has(src) {
			n++
		}
	}
	if n != 200 {
		t.Errorf("%d of batchRules(200) have a fast path, want 200", n)
	}
	for _, tr := range testRules {
		if want := !strings.Contains(tr.rule, "/"); has(tr.rule) != want {
			t.Errorf("%q: fast path %v, want %v", tr.rule, !want, want)
		}
	}
	// Cost-tracked rules never: the run-time limit could fail them.
	r, err := env.Compile(`customer.attributes.first_name == customer.contact.email`)
	if err != nil {
		t.Fatal(err)
	}
	if !r.CostTracked() || r.fast != nil {
		t.Errorf("a string comparison of two fields: tracked %v, fast path %v; want tracked, none", r.CostTracked(), r.fast != nil)
	}
}

// TestFastPathNativeFields checks the fast path's field readers against
// customercel's Get: every built-in field but the timestamps has one,
// with the field's type, and reads the same value.
func TestFastPathNativeFields(t *testing.T) {
	cs := variedCustomers(500)
	seen := 0
	for _, b := range builtins {
		f, ok := nativeFields[b.Name]
		if b.Type.IsExactType(types.TimestampType) {
			if ok {
				t.Errorf("%s: a timestamp with a native reader", b.Name)
			}
			continue
		}
		if !ok {
			t.Errorf("%s: no native reader", b.Name)
			continue
		}
		seen++
		if f.kind.celType() == nil || !b.Type.IsExactType(f.kind.celType()) {
			t.Errorf("%s: native kind %d, field type %s", b.Name, f.kind, b.Type)
			continue
		}
		for i, c := range cs {
			a := &activation{c: c}
			var native any
			switch f.kind {
			case kInt:
				x, _ := f.i(a)
				native = types.Int(x)
			case kDouble:
				x, _ := f.d(a)
				native = types.Double(x)
			case kString:
				x, _ := f.s(a)
				native = types.String(x)
			case kBool:
				native = types.Bool(f.b(a) == triTrue)
			}
			got := b.Get(c)
			same := got == native
			if d, ok := got.(types.Double); ok && math.IsNaN(float64(d)) {
				same = math.IsNaN(float64(native.(types.Double)))
			}
			if !same {
				t.Errorf("%s of customer %d: native %v, Get %v", b.Name, i, native, got)
				break
			}
		}
	}
	if seen != len(nativeFields) {
		t.Errorf("%d native readers, %d fields with one", len(nativeFields), seen)
	}
}

// FuzzFastPath assembles a rule from fuzzed pieces (operators, fields,
// attributes, custom scores and literals of fastSchema) and a customer
// from fuzzed values, and compares the fast path with CEL alone. Its
// seeds are in testdata/fuzz/FuzzFastPath.
func FuzzFastPath(f *testing.F) {
	f.Add([]byte{3, 0, 1, 2}, int64(1), 0.5, "IR", 0.25, 12.5, int32(3), int32(180), 0.75, uint16(0x1234), 2.0, "Niloufar")
	f.Add([]byte{0, 3, 5, 7, 2, 4, 1, 3, 9, 11}, int64(math.MaxInt64), math.NaN(), "", math.Inf(1), -0.0, int32(math.MinInt32), int32(-1), math.NaN(), uint16(0xffff), math.Inf(-1), "\xff")
	env, err := NewEnv(fastSchema, EnvOptions{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, prog []byte, i1 int64, d1 float64, s1 string, pAlive, ev float64, freq, rd int32, risk float64, flags uint16, num float64, name string) {
		g := &ruleGen{prog: prog, i1: i1, d1: d1, s1: s1}
		src := g.expr(0)
		r, err := env.Compile(src)
		if err != nil {
			return // a type error, most likely: CEL alone would not run it either
		}
		c := &customer.Scored{ID: name}
		c.Features.Frequency, c.Features.RecencyDays, c.Features.Transactions = freq, rd, int32(flags>>4)
		c.Scores.PAlive, c.Scores.ExpectedValue, c.Scores.ExpectedSpend = pAlive, ev, num
		c.Contact.OptOut, c.Contact.Locale = flags&1 != 0, s1
		if flags&2 != 0 {
			c.Scores.Custom = map[string]float64{"valueAtRisk": risk}
		}
		c.Attributes = customer.Attributes{}
		// complaints: missing, a double, an int, an int64, a string (an error)
		switch (flags >> 2) % 5 {
		case 1:
			c.Attributes["complaints"] = num
		case 2:
			c.Attributes["complaints"] = int(freq)
		case 3:
			c.Attributes["complaints"] = i1
		case 4:
			c.Attributes["complaints"] = s1
		}
		// vip: missing, true, false, a string (an error)
		switch (flags >> 5) % 4 {
		case 1:
			c.Attributes["vip"] = true
		case 2:
			c.Attributes["vip"] = false
		case 3:
			c.Attributes["vip"] = s1
		}
		// first_name: missing, a string, a bool (an error)
		switch (flags >> 7) % 3 {
		case 1:
			c.Attributes["first_name"] = name
		case 2:
			c.Attributes["first_name"] = true
		}
		okF, errF := r.NewMatcher(testNow).Match(c)
		okS, errS := noFast(r).NewMatcher(testNow).Match(c)
		if okF != okS || (errF == nil) != (errS == nil) || (errF != nil && errF.Error() != errS.Error()) {
			t.Fatalf("%q: fast path (%v, %v), CEL (%v, %v)", src, okF, errF, okS, errS)
		}
		if r.fast != nil {
			if tr := r.NewMatcher(testNow).fastOnly(c); tr != triUnknown && (errS != nil || okS != (tr == triTrue)) {
				t.Fatalf("%q: the fast path alone says %v, CEL (%v, %v)", src, tr == triTrue, okS, errS)
			}
		}
	})
}

// ruleGen writes a rule over fastSchema, steered by prog's bytes.
type ruleGen struct {
	prog []byte
	pos  int
	i1   int64
	d1   float64
	s1   string
}

func (g *ruleGen) next() int {
	if g.pos >= len(g.prog) {
		return 0
	}
	g.pos++
	return int(g.prog[g.pos-1])
}

func (g *ruleGen) expr(depth int) string {
	n := g.next()
	if depth >= 4 {
		n = 3 + n%5
	}
	switch n % 8 {
	case 0:
		return "(" + g.expr(depth+1) + " && " + g.expr(depth+1) + ")"
	case 1:
		return "(" + g.expr(depth+1) + " || " + g.expr(depth+1) + ")"
	case 2:
		return "!(" + g.expr(depth+1) + ")"
	case 3:
		return g.atom("bool", depth)
	}
	op := []string{"<", "<=", ">", ">=", "==", "!="}[g.next()%6]
	class := []string{"num", "num", "str", "bool"}[g.next()%4]
	return g.atom(class, depth) + " " + op + " " + g.atom(class, depth)
}

func (g *ruleGen) atom(class string, depth int) string {
	var atoms []string
	switch class {
	case "num":
		atoms = []string{
			"customer.pAlive", "customer.expectedValue", "customer.expectedSpend", "customer.frequency", "customer.recencyDays",
			"customer.transactions", "customer.custom.valueAtRisk", "customer.attributes.complaints",
			strconv.FormatInt(g.i1, 10), fmt.Sprintf("%du", uint64(g.i1)), celDouble(g.d1), "0", "0.0", "1", "-1.0",
			"9223372036854775807", "-9223372036854775808", "9223372036854775807.0", "18446744073709551615u", "1e300",
		}
	case "str":
		atoms = []string{"customer.attributes.first_name", "customer.contact.locale", "customer.id", strconv.Quote(g.s1), `""`, `"IR"`}
	default:
		atoms = []string{"customer.attributes.vip", "customer.contact.optOut", "has(customer.attributes.complaints)",
			"has(customer.custom.valueAtRisk)", "true", "false"}
		if depth < 4 && g.next()%4 == 0 {
			return "(" + g.expr(depth+1) + ")"
		}
	}
	return atoms[g.next()%len(atoms)]
}

// celDouble writes d as a CEL double literal (NaN and the infinities
// have none: 1e309 parses as +Inf... or not; keep it finite).
func celDouble(d float64) string {
	if math.IsNaN(d) || math.IsInf(d, 0) {
		return "1.7976931348623157e308"
	}
	s := strconv.FormatFloat(d, 'e', -1, 64)
	return s
}
