package segment

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/parser"

	"github.com/retention-dev/retention-operator/internal/customer"
)

// Defaults of EnvOptions.
const (
	// DefaultCostLimit bounds the cost of evaluating a rule for one
	// customer, in CEL cost units (about one per variable read, comparison
	// or arithmetic operation; a four-clause rule costs about 10). It is
	// the limit of internal/scoring's custom scores too.
	DefaultCostLimit = 10000
	// DefaultMaxStringSize is the size, in characters, the cost estimator
	// assumes for every string field and attribute: a rule whose string
	// operations could exceed the limit on strings this long does not
	// compile. Longer strings at run time are still bounded by the limit.
	DefaultMaxStringSize = 256
)

// ReasonInvalidRule is the Reason of a *RuleError.
const ReasonInvalidRule = "InvalidRule"

// RuleError reports a rule that cannot be used: it does not compile, does
// not yield a bool, or may cost more than the limit. Message is the
// compiler's message, naming what is wrong; it holds no customer data.
type RuleError struct {
	Reason  string
	Message string
}

func (e *RuleError) Error() string { return "segment: invalid rule: " + e.Message }

// Schema is what a customer source declares beyond the built-in fields.
type Schema struct {
	// Attributes are the source's customer attributes by name, with their
	// types (the CustomerSource's attribute mapping). A rule reads them as
	// customer.attributes.<name>. Names that are not CEL identifiers
	// ([A-Za-z_][A-Za-z0-9_]*, not a reserved word) cannot be written in a
	// rule and are left out: see Env.Unreachable.
	Attributes map[string]customer.AttributeType
	// CustomScores are the names of the source's custom scores; a rule
	// reads them as customer.custom.<name> (double).
	CustomScores []string
}

// EnvOptions tune an Env. The zero value uses the defaults.
type EnvOptions struct {
	// CostLimit bounds one evaluation of a rule, estimated at compile time
	// and enforced at run time. If zero, DefaultCostLimit.
	CostLimit uint64
	// MaxStringSize is the string size, in characters, the compile-time
	// estimate assumes. If zero, DefaultMaxStringSize.
	MaxStringSize uint64
}

// Env compiles rules against one schema. It is safe for concurrent use;
// build one per (source schema) and compile every segment of the source
// with it.
type Env struct {
	env         *cel.Env
	limit       uint64
	maxString   uint64
	vars        map[string]*variable // by CEL name
	attrNames   []string             // declared attribute names, sorted
	customNames []string             // declared custom score names, sorted
	unreachable []string
}

type varKind uint8

const (
	varField varKind = iota
	varNow
	varAttr
	varHasAttr
	varCustom
	varHasCustom
)

// variable is one declared CEL variable.
type variable struct {
	kind  varKind
	name  string // CEL name
	typ   *cel.Type
	field *builtin               // varField
	key   string                 // attribute or custom score name
	atype customer.AttributeType // varAttr
}

var (
	identRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	reserved = map[string]bool{
		"true": true, "false": true, "null": true, "in": true, "as": true, "break": true, "const": true,
		"continue": true, "else": true, "for": true, "function": true, "if": true, "import": true,
		"let": true, "loop": true, "package": true, "namespace": true, "return": true, "var": true,
		"void": true, "while": true,
	}
)

func isIdent(s string) bool { return identRE.MatchString(s) && !reserved[s] }

// NewEnv builds the rule environment of a schema. It fails only on an
// attribute of an unknown type.
func NewEnv(schema Schema, opts EnvOptions) (*Env, error) {
	e := &Env{limit: opts.CostLimit, maxString: opts.MaxStringSize, vars: map[string]*variable{}}
	if e.limit == 0 {
		e.limit = DefaultCostLimit
	}
	if e.maxString == 0 {
		e.maxString = DefaultMaxStringSize
	}
	add := func(v *variable) { e.vars[v.name] = v }
	for i := range builtins {
		b := &builtins[i]
		add(&variable{kind: varField, name: b.Name, typ: b.Type, field: b})
	}
	add(&variable{kind: varNow, name: "now", typ: cel.TimestampType})
	for name, t := range schema.Attributes {
		ct, ok := celType(t)
		if !ok {
			return nil, fmt.Errorf("segment: attribute %q has unknown type %q (want String, Number, Bool or Timestamp)", name, t)
		}
		if !isIdent(name) {
			e.unreachable = append(e.unreachable, name)
			continue
		}
		e.attrNames = append(e.attrNames, name)
		add(&variable{kind: varAttr, name: attrPrefix + name, typ: ct, key: name, atype: t})
		add(&variable{kind: varHasAttr, name: hasPrefix + attrPrefix + name, typ: cel.BoolType, key: name})
	}
	for _, name := range schema.CustomScores {
		if !isIdent(name) {
			e.unreachable = append(e.unreachable, name)
			continue
		}
		if _, dup := e.vars[customPrefix+name]; dup {
			continue
		}
		e.customNames = append(e.customNames, name)
		add(&variable{kind: varCustom, name: customPrefix + name, typ: cel.DoubleType, key: name})
		add(&variable{kind: varHasCustom, name: hasPrefix + customPrefix + name, typ: cel.BoolType, key: name})
	}
	sort.Strings(e.attrNames)
	sort.Strings(e.customNames)
	sort.Strings(e.unreachable)

	names := make([]string, 0, len(e.vars))
	for n := range e.vars {
		names = append(names, n)
	}
	sort.Strings(names) // a deterministic declaration order
	celOpts := []cel.EnvOption{
		cel.CrossTypeNumericComparisons(true),
		cel.Macros(cel.GlobalMacro("has", 1, e.expandHas)),
	}
	for _, n := range names {
		celOpts = append(celOpts, cel.Variable(n, e.vars[n].typ))
	}
	env, err := cel.NewEnv(celOpts...)
	if err != nil {
		return nil, fmt.Errorf("segment: CEL environment: %w", err)
	}
	e.env = env
	return e, nil
}

// Unreachable lists the attribute and custom score names of the schema
// that are not CEL identifiers, so no rule can name them.
func (e *Env) Unreachable() []string { return slices.Clone(e.unreachable) }

// CostLimit is the limit rules are compiled and evaluated with.
func (e *Env) CostLimit() uint64 { return e.limit }

// Fields lists every variable a rule can read in this environment, in
// the order of the reference (docs/segments.md): built-in fields, now,
// attributes, custom scores.
func (e *Env) Fields() []Field {
	out := make([]Field, 0, len(builtins)+1+len(e.attrNames)+len(e.customNames))
	for _, b := range builtins {
		out = append(out, Field{Name: b.Name, Type: typeName(b.Type), Doc: b.Doc})
	}
	out = append(out, Field{Name: "now", Type: "timestamp", Doc: "the evaluation time"})
	for _, n := range e.attrNames {
		v := e.vars[attrPrefix+n]
		out = append(out, Field{Name: v.name, Type: typeName(v.typ), Doc: fmt.Sprintf("attribute %s (%s); zero value when missing, see has()", n, v.atype)})
	}
	for _, n := range e.customNames {
		out = append(out, Field{Name: customPrefix + n, Type: "double", Doc: "custom score " + n + "; 0.0 when missing, see has()"})
	}
	return out
}

// expandHas replaces the standard has() macro: has(customer.attributes.x)
// and has(customer.custom.x) become the hidden bool variable that says
// whether the customer has the value; has() over anything else (a map
// literal, say) is the standard presence test.
func (e *Env) expandHas(eh cel.MacroExprFactory, target celast.Expr, args []celast.Expr) (celast.Expr, *common.Error) {
	arg := args[0]
	if arg.Kind() == celast.SelectKind && !arg.AsSelect().IsTestOnly() {
		sel := arg.AsSelect()
		if q, ok := qualifiedName(sel.Operand()); ok && (q == "customer" || strings.HasPrefix(q, "customer.")) {
			full := q + "." + sel.FieldName()
			switch q {
			case "customer.attributes", "customer.custom":
				if _, ok := e.vars[full]; ok {
					return eh.NewIdent(hasPrefix + full), nil
				}
				return nil, eh.NewError(arg.ID(), e.unknownMessage(full))
			}
			if _, ok := e.vars[full]; ok {
				return nil, eh.NewError(arg.ID(), fmt.Sprintf(
					"has(%s): %s always has a value; has() tests customer.attributes.<name> and customer.custom.<name>", full, full))
			}
			return nil, eh.NewError(arg.ID(), e.unknownMessage(full))
		}
	}
	return parser.MakeHas(eh, target, args)
}

// qualifiedName returns "a.b.c" for a chain of selects over an identifier.
func qualifiedName(x celast.Expr) (string, bool) {
	switch x.Kind() {
	case celast.IdentKind:
		return x.AsIdent(), true
	case celast.SelectKind:
		s := x.AsSelect()
		if s.IsTestOnly() {
			return "", false
		}
		q, ok := qualifiedName(s.Operand())
		if !ok {
			return "", false
		}
		return q + "." + s.FieldName(), true
	}
	return "", false
}

// unknownMessage explains a customer.* name that is not declared.
func (e *Env) unknownMessage(full string) string {
	rest := strings.TrimPrefix(full, "customer.")
	switch {
	case full == "customer":
		return "customer is not a value: read its fields, e.g. customer.pAlive"
	case strings.HasPrefix(full, attrPrefix):
		name, _, _ := strings.Cut(strings.TrimPrefix(full, attrPrefix), ".")
		return fmt.Sprintf("unknown attribute %q (customer.attributes.%s): the source declares %s%s",
			name, name, listOrNone(e.attrNames), suggest(name, e.attrNames))
	case strings.HasPrefix(full, customPrefix):
		name, _, _ := strings.Cut(strings.TrimPrefix(full, customPrefix), ".")
		return fmt.Sprintf("unknown custom score %q (customer.custom.%s): the source declares %s%s",
			name, name, listOrNone(e.customNames), suggest(name, e.customNames))
	case strings.HasPrefix(full, contactPrefix):
		name, _, _ := strings.Cut(strings.TrimPrefix(full, contactPrefix), ".")
		fields := []string{"email", "phone", "timezone", "locale", "optOut"}
		return fmt.Sprintf("unknown contact field %q (customer.contact.%s): contact fields are %s%s",
			name, name, strings.Join(fields, ", "), suggest(name, fields))
	case full == "customer.attributes" || full == "customer.custom" || full == "customer.contact":
		return fmt.Sprintf("%s is not a value: name one of its fields, e.g. %s.<name>", full, full)
	}
	name, _, _ := strings.Cut(rest, ".")
	var fields []string
	for _, b := range builtins {
		if n, ok := strings.CutPrefix(b.Name, "customer."); ok && !strings.Contains(n, ".") {
			fields = append(fields, n)
		}
	}
	fields = append(fields, "attributes", "custom", "contact")
	return fmt.Sprintf("unknown field %q (customer.%s)%s", name, name, suggest(name, fields))
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// suggest returns ` (did you mean "x"?)` for the closest name within two
// edits (case-insensitive), or "".
func suggest(name string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(strings.ToLower(name), strings.ToLower(n)); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(` (did you mean %q?)`, best)
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// unknownNames walks a parsed rule for select chains rooted at customer
// that name nothing declared, and explains each once, with its position.
func (e *Env) unknownNames(a *cel.Ast) []string {
	expr := a.NativeRep().Expr()
	info := a.NativeRep().SourceInfo()
	operands := map[int64]bool{}
	celast.PreOrderVisit(expr, celast.NewExprVisitor(func(x celast.Expr) {
		if x.Kind() == celast.SelectKind {
			operands[x.AsSelect().Operand().ID()] = true
		}
	}))
	var msgs []string
	seen := map[string]bool{}
	celast.PreOrderVisit(expr, celast.NewExprVisitor(func(x celast.Expr) {
		if operands[x.ID()] || (x.Kind() != celast.SelectKind && x.Kind() != celast.IdentKind) {
			return
		}
		full, ok := qualifiedName(x)
		if !ok || (full != "customer" && !strings.HasPrefix(full, "customer.")) {
			return
		}
		// The longest declared prefix: a field of a scalar is not unknown,
		// the checker reports it as a type error.
		for p := full; ; {
			if _, ok := e.vars[p]; ok {
				return
			}
			i := strings.LastIndexByte(p, '.')
			if i < 0 {
				break
			}
			p = p[:i]
		}
		m := e.unknownMessage(full)
		if seen[m] {
			return
		}
		seen[m] = true
		loc := info.GetStartLocation(x.ID())
		msgs = append(msgs, fmt.Sprintf("ERROR: <input>:%d:%d: %s", loc.Line(), loc.Column()+1, m))
	}))
	return msgs
}

// Rule is a compiled rule. It is safe for concurrent use; each goroutine
// evaluates it through its own Matcher.
type Rule struct {
	expr     string
	prg      cel.Program
	cost     checker.CostEstimate
	limit    uint64
	tracked  bool
	bindings map[string]*binding // referenced variables by CEL name
	attrs    []string            // attribute slots
	customs  []string            // custom score slots
	// fast is the rule compiled to Go closures, nil when the rule uses
	// anything the fast path does not implement (see fastpath.go).
	fast fastBool
}

// binding is how one referenced variable is read.
type binding struct {
	kind  varKind
	field *builtin
	slot  int
	key   string
	atype customer.AttributeType
}

// Compile compiles a rule with the default options; see Env.Compile.
func Compile(expr string, schema Schema) (*Rule, error) {
	e, err := NewEnv(schema, EnvOptions{})
	if err != nil {
		return nil, err
	}
	return e.Compile(expr)
}

// Compile type-checks a rule against the environment, estimates its
// worst-case cost and plans it. A rule that does not compile, does not
// yield a bool or may cost more than the limit is a *RuleError.
func (e *Env) Compile(expr string) (*Rule, error) {
	invalid := func(msg string) (*Rule, error) {
		return nil, &RuleError{Reason: ReasonInvalidRule, Message: msg}
	}
	if strings.TrimSpace(expr) == "" {
		return invalid("the rule is empty")
	}
	parsed, iss := e.env.Parse(expr)
	if iss != nil && iss.Err() != nil {
		return invalid(iss.Err().Error())
	}
	checked, iss := e.env.Check(parsed)
	if iss != nil && iss.Err() != nil {
		// The checker names the first unknown prefix ("customer"), not the
		// misspelt field: explain customer.* names ourselves.
		if msgs := e.unknownNames(parsed); len(msgs) > 0 {
			return invalid(strings.Join(msgs, "\n"))
		}
		return invalid(iss.Err().Error())
	}
	if t := checked.OutputType(); !t.IsExactType(types.BoolType) {
		return invalid(fmt.Sprintf("the rule must yield a bool (true for members), but it yields %s", t))
	}
	est, err := e.env.EstimateCost(checked, sizeHints{max: e.maxString})
	if err != nil {
		return invalid(fmt.Sprintf("estimating the cost: %v", err))
	}
	if est.Max > e.limit {
		return invalid(fmt.Sprintf("the rule may cost up to %d per customer, more than the limit of %d (strings assumed up to %d characters): simplify it",
			est.Max, e.limit, e.maxString))
	}
	// Enforce the limit at run time too, unless the estimate holds for
	// strings of any size: then no evaluation can reach the limit, and the
	// run-time cost tracker (3-4 times the cost of evaluating a simple
	// rule) could never fire.
	worst, err := e.env.EstimateCost(checked, sizeHints{max: math.MaxUint64})
	tracked := err != nil || worst.Max > e.limit
	popts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if tracked {
		popts = append(popts, cel.CostLimit(e.limit))
	}
	prg, err := e.env.Program(checked, popts...)
	if err != nil {
		return invalid(err.Error())
	}
	r := &Rule{expr: expr, prg: prg, cost: est, limit: e.limit, tracked: tracked, bindings: map[string]*binding{}}
	// Bind only what the rule references; attributes and custom scores
	// get slots, copied per customer.
	refs := checked.NativeRep().ReferenceMap()
	var names []string
	for _, ref := range refs {
		if ref.Name != "" && ref.Value == nil {
			if _, ok := e.vars[ref.Name]; ok && !slices.Contains(names, ref.Name) {
				names = append(names, ref.Name)
			}
		}
	}
	sort.Strings(names)
	attrSlot := map[string]int{}
	customSlot := map[string]int{}
	slot := func(m map[string]int, list *[]string, key string) int {
		if i, ok := m[key]; ok {
			return i
		}
		m[key] = len(*list)
		*list = append(*list, key)
		return m[key]
	}
	for _, n := range names {
		v := e.vars[n]
		b := &binding{kind: v.kind, field: v.field, key: v.key, atype: v.atype}
		switch v.kind {
		case varAttr, varHasAttr:
			b.slot = slot(attrSlot, &r.attrs, v.key)
		case varCustom, varHasCustom:
			b.slot = slot(customSlot, &r.customs, v.key)
		}
		r.bindings[n] = b
	}
	r.fast = buildFast(checked.NativeRep(), r)
	return r, nil
}

// String returns the rule's source.
func (r *Rule) String() string { return r.expr }

// EstimatedCost is the compile-time estimate of one evaluation's cost.
func (r *Rule) EstimatedCost() (minCost, maxCost uint64) { return r.cost.Min, r.cost.Max }

// CostLimit is the limit the rule was compiled with.
func (r *Rule) CostLimit() uint64 { return r.limit }

// CostTracked reports whether each evaluation runs under cel.CostLimit.
// It does when the rule's cost depends on the size of strings (matches,
// contains, startsWith on a field, ...), whose compile-time estimate
// assumed EnvOptions.MaxStringSize; otherwise the estimate bounds every
// evaluation and the tracker is left out.
func (r *Rule) CostTracked() bool { return r.tracked }

// sizeHints tells the cost estimator how long strings can be; the
// variables are otherwise scalars.
type sizeHints struct{ max uint64 }

func (h sizeHints) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	t := n.Type()
	switch {
	case t == nil:
		return nil
	case t.IsExactType(types.StringType):
		return &checker.SizeEstimate{Min: 0, Max: h.max}
	case t.Kind() == types.TypeKind:
		// type(x) == double: a type value is one name.
		return &checker.SizeEstimate{Min: 1, Max: 1}
	}
	return nil
}

func (sizeHints) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// IsInvalidRule reports whether err is a *RuleError.
func IsInvalidRule(err error) bool {
	var re *RuleError
	return errors.As(err, &re)
}
