package segment

import (
	"errors"
	"testing"
)

// FuzzRule compiles any rule and, when it compiles, evaluates it on a
// customer with every field set: a rule is rejected with a *RuleError or
// evaluates to a bool or an *EvalError (division by zero, overflow, the
// cost limit) — never a panic, never another error.
func FuzzRule(f *testing.F) {
	for _, seed := range []string{
		`customer.pAlive < 0.5 && customer.recencyDays <= 180`,
		`customer.attributes.complaints > 0.0 || (has(customer.attributes.satisfaction) && customer.attributes.satisfaction <= 2.0)`,
		`customer.frequency / 0 > 1`,
		`customer.totalSpend / 0.0 > 1.0`,
		`[1,2,3].all(x, [1,2,3].all(y, [1,2,3].all(z, x + y + z > 0)))`,
		`customer.attributes.first_name.matches('^(a+)+$')`,
		`customer.contact.email.endsWith('@example.org') && !customer.contact.optOut`,
		`customer.custom.valueAtRisk > 9223372036854775807.0`,
		`9223372036854775807 + 1 > 0`,
		`customer.lastPurchase > timestamp('2024-01-01T00:00:00Z') - duration('8760h')`,
		`size(customer.attributes.first_name) > 3`,
		`has(customer.attributes.vip) ? customer.attributes.vip : false`,
		`1`, `"x"`, `)`, ``,
	} {
		f.Add(seed)
	}
	c := fixture()
	f.Fuzz(func(t *testing.T, expr string) {
		r, err := Compile(expr, testSchema)
		if err != nil {
			var re *RuleError
			if !errors.As(err, &re) {
				t.Fatalf("Compile(%q): %T %v, want a *RuleError", expr, err, err)
			}
			return
		}
		if _, err := r.NewMatcher(testNow).Match(c); err != nil {
			var ee *EvalError
			if !errors.As(err, &ee) {
				t.Fatalf("Match(%q): %T %v, want an *EvalError", expr, err, err)
			}
		}
	})
}
