// Package campaign is what a campaign decides, with no Kubernetes in it:
// when a run is due (ParseSchedule, Schedule.Due), who is held out
// (Bucket, Threshold), which variant and shard a customer gets
// (PickVariant, Shard), when quiet hours let a message go (QuietHours),
// what the message says (CompileMessage, Compiled.Render), and, member by
// member, what a run does with its audience (Planner, the Plan function
// store.RunMaterialize calls). The controllers turn a Campaign into these
// plain values; the outreach runner renders with the same Compiled.
//
// # Schedules
//
// Schedules are parsed and walked as the Kubernetes CronJob controller
// does (robfig/cron/v3, ParseStandard; at most 100 slots due at once; a
// starting deadline). The time zone is the campaign's timeZone, never a
// TZ= prefix in the spec.
//
// # Groups
//
// A customer's holdout bucket is a fixed hash of (campaign UID, customer
// id) modulo 10,000; the customer is held out when the bucket is below
// holdoutPercent × 100. The bucket never depends on the percentage, so a
// larger holdout keeps its earlier members. Variants use weighted
// rendezvous hashing on a separate hash, shards a third.
//
// # Message templates
//
// Subject and body are Go text/template templates, executed with
// missingkey=error: a reference to data that is not there fails the
// message for that customer (no "<no value>" reaches anyone). The data is
// a map with these keys:
//
//	.ID                 customer id (string)
//	.Email              email address (string, may be "")
//	.Phone              phone number (string, may be "")
//	.Locale             locale, e.g. "de-DE" (string, may be "")
//	.TimeZone           the customer's IANA zone as the source gave it (string, may be "")
//	.Attributes.<name>  the source's attributes: String as string, Number as
//	                    float64, Bool as bool, Timestamp as an RFC 3339 string
//	.PAlive             probability the customer is alive (float64)
//	.ExpectedValue      discounted expected value over the horizon (float64)
//	.ExpectedPurchases  expected purchases over the horizon (float64)
//	.Frequency          repeat purchase days (float64, a whole number)
//	.RecencyDays        days since the last purchase (float64, a whole number)
//	.TotalSpend         sum of every purchase (float64)
//	.LastPurchase       day of the last purchase, RFC 3339 in UTC ("" if none)
//	.Custom.<name>      the source's custom CEL scores (float64)
//
// Every number is a float64 and every time an RFC 3339 string because
// the data a target needs is frozen into it as JSON at materialization and
// decoded back by the runner: TemplateData produces exactly what a JSON
// round trip gives back, so a message renders the same from either. A
// number that is not finite is left out. Only the keys the templates
// reference (Compiled.Fields) are frozen; a template that references any
// other key does not compile.
//
// An attribute a customer may lack can be read without failing through
// index, which yields nothing for a missing key:
//
//	Hello {{with index .Attributes "first_name"}}{{.}}{{else}}there{{end}},
//
// # Time zones
//
// The package embeds the IANA time zone database (time/tzdata), so zone
// names resolve the same on every machine, images without zoneinfo
// included.
package campaign

import _ "time/tzdata" // zone names must resolve in minimal images too
