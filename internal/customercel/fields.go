// Package customercel declares the fields of a scored customer as CEL
// variables: one table, shared by the custom scores of internal/scoring and
// the segment rules of internal/segment, so an expression reads the same in
// both. Each field is a flat variable name ("customer.pAlive") resolved by
// Get straight from the record, so evaluating needs no map per customer.
package customercel

import (
	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"

	"github.com/retention-dev/retention-operator/internal/customer"
)

// Kind groups the fields.
type Kind int

const (
	// Identity is the customer id.
	Identity Kind = iota
	// Feature is a summary of the transaction log.
	Feature
	// Score is a model output, rank or percentile.
	Score
	// Contact is a contact field (personal data).
	Contact
)

// Field is one variable an expression can read.
type Field struct {
	// Name is how an expression names it, e.g. "customer.pAlive".
	Name string
	Kind Kind
	// Type is the CEL type.
	Type *cel.Type
	// Doc says what it is.
	Doc string
	// Get returns the customer's value.
	Get func(c *customer.Scored) ref.Val
}

// Fields are the built-in fields of every scored customer, in the order
// the reference (docs/segments.md) lists them.
var Fields = []Field{
	{"customer.id", Identity, cel.StringType, "the customer id", func(c *customer.Scored) ref.Val { return types.String(c.ID) }},

	{"customer.frequency", Feature, cel.IntType, "repeat purchase days (distinct purchase days - 1)", func(c *customer.Scored) ref.Val { return types.Int(c.Features.Frequency) }},
	{"customer.recency", Feature, cel.DoubleType, "time from the first to the last purchase, in the source's time unit (weeks by default)", func(c *customer.Scored) ref.Val { return types.Double(c.Features.Recency) }},
	{"customer.age", Feature, cel.DoubleType, "time from the first purchase to the end of observation, in the source's time unit", func(c *customer.Scored) ref.Val { return types.Double(c.Features.Age) }},
	{"customer.monetary", Feature, cel.DoubleType, "mean value of the repeat purchase days (0 without a repeat purchase)", func(c *customer.Scored) ref.Val { return types.Double(c.Features.Monetary) }},
	{"customer.transactions", Feature, cel.IntType, "transaction rows", func(c *customer.Scored) ref.Val { return types.Int(c.Features.Transactions) }},
	{"customer.totalSpend", Feature, cel.DoubleType, "sum of every purchase, the first included", func(c *customer.Scored) ref.Val { return types.Double(c.Features.TotalSpend) }},
	{"customer.firstPurchase", Feature, cel.TimestampType, "day of the first purchase (UTC midnight)", func(c *customer.Scored) ref.Val { return types.Timestamp{Time: c.Features.FirstPurchase} }},
	{"customer.lastPurchase", Feature, cel.TimestampType, "day of the last purchase (UTC midnight)", func(c *customer.Scored) ref.Val { return types.Timestamp{Time: c.Features.LastPurchase} }},
	{"customer.recencyDays", Feature, cel.IntType, "days since the last purchase, at the end of observation", func(c *customer.Scored) ref.Val { return types.Int(c.Features.RecencyDays) }},
	{"customer.tenureDays", Feature, cel.IntType, "days since the first purchase, at the end of observation", func(c *customer.Scored) ref.Val { return types.Int(c.Features.TenureDays) }},

	{"customer.pAlive", Score, cel.DoubleType, "probability that the customer is still active, 0 to 1", func(c *customer.Scored) ref.Val { return types.Double(c.Scores.PAlive) }},
	{"customer.expectedPurchases", Score, cel.DoubleType, "expected purchases over the horizon", func(c *customer.Scored) ref.Val { return types.Double(c.Scores.ExpectedPurchases) }},
	{"customer.expectedSpend", Score, cel.DoubleType, "expected value of one future purchase (Gamma-Gamma)", func(c *customer.Scored) ref.Val { return types.Double(c.Scores.ExpectedSpend) }},
	{"customer.expectedValue", Score, cel.DoubleType, "discounted expected value over the horizon", func(c *customer.Scored) ref.Val { return types.Double(c.Scores.ExpectedValue) }},
	{"customer.recencyScore", Score, cel.IntType, "RFM recency quintile, 1 (worst) to 5 (best)", func(c *customer.Scored) ref.Val { return types.Int(c.Scores.RecencyScore) }},
	{"customer.frequencyScore", Score, cel.IntType, "RFM frequency quintile, 1 to 5", func(c *customer.Scored) ref.Val { return types.Int(c.Scores.FrequencyScore) }},
	{"customer.monetaryScore", Score, cel.IntType, "RFM monetary quintile, 1 to 5", func(c *customer.Scored) ref.Val { return types.Int(c.Scores.MonetaryScore) }},
	{"customer.valuePercentile", Score, cel.DoubleType, "share of customers with at most this expected value, 0 to 100", func(c *customer.Scored) ref.Val { return types.Double(c.Scores.ValuePercentile) }},
	{"customer.frequencyPercentile", Score, cel.DoubleType, "percentile rank by frequency, 0 to 100 (higher: more frequent)", func(c *customer.Scored) ref.Val { return types.Double(c.Scores.FrequencyPercentile) }},
	{"customer.recencyPercentile", Score, cel.DoubleType, "percentile rank by recency, 0 to 100 (higher: more recent)", func(c *customer.Scored) ref.Val { return types.Double(c.Scores.RecencyPercentile) }},

	{"customer.contact.email", Contact, cel.StringType, "email address (\"\" if none)", func(c *customer.Scored) ref.Val { return types.String(c.Contact.Email) }},
	{"customer.contact.phone", Contact, cel.StringType, "phone number (\"\" if none)", func(c *customer.Scored) ref.Val { return types.String(c.Contact.Phone) }},
	{"customer.contact.timezone", Contact, cel.StringType, "IANA time zone (\"\" if none)", func(c *customer.Scored) ref.Val { return types.String(c.Contact.Timezone) }},
	{"customer.contact.locale", Contact, cel.StringType, "locale, e.g. fa-IR (\"\" if none)", func(c *customer.Scored) ref.Val { return types.String(c.Contact.Locale) }},
	{"customer.contact.optOut", Contact, cel.BoolType, "true when the customer asked not to be contacted", func(c *customer.Scored) ref.Val { return types.Bool(c.Contact.OptOut) }},
}

// Lookup returns the field an expression names.
func Lookup(name string) (*Field, bool) {
	i, ok := index[name]
	if !ok {
		return nil, false
	}
	return &Fields[i], true
}

var index = func() map[string]int {
	m := make(map[string]int, len(Fields))
	for i, f := range Fields {
		m[f.Name] = i
	}
	return m
}()
