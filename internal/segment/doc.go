// Package segment compiles segment rules — CEL expressions over one scored
// customer — and evaluates them: over a stored snapshot into a segment's
// membership (Materialize), or over customers in memory for a quick look
// (Preview).
//
// # The rule language
//
// A rule is a CEL expression that yields a bool. It sees two variables:
//
//	customer   the scored customer (see Fields for every field and its type)
//	now        the evaluation time (timestamp)
//
// and reads like
//
//	customer.pAlive < 0.5 && customer.recencyDays <= 180
//	customer.attributes.referral_source == "friend"
//	customer.custom.valueAtRisk > 100.0 && !customer.contact.optOut
//	customer.lastPurchase > now - duration("720h")
//
// Every field is a typed variable of its own (customer.pAlive is declared
// as a double named "customer.pAlive"; CEL resolves the dotted name against
// the declaration), attributes as customer.attributes.<name> with the type
// the source declares, custom scores as customer.custom.<name> (double). So
// a misspelt field, an attribute the source does not declare and a type
// mismatch are compile errors, and evaluation builds no map per customer:
// each goroutine resolves the variables through one reused activation.
//
// Ints and doubles compare with each other (customer.recencyDays <= 180.0,
// customer.attributes.complaints > 0); arithmetic needs one type:
// double(customer.frequency) * 2.0.
//
// # Missing values
//
// An attribute or custom score the schema declares but a customer lacks
// reads as the zero value of its type: "" for a String, 0.0 for a Number
// or a custom score, false for a Bool, timestamp(0) (1970-01-01T00:00:00Z)
// for a Timestamp. has() tells a missing value from a zero one:
//
//	has(customer.attributes.satisfaction) && customer.attributes.satisfaction <= 2.0
//
// has() applies to customer.attributes.<name> and customer.custom.<name>
// only: the other fields always have a value.
//
// # Cost
//
// A rule is compiled once per (rule, schema). Its worst-case cost is
// estimated at compile time (strings sized by EnvOptions.MaxStringSize)
// and must stay within the cost limit. When that bound depends on the size
// of strings (contains, matches, concatenation), the limit is enforced at
// run time too, with cel.CostLimit: a customer whose strings are longer
// than assumed fails to evaluate instead of stalling the evaluation. When
// it does not, the estimate bounds every evaluation and the run-time
// tracker (three to four times the cost of a simple rule) is left out;
// Rule.CostTracked tells which. A rule that does not compile, is not
// boolean or may cost too much is a *RuleError with Reason "InvalidRule".
//
// # Evaluation errors
//
// A rule that fails for one customer (an integer division by zero, the
// cost limit, an attribute stored with another type than declared) makes
// that customer a non-member and is counted; messages are redacted of
// quoted text and numbers (Redact), so they never carry customer data.
package segment
