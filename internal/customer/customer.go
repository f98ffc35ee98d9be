// Package customer holds the plain data types that flow between the domain
// packages: a scored customer as scoring produces it, the store keeps it and
// segment rules read it. It imports nothing from the project, so every
// internal package can depend on it.
package customer

import "time"

// AttributeType is the declared type of a customer attribute.
type AttributeType string

const (
	// String attributes are UTF-8 text.
	String AttributeType = "String"
	// Number attributes are float64.
	Number AttributeType = "Number"
	// Bool attributes are true or false.
	Bool AttributeType = "Bool"
	// Timestamp attributes are instants (time.Time in UTC).
	Timestamp AttributeType = "Timestamp"
)

// Attributes are typed values keyed by attribute name. A value is one of
// string, float64, bool or time.Time, as its AttributeType declares.
type Attributes map[string]any

// Contact is how a customer can be reached. Every field is personal data:
// it is never logged, put in an Event, a status or a metric label.
type Contact struct {
	Email    string
	Phone    string
	Timezone string
	Locale   string
	// OptOut is true when the customer asked not to be contacted.
	OptOut bool
}

// Features are the per-customer summaries of the transaction log, in the
// conventions of the BTYD literature: purchases on the same day count once.
type Features struct {
	// Frequency x is the number of repeat purchase days (distinct days - 1).
	Frequency int32
	// Recency t_x is the time from the first to the last purchase, in the
	// source's time unit (weeks by default).
	Recency float64
	// Age T is the time from the first purchase to the end of the
	// observation (calibration) period, in the source's time unit.
	Age float64
	// Monetary is the mean value of the repeat purchase days (the first
	// purchase excluded); 0 when Frequency is 0.
	Monetary float64
	// Transactions is the number of transaction rows aggregated.
	Transactions int32
	// TotalSpend is the sum of every purchase, the first included.
	TotalSpend float64
	// FirstPurchase and LastPurchase are the days of the first and last purchase (UTC midnight).
	FirstPurchase time.Time
	LastPurchase  time.Time
	// RecencyDays is the number of days since the last purchase at the end of observation.
	RecencyDays int32
	// TenureDays is the number of days since the first purchase at the end of observation.
	TenureDays int32
}

// Scores are model outputs for one customer.
type Scores struct {
	// PAlive is the probability that the customer is still active.
	PAlive float64
	// ExpectedPurchases is the expected number of purchases over the horizon.
	ExpectedPurchases float64
	// ExpectedSpend is the expected mean value of a future purchase (Gamma-Gamma).
	ExpectedSpend float64
	// ExpectedValue is the discounted expected customer value over the horizon.
	ExpectedValue float64
	// RFM quintile scores, each 1 (worst) to 5 (best).
	RecencyScore, FrequencyScore, MonetaryScore int8
	// Percentile ranks in [0, 100]: the share of the population at or below
	// this customer (higher is better: more recent, more frequent, more valuable).
	ValuePercentile, FrequencyPercentile, RecencyPercentile float64
	// Custom holds the named custom CEL scores.
	Custom map[string]float64
}

// Scored is one customer in a scored snapshot.
type Scored struct {
	ID         string
	Features   Features
	Scores     Scores
	Attributes Attributes
	Contact    Contact
}
