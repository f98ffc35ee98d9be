package segment

import (
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/customercel"
)

// Field describes one variable a rule can read.
type Field struct {
	// Name is how a rule names it: "customer.pAlive", "now".
	Name string
	// Type is the CEL type: int, double, string, bool or timestamp.
	Type string
	// Doc says what it is.
	Doc string
}

// builtin is a field every schema has (internal/customercel).
type builtin = customercel.Field

// builtins are the fields of every scored customer.
var builtins = customercel.Fields

// Prefixes of the schema-dependent variables.
const (
	attrPrefix    = "customer.attributes."
	customPrefix  = "customer.custom."
	contactPrefix = "customer.contact."
	// hasPrefix names the hidden bool variables has() expands to. '@' is
	// not valid in a CEL identifier, so no rule can name them directly.
	hasPrefix = "@has."
)

// Zero values of missing attributes and custom scores, boxed once.
var (
	zeroString    ref.Val = types.String("")
	zeroDouble    ref.Val = types.Double(0)
	zeroBool      ref.Val = types.False
	zeroTimestamp ref.Val = types.Timestamp{Time: time.Unix(0, 0).UTC()}
)

// celType maps an attribute type to its CEL type.
func celType(t customer.AttributeType) (*cel.Type, bool) {
	switch t {
	case customer.String:
		return cel.StringType, true
	case customer.Number:
		return cel.DoubleType, true
	case customer.Bool:
		return cel.BoolType, true
	case customer.Timestamp:
		return cel.TimestampType, true
	}
	return nil, false
}

// typeName is the name the reference uses: int, double, string, bool,
// timestamp.
func typeName(t *cel.Type) string {
	if t.IsExactType(cel.TimestampType) {
		return "timestamp"
	}
	return t.String()
}
