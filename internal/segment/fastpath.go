package segment

import (
	"math"

	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types"

	"github.com/retention-dev/retention-operator/internal/customer"
)

// The fast path: a rule built only from variables, scalar literals,
// comparisons and logical operators is also compiled into a tree of Go
// closures over the activation, which answers true, false or "unknown".
// A known answer is the answer; unknown means the closures met something
// they do not decide themselves (an attribute stored with another type
// than declared, which CEL reports as an error), and the customer is
// evaluated by the CEL program as before. So the fast path never invents
// a result: it answers only when every operand it needed read the value
// CEL reads (a missing attribute is its zero value there too), never an
// error, and its operators are CEL's own on those values (docs/design.md,
// "Segments").
//
// Unsupported, so evaluated by CEL alone: arithmetic, conversions,
// functions, macros but has(), `in`, the ternary, lists and maps,
// timestamps, durations and now, and every cost-tracked rule.

// tri is a fast-path result.
type tri uint8

const (
	triFalse tri = iota
	triTrue
	triUnknown // let CEL decide
)

func triOf(b bool) tri {
	if b {
		return triTrue
	}
	return triFalse
}

// Closures of the fast path. Operand readers report ok == false when the
// value is one CEL would turn into an error.
type (
	fastBool   func(a *activation) tri
	fastInt    func(a *activation) (int64, bool)
	fastUint   func(a *activation) (uint64, bool)
	fastDouble func(a *activation) (float64, bool)
	fastString func(a *activation) (string, bool)
)

// kind is the CEL type of a fast-path operand.
type kind uint8

const (
	kNone kind = iota
	kInt
	kUint
	kDouble
	kString
	kBool
)

func (k kind) celType() *types.Type {
	switch k {
	case kInt:
		return types.IntType
	case kUint:
		return types.UintType
	case kDouble:
		return types.DoubleType
	case kString:
		return types.StringType
	case kBool:
		return types.BoolType
	}
	return nil
}

func kindOf(t *types.Type) kind {
	for _, k := range []kind{kInt, kUint, kDouble, kString, kBool} {
		if t != nil && t.IsExactType(k.celType()) {
			return k
		}
	}
	return kNone
}

// operand is a compiled scalar expression: exactly one reader is set, by
// kind. A literal is also kept as a constant, so comparisons with it read
// one operand only.
type operand struct {
	kind  kind
	i     fastInt
	u     fastUint
	d     fastDouble
	s     fastString
	b     fastBool
	konst bool
	ci    int64
	cu    uint64
	cd    float64
	cs    string
}

// nativeFields read the built-in fields of the activation's customer
// without boxing them; each must return what customercel's Get does
// (TestFastPathNativeFields checks it).
var nativeFields = map[string]operand{
	"customer.id": {kind: kString, s: func(a *activation) (string, bool) { return a.c.ID, true }},

	"customer.frequency":    {kind: kInt, i: func(a *activation) (int64, bool) { return int64(a.c.Features.Frequency), true }},
	"customer.recency":      {kind: kDouble, d: func(a *activation) (float64, bool) { return a.c.Features.Recency, true }},
	"customer.age":          {kind: kDouble, d: func(a *activation) (float64, bool) { return a.c.Features.Age, true }},
	"customer.monetary":     {kind: kDouble, d: func(a *activation) (float64, bool) { return a.c.Features.Monetary, true }},
	"customer.transactions": {kind: kInt, i: func(a *activation) (int64, bool) { return int64(a.c.Features.Transactions), true }},
	"customer.totalSpend":   {kind: kDouble, d: func(a *activation) (float64, bool) { return a.c.Features.TotalSpend, true }},
	"customer.recencyDays":  {kind: kInt, i: func(a *activation) (int64, bool) { return int64(a.c.Features.RecencyDays), true }},
	"customer.tenureDays":   {kind: kInt, i: func(a *activation) (int64, bool) { return int64(a.c.Features.TenureDays), true }},

	"customer.pAlive":              {kind: kDouble, d: func(a *activation) (float64, bool) { return a.c.Scores.PAlive, true }},
	"customer.expectedPurchases":   {kind: kDouble, d: func(a *activation) (float64, bool) { return a.c.Scores.ExpectedPurchases, true }},
	"customer.expectedSpend":       {kind: kDouble, d: func(a *activation) (float64, bool) { return a.c.Scores.ExpectedSpend, true }},
	"customer.expectedValue":       {kind: kDouble, d: func(a *activation) (float64, bool) { return a.c.Scores.ExpectedValue, true }},
	"customer.recencyScore":        {kind: kInt, i: func(a *activation) (int64, bool) { return int64(a.c.Scores.RecencyScore), true }},
	"customer.frequencyScore":      {kind: kInt, i: func(a *activation) (int64, bool) { return int64(a.c.Scores.FrequencyScore), true }},
	"customer.monetaryScore":       {kind: kInt, i: func(a *activation) (int64, bool) { return int64(a.c.Scores.MonetaryScore), true }},
	"customer.valuePercentile":     {kind: kDouble, d: func(a *activation) (float64, bool) { return a.c.Scores.ValuePercentile, true }},
	"customer.frequencyPercentile": {kind: kDouble, d: func(a *activation) (float64, bool) { return a.c.Scores.FrequencyPercentile, true }},
	"customer.recencyPercentile":   {kind: kDouble, d: func(a *activation) (float64, bool) { return a.c.Scores.RecencyPercentile, true }},

	"customer.contact.email":    {kind: kString, s: func(a *activation) (string, bool) { return a.c.Contact.Email, true }},
	"customer.contact.phone":    {kind: kString, s: func(a *activation) (string, bool) { return a.c.Contact.Phone, true }},
	"customer.contact.timezone": {kind: kString, s: func(a *activation) (string, bool) { return a.c.Contact.Timezone, true }},
	"customer.contact.locale":   {kind: kString, s: func(a *activation) (string, bool) { return a.c.Contact.Locale, true }},
	"customer.contact.optOut":   {kind: kBool, b: func(a *activation) tri { return triOf(a.c.Contact.OptOut) }},
}

// cmpOp is a comparison operator.
type cmpOp uint8

const (
	opLT cmpOp = iota
	opLE
	opGT
	opGE
	opEQ
	opNE
)

// flip is the operator with its operands swapped: a < b is b > a.
func (op cmpOp) flip() cmpOp {
	switch op {
	case opLT:
		return opGT
	case opLE:
		return opGE
	case opGT:
		return opLT
	case opGE:
		return opLE
	}
	return op
}

// test applies op to a three-way comparison.
func (op cmpOp) test(c int) bool {
	switch op {
	case opLT:
		return c < 0
	case opLE:
		return c <= 0
	case opGT:
		return c > 0
	case opGE:
		return c >= 0
	case opEQ:
		return c == 0
	}
	return c != 0
}

var cmpFunctions = map[string]cmpOp{
	operators.Less: opLT, operators.LessEquals: opLE, operators.Greater: opGT, operators.GreaterEquals: opGE,
	operators.Equals: opEQ, operators.NotEquals: opNE,
}

// ordering is what an ordering overload compares.
type ordering struct {
	op       cmpOp
	lhs, rhs kind
}

// orderings are the overloads of <, <=, > and >= the fast path
// implements, by the id the checker resolved: the checker, not the fast
// path, decides whether ints and doubles compare (the environment's
// cel.CrossTypeNumericComparisons).
var orderings = map[string]ordering{
	overloads.LessBool:         {opLT, kBool, kBool},
	overloads.LessInt64:        {opLT, kInt, kInt},
	overloads.LessInt64Double:  {opLT, kInt, kDouble},
	overloads.LessInt64Uint64:  {opLT, kInt, kUint},
	overloads.LessUint64:       {opLT, kUint, kUint},
	overloads.LessUint64Double: {opLT, kUint, kDouble},
	overloads.LessUint64Int64:  {opLT, kUint, kInt},
	overloads.LessDouble:       {opLT, kDouble, kDouble},
	overloads.LessDoubleInt64:  {opLT, kDouble, kInt},
	overloads.LessDoubleUint64: {opLT, kDouble, kUint},
	overloads.LessString:       {opLT, kString, kString},

	overloads.LessEqualsBool:         {opLE, kBool, kBool},
	overloads.LessEqualsInt64:        {opLE, kInt, kInt},
	overloads.LessEqualsInt64Double:  {opLE, kInt, kDouble},
	overloads.LessEqualsInt64Uint64:  {opLE, kInt, kUint},
	overloads.LessEqualsUint64:       {opLE, kUint, kUint},
	overloads.LessEqualsUint64Double: {opLE, kUint, kDouble},
	overloads.LessEqualsUint64Int64:  {opLE, kUint, kInt},
	overloads.LessEqualsDouble:       {opLE, kDouble, kDouble},
	overloads.LessEqualsDoubleInt64:  {opLE, kDouble, kInt},
	overloads.LessEqualsDoubleUint64: {opLE, kDouble, kUint},
	overloads.LessEqualsString:       {opLE, kString, kString},

	overloads.GreaterBool:         {opGT, kBool, kBool},
	overloads.GreaterInt64:        {opGT, kInt, kInt},
	overloads.GreaterInt64Double:  {opGT, kInt, kDouble},
	overloads.GreaterInt64Uint64:  {opGT, kInt, kUint},
	overloads.GreaterUint64:       {opGT, kUint, kUint},
	overloads.GreaterUint64Double: {opGT, kUint, kDouble},
	overloads.GreaterUint64Int64:  {opGT, kUint, kInt},
	overloads.GreaterDouble:       {opGT, kDouble, kDouble},
	overloads.GreaterDoubleInt64:  {opGT, kDouble, kInt},
	overloads.GreaterDoubleUint64: {opGT, kDouble, kUint},
	overloads.GreaterString:       {opGT, kString, kString},

	overloads.GreaterEqualsBool:         {opGE, kBool, kBool},
	overloads.GreaterEqualsInt64:        {opGE, kInt, kInt},
	overloads.GreaterEqualsInt64Double:  {opGE, kInt, kDouble},
	overloads.GreaterEqualsInt64Uint64:  {opGE, kInt, kUint},
	overloads.GreaterEqualsUint64:       {opGE, kUint, kUint},
	overloads.GreaterEqualsUint64Double: {opGE, kUint, kDouble},
	overloads.GreaterEqualsUint64Int64:  {opGE, kUint, kInt},
	overloads.GreaterEqualsDouble:       {opGE, kDouble, kDouble},
	overloads.GreaterEqualsDoubleInt64:  {opGE, kDouble, kInt},
	overloads.GreaterEqualsDoubleUint64: {opGE, kDouble, kUint},
	overloads.GreaterEqualsString:       {opGE, kString, kString},
}

// fastBuilder compiles a checked rule into the fast path.
type fastBuilder struct {
	a *celast.AST
	r *Rule
}

// buildFast returns the rule's fast path, or nil when some node of the
// rule is not one the fast path implements.
func buildFast(a *celast.AST, r *Rule) fastBool {
	if r.tracked {
		// The run-time cost limit may fail an evaluation the fast path
		// would answer.
		return nil
	}
	fb := &fastBuilder{a: a, r: r}
	op, ok := fb.operand(a.Expr())
	if !ok || op.kind != kBool {
		return nil
	}
	return op.b
}

// call returns e's function and arguments when e is a global call whose
// checked overloads are exactly ids (any single one when ids is empty).
func (fb *fastBuilder) call(e celast.Expr) (fn string, args []celast.Expr, overload string, ok bool) {
	if e.Kind() != celast.CallKind {
		return "", nil, "", false
	}
	c := e.AsCall()
	if c.IsMemberFunction() {
		return "", nil, "", false
	}
	ids := fb.a.GetOverloadIDs(e.ID())
	if len(ids) != 1 {
		return "", nil, "", false
	}
	return c.FunctionName(), c.Args(), ids[0], true
}

// operand compiles e, checking its kind against the checker's type.
func (fb *fastBuilder) operand(e celast.Expr) (operand, bool) {
	k := kindOf(fb.a.GetType(e.ID()))
	if k == kNone {
		return operand{}, false
	}
	var op operand
	var ok bool
	switch e.Kind() {
	case celast.LiteralKind:
		op, ok = literal(e)
	case celast.IdentKind:
		op, ok = fb.variable(e)
	case celast.CallKind:
		var b fastBool
		if b = fb.boolCall(e); b != nil {
			op, ok = operand{kind: kBool, b: b}, true
		}
	}
	if !ok || op.kind != k {
		return operand{}, false
	}
	return op, true
}

func literal(e celast.Expr) (operand, bool) {
	switch v := e.AsLiteral().(type) {
	case types.Int:
		c := int64(v)
		return operand{kind: kInt, konst: true, ci: c, i: func(*activation) (int64, bool) { return c, true }}, true
	case types.Uint:
		c := uint64(v)
		return operand{kind: kUint, konst: true, cu: c, u: func(*activation) (uint64, bool) { return c, true }}, true
	case types.Double:
		c := float64(v)
		return operand{kind: kDouble, konst: true, cd: c, d: func(*activation) (float64, bool) { return c, true }}, true
	case types.String:
		c := string(v)
		return operand{kind: kString, konst: true, cs: c, s: func(*activation) (string, bool) { return c, true }}, true
	case types.Bool:
		c := triOf(bool(v))
		return operand{kind: kBool, b: func(*activation) tri { return c }}, true
	}
	return operand{}, false
}

// variable compiles a variable the activation resolves, reading what
// activation.ResolveName would, unboxed.
func (fb *fastBuilder) variable(e celast.Expr) (operand, bool) {
	ref, ok := fb.a.ReferenceMap()[e.ID()]
	if !ok || ref.Value != nil {
		return operand{}, false
	}
	b, ok := fb.r.bindings[ref.Name]
	if !ok {
		return operand{}, false
	}
	slot := b.slot
	switch b.kind {
	case varField:
		f, ok := nativeFields[ref.Name]
		if !ok || b.field == nil || b.field.Name != ref.Name || kindOf(b.field.Type) != f.kind {
			return operand{}, false
		}
		return f, true
	case varAttr:
		return attrOperand(b)
	case varHasAttr:
		return operand{kind: kBool, b: func(a *activation) tri { return triOf(a.attrs[slot] != nil) }}, true
	case varCustom:
		// ResolveName reads the slot whether or not the customer has the
		// score: a missing one is 0.0 there.
		return operand{kind: kDouble, d: func(a *activation) (float64, bool) { return a.custom[slot], true }}, true
	case varHasCustom:
		return operand{kind: kBool, b: func(a *activation) tri { return triOf(a.customOK[slot]) }}, true
	}
	return operand{}, false
}

// attrOperand reads an attribute as attrValue converts it: a missing one
// is attrValue's zero value (taken from attrValue itself), a value of the
// declared type is itself, anything else is an error there, so unknown
// here.
func attrOperand(b *binding) (operand, bool) {
	slot := b.slot
	zero := attrValue(b, nil)
	switch b.atype {
	case customer.String:
		z, ok := zero.(types.String)
		if !ok {
			return operand{}, false
		}
		zs := string(z)
		return operand{kind: kString, s: func(a *activation) (string, bool) {
			v := a.attrs[slot]
			if v == nil {
				return zs, true
			}
			s, ok := v.(string)
			return s, ok
		}}, true
	case customer.Number:
		z, ok := zero.(types.Double)
		if !ok {
			return operand{}, false
		}
		zd := float64(z)
		return operand{kind: kDouble, d: func(a *activation) (float64, bool) {
			switch n := a.attrs[slot].(type) {
			case nil:
				return zd, true
			case float64:
				return n, true
			case int:
				return float64(n), true
			case int64:
				return float64(n), true
			case int32:
				return float64(n), true
			}
			return 0, false
		}}, true
	case customer.Bool:
		z, ok := zero.(types.Bool)
		if !ok {
			return operand{}, false
		}
		zb := triOf(bool(z))
		return operand{kind: kBool, b: func(a *activation) tri {
			switch x := a.attrs[slot].(type) {
			case nil:
				return zb
			case bool:
				return triOf(x)
			}
			return triUnknown
		}}, true
	}
	return operand{}, false
}

// boolCall compiles a logical operator or a comparison, or returns nil.
func (fb *fastBuilder) boolCall(e celast.Expr) fastBool {
	fn, args, overload, ok := fb.call(e)
	if !ok {
		return nil
	}
	switch {
	case fn == operators.LogicalAnd && overload == overloads.LogicalAnd && len(args) == 2:
		l, r := fb.boolArg(args[0]), fb.boolArg(args[1])
		if l == nil || r == nil {
			return nil
		}
		return and(l, r)
	case fn == operators.LogicalOr && overload == overloads.LogicalOr && len(args) == 2:
		l, r := fb.boolArg(args[0]), fb.boolArg(args[1])
		if l == nil || r == nil {
			return nil
		}
		return or(l, r)
	case fn == operators.LogicalNot && overload == overloads.LogicalNot && len(args) == 1:
		x := fb.boolArg(args[0])
		if x == nil {
			return nil
		}
		return func(a *activation) tri {
			switch x(a) {
			case triFalse:
				return triTrue
			case triTrue:
				return triFalse
			}
			return triUnknown
		}
	}
	op, isCmp := cmpFunctions[fn]
	if !isCmp || len(args) != 2 {
		return nil
	}
	l, ok := fb.operand(args[0])
	if !ok {
		return nil
	}
	r, ok := fb.operand(args[1])
	if !ok {
		return nil
	}
	if op == opEQ || op == opNE {
		// One overload, over any two values of the same type.
		want := overloads.Equals
		if op == opNE {
			want = overloads.NotEquals
		}
		if overload != want || l.kind != r.kind {
			return nil
		}
		return compare(op, l, r)
	}
	o, ok := orderings[overload]
	if !ok || o.op != op || o.lhs != l.kind || o.rhs != r.kind {
		return nil
	}
	return compare(op, l, r)
}

func (fb *fastBuilder) boolArg(e celast.Expr) fastBool {
	op, ok := fb.operand(e)
	if !ok || op.kind != kBool {
		return nil
	}
	return op.b
}

// and is CEL's &&: false if either side is false, whatever the other
// (even an error), true if both are true, else CEL decides.
func and(l, r fastBool) fastBool {
	return func(a *activation) tri {
		x := l(a)
		if x == triFalse {
			return triFalse
		}
		y := r(a)
		if y == triFalse {
			return triFalse
		}
		if x == triTrue && y == triTrue {
			return triTrue
		}
		return triUnknown
	}
}

// or is CEL's ||: true if either side is true, whatever the other.
func or(l, r fastBool) fastBool {
	return func(a *activation) tri {
		x := l(a)
		if x == triTrue {
			return triTrue
		}
		y := r(a)
		if y == triTrue {
			return triTrue
		}
		if x == triFalse && y == triFalse {
			return triFalse
		}
		return triUnknown
	}
}

// compare compiles l op r; the kinds are ones the checker allows for op.
//
// CEL's comparisons: ==, != and the orderings of ints, uints and strings
// are Go's. Doubles: CEL's orderings are false when either side is NaN
// (the standard library's binding tests it before comparing), == is
// false and != true with NaN, as in Go. Mixed numeric orderings follow
// cel-go's compareDoubleInt & co. (common/types/compare.go), copied in
// cmpDoubleInt & co. below, after the same NaN test.
func compare(op cmpOp, l, r operand) fastBool {
	switch {
	case l.kind != r.kind:
		return mixed(op, l, r)
	case l.kind == kInt:
		return ordered(op, l.i, r.i, l.konst, l.ci, r.konst, r.ci)
	case l.kind == kUint:
		return ordered(op, l.u, r.u, l.konst, l.cu, r.konst, r.cu)
	case l.kind == kDouble:
		return ordered(op, l.d, r.d, l.konst, l.cd, r.konst, r.cd)
	case l.kind == kString:
		return ordered(op, l.s, r.s, l.konst, l.cs, r.konst, r.cs)
	case l.kind == kBool:
		return boolCompare(op, l.b, r.b)
	}
	return nil
}

// ordered compiles a comparison of two operands of one ordered Go type,
// specialised for a constant on either side (read once, at compile time).
func ordered[T int64 | uint64 | float64 | string](op cmpOp, l, r func(*activation) (T, bool), lk bool, lc T, rk bool, rc T) fastBool {
	if lk && !rk {
		return ordered(op.flip(), r, l, rk, rc, lk, lc)
	}
	if rk {
		c := rc
		switch op {
		case opLT:
			return func(a *activation) tri {
				x, ok := l(a)
				if !ok {
					return triUnknown
				}
				return triOf(x < c)
			}
		case opLE:
			return func(a *activation) tri {
				x, ok := l(a)
				if !ok {
					return triUnknown
				}
				return triOf(x <= c)
			}
		case opGT:
			return func(a *activation) tri {
				x, ok := l(a)
				if !ok {
					return triUnknown
				}
				return triOf(x > c)
			}
		case opGE:
			return func(a *activation) tri {
				x, ok := l(a)
				if !ok {
					return triUnknown
				}
				return triOf(x >= c)
			}
		case opEQ:
			return func(a *activation) tri {
				x, ok := l(a)
				if !ok {
					return triUnknown
				}
				return triOf(x == c)
			}
		default:
			return func(a *activation) tri {
				x, ok := l(a)
				if !ok {
					return triUnknown
				}
				return triOf(x != c)
			}
		}
	}
	read := func(a *activation) (x, y T, ok bool) {
		x, ok1 := l(a)
		y, ok2 := r(a)
		return x, y, ok1 && ok2
	}
	switch op {
	case opLT:
		return func(a *activation) tri {
			x, y, ok := read(a)
			if !ok {
				return triUnknown
			}
			return triOf(x < y)
		}
	case opLE:
		return func(a *activation) tri {
			x, y, ok := read(a)
			if !ok {
				return triUnknown
			}
			return triOf(x <= y)
		}
	case opGT:
		return func(a *activation) tri {
			x, y, ok := read(a)
			if !ok {
				return triUnknown
			}
			return triOf(x > y)
		}
	case opGE:
		return func(a *activation) tri {
			x, y, ok := read(a)
			if !ok {
				return triUnknown
			}
			return triOf(x >= y)
		}
	case opEQ:
		return func(a *activation) tri {
			x, y, ok := read(a)
			if !ok {
				return triUnknown
			}
			return triOf(x == y)
		}
	default:
		return func(a *activation) tri {
			x, y, ok := read(a)
			if !ok {
				return triUnknown
			}
			return triOf(x != y)
		}
	}
}

// boolCompare compiles a comparison of bools: false < true.
func boolCompare(op cmpOp, l, r fastBool) fastBool {
	return func(a *activation) tri {
		x, y := l(a), r(a)
		if x == triUnknown || y == triUnknown {
			return triUnknown
		}
		c := 0
		switch {
		case x == triFalse && y == triTrue:
			c = -1
		case x == triTrue && y == triFalse:
			c = 1
		}
		return triOf(op.test(c))
	}
}

// mixed compiles an ordering of two numbers of different kinds.
func mixed(op cmpOp, l, r operand) fastBool {
	var three func(a *activation) (c int, ok, nan bool)
	switch {
	case l.kind == kInt && r.kind == kDouble:
		three = func(a *activation) (int, bool, bool) {
			x, ok1 := l.i(a)
			y, ok2 := r.d(a)
			return -cmpDoubleInt(y, x), ok1 && ok2, math.IsNaN(y)
		}
	case l.kind == kDouble && r.kind == kInt:
		three = func(a *activation) (int, bool, bool) {
			x, ok1 := l.d(a)
			y, ok2 := r.i(a)
			return cmpDoubleInt(x, y), ok1 && ok2, math.IsNaN(x)
		}
	case l.kind == kUint && r.kind == kDouble:
		three = func(a *activation) (int, bool, bool) {
			x, ok1 := l.u(a)
			y, ok2 := r.d(a)
			return -cmpDoubleUint(y, x), ok1 && ok2, math.IsNaN(y)
		}
	case l.kind == kDouble && r.kind == kUint:
		three = func(a *activation) (int, bool, bool) {
			x, ok1 := l.d(a)
			y, ok2 := r.u(a)
			return cmpDoubleUint(x, y), ok1 && ok2, math.IsNaN(x)
		}
	case l.kind == kInt && r.kind == kUint:
		three = func(a *activation) (int, bool, bool) {
			x, ok1 := l.i(a)
			y, ok2 := r.u(a)
			return cmpIntUint(x, y), ok1 && ok2, false
		}
	case l.kind == kUint && r.kind == kInt:
		three = func(a *activation) (int, bool, bool) {
			x, ok1 := l.u(a)
			y, ok2 := r.i(a)
			return -cmpIntUint(y, x), ok1 && ok2, false
		}
	default:
		return nil
	}
	if op == opEQ || op == opNE {
		return nil // the checker has no mixed equality; CEL's differs
	}
	return func(a *activation) tri {
		c, ok, nan := three(a)
		switch {
		case !ok:
			return triUnknown
		case nan:
			return triFalse
		}
		return triOf(op.test(c))
	}
}

// cmpDoubleInt is cel-go's compareDoubleInt (d is not NaN).
func cmpDoubleInt(d float64, i int64) int {
	if d < math.MinInt64 {
		return -1
	}
	if d > math.MaxInt64 {
		return 1
	}
	return cmpDouble(d, float64(i))
}

// cmpDoubleUint is cel-go's compareDoubleUint (d is not NaN).
func cmpDoubleUint(d float64, u uint64) int {
	if d < 0 {
		return -1
	}
	if d > math.MaxUint64 {
		return 1
	}
	return cmpDouble(d, float64(u))
}

// cmpIntUint is cel-go's compareIntUint.
func cmpIntUint(i int64, u uint64) int {
	if i < 0 || u > math.MaxInt64 {
		return -1
	}
	cmp := i - int64(u)
	if cmp < 0 {
		return -1
	}
	if cmp > 0 {
		return 1
	}
	return 0
}

func cmpDouble(a, b float64) int {
	if a < b {
		return -1
	}
	if a > b {
		return 1
	}
	return 0
}
