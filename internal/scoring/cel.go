package scoring

import (
	"errors"
	"fmt"
	"math"
	"regexp"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/interpreter"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/customercel"
)

// Custom scores are CEL expressions over typed variables, one per feature
// and score of the customer, named customer.<field>:
//
//	int:       customer.frequency, customer.transactions, customer.recencyDays,
//	           customer.tenureDays, customer.recencyScore,
//	           customer.frequencyScore, customer.monetaryScore
//	double:    customer.recency, customer.age, customer.monetary,
//	           customer.totalSpend, customer.pAlive, customer.expectedPurchases,
//	           customer.expectedSpend, customer.expectedValue,
//	           customer.valuePercentile, customer.frequencyPercentile,
//	           customer.recencyPercentile
//	timestamp: customer.firstPurchase, customer.lastPurchase
//
// (Attributes are for segment rules, not scores.) Ints and doubles compare
// with each other; arithmetic needs a conversion: double(customer.frequency).
// Each evaluating goroutine resolves the variables through one reused
// interpreter.Activation pointing at the customer: no map per customer.

// CustomScoreError reports a custom score that cannot be used. Score
// returns it before reading any data.
type CustomScoreError struct {
	Name       string
	Expression string
	Err        error
}

func (e *CustomScoreError) Error() string {
	return fmt.Sprintf("scoring: custom score %q: %v", e.Name, e.Err)
}

func (e *CustomScoreError) Unwrap() error { return e.Err }

var (
	// ErrNotNumeric is a custom score whose expression does not yield a number.
	ErrNotNumeric = errors.New("expression does not yield a number (int, uint or double)")
	// ErrCostLimit is a custom score whose estimated cost exceeds the limit.
	ErrCostLimit = errors.New("estimated evaluation cost exceeds the limit")
)

// celVars are the fields custom scores see: the features and scores of
// internal/customercel (not the id or contact fields).
var celVars = func() []customercel.Field {
	var vs []customercel.Field
	for _, f := range customercel.Fields {
		if f.Kind == customercel.Feature || f.Kind == customercel.Score {
			vs = append(vs, f)
		}
	}
	return vs
}()

var celVarIndex = func() map[string]int {
	m := make(map[string]int, len(celVars))
	for i, v := range celVars {
		m[v.Name] = i
	}
	return m
}()

// activation resolves the customer.* variables of one customer record. One
// per goroutine, repointed at each customer.
type activation struct {
	c *customer.Scored
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	i, ok := celVarIndex[name]
	if !ok {
		return nil, false
	}
	return celVars[i].Get(a.c), true
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

var _ interpreter.Activation = (*activation)(nil)

type customProgram struct {
	name string
	prg  cel.Program
}

var identRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// noSizes is a cost estimator without size hints: the variables are scalars.
type noSizes struct{}

func (noSizes) EstimateSize(checker.AstNode) *checker.SizeEstimate { return nil }
func (noSizes) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// newCELEnv declares the customer variables.
func newCELEnv() (*cel.Env, error) {
	opts := []cel.EnvOption{cel.CrossTypeNumericComparisons(true)}
	for _, v := range celVars {
		opts = append(opts, cel.Variable(v.Name, v.Type))
	}
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("scoring: CEL environment: %w", err)
	}
	return env, nil
}

// compileCustomScores compiles every score once, type-checked against the
// variables above; an expression that does not compile, does not yield a
// number or may cost more than limit is a *CustomScoreError.
func compileCustomScores(scores []CustomScore, limit uint64) ([]customProgram, error) {
	if len(scores) == 0 {
		return nil, nil
	}
	env, err := newCELEnv()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []customProgram
	for _, s := range scores {
		fail := func(err error) ([]customProgram, error) {
			return nil, &CustomScoreError{Name: s.Name, Expression: s.Expression, Err: err}
		}
		switch {
		case !identRE.MatchString(s.Name):
			return fail(errors.New("name is not an identifier"))
		case seen[s.Name]:
			return fail(errors.New("name is used twice"))
		}
		seen[s.Name] = true
		ast, iss := env.Compile(s.Expression)
		if iss != nil && iss.Err() != nil {
			return fail(iss.Err())
		}
		switch k := ast.OutputType().Kind(); k {
		case types.IntKind, types.UintKind, types.DoubleKind, types.DynKind:
		default:
			return fail(fmt.Errorf("%w: it yields %s", ErrNotNumeric, ast.OutputType()))
		}
		est, err := env.EstimateCost(ast, noSizes{})
		if err != nil {
			return fail(err)
		}
		if est.Max > limit {
			return fail(fmt.Errorf("%w: up to %d, limit %d", ErrCostLimit, est.Max, limit))
		}
		prg, err := env.Program(ast, cel.CostLimit(limit), cel.EvalOptions(cel.OptOptimize))
		if err != nil {
			return fail(err)
		}
		out = append(out, customProgram{name: s.Name, prg: prg})
	}
	return out, nil
}

// evalCustom evaluates program p for the customer a points at. It returns
// the value, or 0 and a problem: 'e' error, 'n' not a number, 'f' not finite.
func evalCustom(p *customProgram, a *activation) (float64, byte, error) {
	out, _, err := p.prg.Eval(a)
	if err != nil {
		return 0, 'e', err
	}
	var v float64
	switch x := out.(type) {
	case types.Double:
		v = float64(x)
	case types.Int:
		v = float64(x)
	case types.Uint:
		v = float64(x)
	default:
		return 0, 'n', fmt.Errorf("result of type %s is not a number", out.Type())
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, 'f', fmt.Errorf("result %v is not finite", v)
	}
	return v, 0, nil
}
