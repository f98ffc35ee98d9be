package segment

import (
	"fmt"
	"regexp"
	"time"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"

	"github.com/retention-dev/retention-operator/internal/customer"
)

// Matcher evaluates a rule for one customer at a time. It is not safe for
// concurrent use: give each goroutine its own. It reuses one activation,
// so evaluation builds no map per customer.
type Matcher struct {
	act activation
	// buffers of Match; copied records bring their own
	attrs    []any
	custom   []float64
	customOK []bool
}

// activation resolves the rule's variables for the customer it points at.
type activation struct {
	r        *Rule
	now      ref.Val
	c        *customer.Scored
	attrs    []any // by attribute slot; nil when the customer lacks it
	custom   []float64
	customOK []bool
}

var _ interpreter.Activation = (*activation)(nil)

// NewMatcher returns a matcher evaluating r with now as the time.
func (r *Rule) NewMatcher(now time.Time) *Matcher {
	m := &Matcher{
		attrs:    make([]any, len(r.attrs)),
		custom:   make([]float64, len(r.customs)),
		customOK: make([]bool, len(r.customs)),
	}
	m.act = activation{r: r, now: types.Timestamp{Time: now.UTC()}}
	return m
}

// Match reports whether c is a member. An evaluation error (division by
// zero, overflow, the cost limit, an attribute of the wrong type) is an
// *EvalError; the customer is then not a member.
func (m *Matcher) Match(c *customer.Scored) (bool, error) {
	a := &m.act
	a.c = c
	for i, k := range a.r.attrs {
		m.attrs[i] = c.Attributes[k]
	}
	for i, k := range a.r.customs {
		m.custom[i], m.customOK[i] = c.Scores.Custom[k]
	}
	a.attrs, a.custom, a.customOK = m.attrs, m.custom, m.customOK
	ok, err := m.eval()
	a.c = nil
	return ok, err
}

// matchSlots evaluates a record copied for a batch's layout; slots map
// the rule's attribute and custom score slots to the record's.
func (m *Matcher) matchSlots(r *record, slots *ruleSlots) (bool, error) {
	for i, u := range slots.attrs {
		m.attrs[i] = r.attrs[u]
	}
	for i, u := range slots.customs {
		m.custom[i], m.customOK[i] = r.custom[u], r.customOK[u]
	}
	a := &m.act
	a.c, a.attrs, a.custom, a.customOK = &r.c, m.attrs, m.custom, m.customOK
	return m.eval()
}

func (m *Matcher) eval() (bool, error) {
	// The fast path answers when it can; on unknown, CEL decides.
	if f := m.act.r.fast; f != nil {
		switch f(&m.act) {
		case triTrue:
			return true, nil
		case triFalse:
			return false, nil
		}
	}
	out, _, err := m.act.r.prg.Eval(&m.act)
	if err != nil {
		return false, &EvalError{Message: Redact(err.Error())}
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, &EvalError{Message: fmt.Sprintf("the rule yielded %s, not a bool", out.Type())}
	}
	return bool(b), nil
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	b, ok := a.r.bindings[name]
	if !ok {
		return nil, false
	}
	switch b.kind {
	case varField:
		return b.field.Get(a.c), true
	case varNow:
		return a.now, true
	case varAttr:
		return attrValue(b, a.attrs[b.slot]), true
	case varHasAttr:
		return types.Bool(a.attrs[b.slot] != nil), true
	case varCustom:
		return types.Double(a.custom[b.slot]), true
	case varHasCustom:
		return types.Bool(a.customOK[b.slot]), true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

// attrValue converts a stored attribute value to its declared CEL type: a
// missing value is the type's zero value; a value of another type (the
// source's schema changed since the snapshot was written) is an error.
func attrValue(b *binding, v any) ref.Val {
	if v == nil {
		switch b.atype {
		case customer.String:
			return zeroString
		case customer.Number:
			return zeroDouble
		case customer.Bool:
			return zeroBool
		default:
			return zeroTimestamp
		}
	}
	switch b.atype {
	case customer.String:
		if s, ok := v.(string); ok {
			return types.String(s)
		}
	case customer.Number:
		switch n := v.(type) {
		case float64:
			return types.Double(n)
		case int:
			return types.Double(n)
		case int64:
			return types.Double(n)
		case int32:
			return types.Double(n)
		}
	case customer.Bool:
		if x, ok := v.(bool); ok {
			return types.Bool(x)
		}
	case customer.Timestamp:
		if t, ok := v.(time.Time); ok {
			return types.Timestamp{Time: t}
		}
	}
	return types.NewErr("attribute %s holds a %s value, but the source declares it %s", b.key, kindName(v), b.atype)
}

func kindName(v any) string {
	switch v.(type) {
	case string:
		return "String"
	case float64, int, int32, int64:
		return "Number"
	case bool:
		return "Bool"
	case time.Time:
		return "Timestamp"
	}
	return fmt.Sprintf("%T", v)
}

// EvalError is a rule that failed for one customer. Its message holds no
// customer data (see Redact).
type EvalError struct {
	Message string
}

func (e *EvalError) Error() string { return "segment: evaluating the rule: " + e.Message }

var (
	quotedRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	numberRE = regexp.MustCompile(`\b[0-9][0-9.eE+_:-]*`)
)

// Redact removes what may be customer data from an evaluation error
// message: quoted text (a string that failed to convert, say) and numbers.
// "division by zero" stays as is; `parsing "نیلوفر": invalid syntax`
// becomes `parsing "…": invalid syntax`. Quoted CEL type names stay.
func Redact(msg string) string {
	msg = quotedRE.ReplaceAllStringFunc(msg, func(q string) string {
		if typeNames[q[1:len(q)-1]] {
			return q // "type conversion error from 'string' to 'int'"
		}
		return `"…"`
	})
	return numberRE.ReplaceAllString(msg, "#")
}

// typeNames are the CEL type names error messages quote.
var typeNames = map[string]bool{
	"int": true, "uint": true, "double": true, "string": true, "bool": true, "bytes": true, "list": true,
	"map": true, "null_type": true, "type": true, "timestamp": true, "duration": true,
	"google.protobuf.Timestamp": true, "google.protobuf.Duration": true,
}

// record is a customer copied out of a scan: the scalar fields by value,
// the attributes and custom scores a batch's rules read in slots (see
// layout), no maps.
type record struct {
	c        customer.Scored
	attrs    []any
	custom   []float64
	customOK []bool
}

func (l *layout) newRecord() record {
	return record{
		attrs:    make([]any, len(l.attrs)),
		custom:   make([]float64, len(l.customs)),
		customOK: make([]bool, len(l.customs)),
	}
}

// copyFrom copies what the layout's rules read of c (and the id and
// expected value). Attribute values are immutable once decoded, so they
// are shared, not copied.
func (rec *record) copyFrom(l *layout, c *customer.Scored) {
	rec.c = *c
	rec.c.Attributes = nil
	rec.c.Scores.Custom = nil
	for i, k := range l.attrs {
		rec.attrs[i] = c.Attributes[k]
	}
	for i, k := range l.customs {
		rec.custom[i], rec.customOK[i] = c.Scores.Custom[k]
	}
}
