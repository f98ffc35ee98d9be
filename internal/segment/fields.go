package segment

import (
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"

	"github.com/retention-dev/retention-operator/internal/customer"
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

// builtin is a field every schema has. get returns the customer's value.
type builtin struct {
	name string
	typ  *cel.Type
	doc  string
	get  func(c *customer.Scored) ref.Val
}

// Prefixes of the schema-dependent variables.
const (
	attrPrefix    = "customer.attributes."
	customPrefix  = "customer.custom."
	contactPrefix = "customer.contact."
	// hasPrefix names the hidden bool variables has() expands to. '@' is
	// not valid in a CEL identifier, so no rule can name them directly.
	hasPrefix = "@has."
)

// The feature and score names are those of internal/scoring's custom
// scores, so a custom score expression reads the same as a segment rule.
var builtins = []builtin{
	{"customer.id", cel.StringType, "the customer id", func(c *customer.Scored) ref.Val { return types.String(c.ID) }},

	{"customer.frequency", cel.IntType, "repeat purchase days (distinct purchase days - 1)", func(c *customer.Scored) ref.Val { return types.Int(c.Features.Frequency) }},
	{"customer.recency", cel.DoubleType, "time from the first to the last purchase, in the source's time unit (weeks by default)", func(c *customer.Scored) ref.Val { return types.Double(c.Features.Recency) }},
	{"customer.age", cel.DoubleType, "time from the first purchase to the end of observation, in the source's time unit", func(c *customer.Scored) ref.Val { return types.Double(c.Features.Age) }},
	{"customer.monetary", cel.DoubleType, "mean value of the repeat purchase days (0 without a repeat purchase)", func(c *customer.Scored) ref.Val { return types.Double(c.Features.Monetary) }},
	{"customer.transactions", cel.IntType, "transaction rows", func(c *customer.Scored) ref.Val { return types.Int(c.Features.Transactions) }},
	{"customer.totalSpend", cel.DoubleType, "sum of every purchase, the first included", func(c *customer.Scored) ref.Val { return types.Double(c.Features.TotalSpend) }},
	{"customer.firstPurchase", cel.TimestampType, "day of the first purchase (UTC midnight)", func(c *customer.Scored) ref.Val { return types.Timestamp{Time: c.Features.FirstPurchase} }},
	{"customer.lastPurchase", cel.TimestampType, "day of the last purchase (UTC midnight)", func(c *customer.Scored) ref.Val { return types.Timestamp{Time: c.Features.LastPurchase} }},
	{"customer.recencyDays", cel.IntType, "days since the last purchase, at the end of observation", func(c *customer.Scored) ref.Val { return types.Int(c.Features.RecencyDays) }},
	{"customer.tenureDays", cel.IntType, "days since the first purchase, at the end of observation", func(c *customer.Scored) ref.Val { return types.Int(c.Features.TenureDays) }},

	{"customer.pAlive", cel.DoubleType, "probability that the customer is still active, 0 to 1", func(c *customer.Scored) ref.Val { return types.Double(c.Scores.PAlive) }},
	{"customer.expectedPurchases", cel.DoubleType, "expected purchases over the horizon", func(c *customer.Scored) ref.Val { return types.Double(c.Scores.ExpectedPurchases) }},
	{"customer.expectedSpend", cel.DoubleType, "expected value of one future purchase (Gamma-Gamma)", func(c *customer.Scored) ref.Val { return types.Double(c.Scores.ExpectedSpend) }},
	{"customer.expectedValue", cel.DoubleType, "discounted expected value over the horizon", func(c *customer.Scored) ref.Val { return types.Double(c.Scores.ExpectedValue) }},
	{"customer.recencyScore", cel.IntType, "RFM recency quintile, 1 (worst) to 5 (best)", func(c *customer.Scored) ref.Val { return types.Int(c.Scores.RecencyScore) }},
	{"customer.frequencyScore", cel.IntType, "RFM frequency quintile, 1 to 5", func(c *customer.Scored) ref.Val { return types.Int(c.Scores.FrequencyScore) }},
	{"customer.monetaryScore", cel.IntType, "RFM monetary quintile, 1 to 5", func(c *customer.Scored) ref.Val { return types.Int(c.Scores.MonetaryScore) }},
	{"customer.valuePercentile", cel.DoubleType, "share of customers with at most this expected value, 0 to 100", func(c *customer.Scored) ref.Val { return types.Double(c.Scores.ValuePercentile) }},
	{"customer.frequencyPercentile", cel.DoubleType, "percentile rank by frequency, 0 to 100 (higher: more frequent)", func(c *customer.Scored) ref.Val { return types.Double(c.Scores.FrequencyPercentile) }},
	{"customer.recencyPercentile", cel.DoubleType, "percentile rank by recency, 0 to 100 (higher: more recent)", func(c *customer.Scored) ref.Val { return types.Double(c.Scores.RecencyPercentile) }},

	{"customer.contact.email", cel.StringType, "email address (\"\" if none)", func(c *customer.Scored) ref.Val { return types.String(c.Contact.Email) }},
	{"customer.contact.phone", cel.StringType, "phone number (\"\" if none)", func(c *customer.Scored) ref.Val { return types.String(c.Contact.Phone) }},
	{"customer.contact.timezone", cel.StringType, "IANA time zone (\"\" if none)", func(c *customer.Scored) ref.Val { return types.String(c.Contact.Timezone) }},
	{"customer.contact.locale", cel.StringType, "locale, e.g. fa-IR (\"\" if none)", func(c *customer.Scored) ref.Val { return types.String(c.Contact.Locale) }},
	{"customer.contact.optOut", cel.BoolType, "true when the customer asked not to be contacted", func(c *customer.Scored) ref.Val { return types.Bool(c.Contact.OptOut) }},
}

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
