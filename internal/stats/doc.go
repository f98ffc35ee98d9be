// Package stats measures the uplift of a retention campaign against its
// holdout group. It is pure statistics: it knows nothing of Kubernetes, the
// store or campaigns beyond counts of customers and conversions.
//
// # Intent to treat
//
// Every function here expects intent-to-treat counts: the treatment group is
// every customer assigned to receive the campaign, whether or not a message
// was delivered, opened or acted on, and the holdout group is every customer
// assigned to be left alone. Randomisation balances the groups only as
// assigned. Dropping undelivered or unopened customers compares self-selected
// subsets (engaged customers open messages and also churn less), which
// inflates the uplift. Intent to treat measures the effect of running the
// campaign, diluted by non-delivery, and that is the quantity a decision to
// keep or stop a campaign is about.
//
// # Why these methods
//
// A single run is summarised by CompareProportions. Its interval is
// Newcombe's hybrid score interval (method 10 of Newcombe 1998, Statistics in
// Medicine 17:873–890), built from two Wilson score intervals. The textbook
// Wald interval p1−p2 ± z·SE fails exactly where campaigns live: at small
// groups and at conversion rates near 0 or 1 it collapses to zero width (0/20
// against 0/10 gives [0, 0]), overshoots [−1, 1] and covers far less often
// than its nominal level. The hybrid score interval stays inside [−1, 1], is
// never degenerate, and keeps close to nominal coverage at small counts, at
// the cost of one square root more than Wald.
//
// Several runs of one campaign are pooled by MantelHaenszel, stratified by
// run. Runs differ in base rate (season, segment, the state of the customer
// base) and often in holdout share. Adding their counts together confounds
// those differences with the treatment: if the runs with a high base rate
// happened to hold out more customers, the pooled holdout rate is inflated
// and the naive uplift can even change sign (Simpson's paradox). The
// Mantel–Haenszel estimator compares treatment with holdout only within each
// run and then averages the within-run differences.
//
// MinimumDetectableEffect and SampleSize plan a campaign before it runs, and
// SampleRatioMismatch checks after it runs that customers were split in the
// planned proportions; a mismatch means the assignment is broken and no
// uplift figure should be trusted.
//
// Functions validate their input and return errors wrapping ErrInvalidInput
// rather than panicking, and never return NaN or ±Inf in a result.
package stats
