// Package btyd fits the "buy till you die" models of customer-base analysis
// by maximum likelihood and scores customers with them:
//
//   - BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"),
//   - MBG/NBD (Batislam, Denizel & Filiztekin 2007), as in lifetimes' ModifiedBetaGeoFitter,
//   - Pareto/NBD (Schmittlein, Morrison & Colombo 1987; likelihood as in
//     Fader, Hardie & Lee 2005, "A Note on Implementing the Pareto/NBD Model in MATLAB"),
//   - Gamma-Gamma spend (Fader, Hardie & Lee 2005, "RFM and CLV: Using iso-value
//     curves for customer base analysis"; Fader & Hardie, "The Gamma-Gamma Model
//     of Monetary Value"),
//   - discounted customer lifetime value as lifetimes' customer_lifetime_value.
//
// A customer is summarised by x, the number of repeat purchases (distinct
// purchase periods minus one), t_x, the time of the last purchase measured
// from the first, and T, the time from the first purchase to the end of the
// calibration period, all in one time unit (weeks by convention). Customers
// are compressed into distinct (x, t_x, T) triples with counts (see
// Compressor) so that a likelihood evaluation costs about one exp and one
// log1p per distinct triple: everything that depends only on x (lnΓ terms) is
// computed once per distinct x and everything that depends only on a time
// value (ln(α+t)) once per distinct time value.
//
// Fits maximise the log-likelihood over log-parameters (so parameters stay
// positive) with analytical gradients and a BFGS quasi-Newton method. They
// report diagnostics in a FitResult and return errors, never NaN parameters.
// Scoring functions are total on valid inputs: they never return NaN or ±Inf
// for finite positive parameters and 0 <= t_x <= T.
//
// The package does no I/O and is safe for concurrent use once a model is
// fitted; a Data value is read-only after it is built.
package btyd
