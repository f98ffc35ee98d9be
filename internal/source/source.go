// Package source streams customer data out of the places it lives — CSV
// (a file, ConfigMap/Secret bytes or a URL, gzipped or not), PostgreSQL and
// paged HTTP JSON APIs — into a Sink, one small reused record at a time.
// Nothing here holds all rows: a 200 MB transaction log is read in reused
// 1 MiB chunks and parsed byte by byte without allocating per row.
//
// The package knows nothing about Kubernetes: the controllers resolve
// Secrets and ConfigMaps and hand it plain values (bytes, URLs, DSNs,
// tokens).
//
// Rows that cannot be used are counted and skipped, not fatal; the Report
// keeps the first few reasons (row number, column, reason — never a value
// from the row, which may be personal data). When the share of rejected
// rows exceeds Mapping.MaxRejectedRatio, Read returns a
// *TooManyRejectedError so the caller keeps its previous snapshot.
//
// # Design notes
//
//   - CSV fast path: 1 MiB reused buffer; lines and fields are found eight
//     bytes at a time (SWAR), dates (YYYYMMDD, YYYY-MM-DD, RFC 3339) and
//     decimals are parsed from bytes; no allocation per row. A line with a
//     quote goes to an RFC 4180 parser written to behave exactly like
//     encoding/csv (FuzzScanner compares them record for record), because
//     encoding/csv itself allocates per record (a 4 KiB bufio.Reader per
//     call when used one record at a time, a string per record always):
//     files with every field quoted stay allocation-free too.
//   - The scanner, binding and emitter of one input are plain structs, so a
//     later parallel reader can run one set per goroutine over its own
//     part of a file.
//   - PostgreSQL rows are requested in text format and go through the same
//     byte-level mapping as CSV; date/time and numeric columns are read in
//     PostgreSQL's ISO forms (TimeZone and DateStyle are pinned in the
//     transaction) whatever Mapping.DateLayout says.
//   - Errors never carry row values, credentials or URL queries: reasons are
//     fixed texts; database messages keep only the quoted words found in
//     the query (identifiers); HTTP errors never include the body.
package source

import (
	"context"
	"errors"
	"fmt"

	"github.com/retention-dev/retention-operator/internal/customer"
)

// Transaction is one purchase. CustomerID aliases the reader's buffer: it
// is valid only during the Sink callback (copy it to keep it).
type Transaction struct {
	// Row is the 1-based number of the data row (CSV record after the
	// header, database row, or JSON item) the transaction came from.
	Row        int64
	CustomerID []byte
	// Day is the purchase date as days since 1970-01-01: the civil date in
	// UTC, or in Mapping.TimeZone when set. A value without a time of day
	// (2024-01-31) is that date as written.
	Day    int32
	Amount float64
}

// Customer carries attributes and contact fields of one customer, from a
// customers file or query, or from the extra columns of a transaction row.
// The record and its Attributes map are reused between calls: a sink that
// keeps them must copy the map (maps.Clone); the strings themselves are
// safe to keep. A caller merging customers by ID should let the last win.
type Customer struct {
	Row        int64
	ID         string
	Attributes customer.Attributes
	Contact    customer.Contact
}

// Summary is one pre-aggregated customer from a push-down query: the
// database already computed frequency x, recency t_x and age T (in the
// source's time unit) and the mean repeat-purchase value. Reused like
// Customer.
type Summary struct {
	Row                    int64
	ID                     string
	Frequency              int32
	Recency, Age, Monetary float64
	Attributes             customer.Attributes
	Contact                customer.Contact
}

// Sink receives the records of a read. The pointers are to records the
// reader reuses for the next row. An error returned by a Sink method aborts
// the read; Read returns it wrapped (errors.Is and errors.As see it).
type Sink interface {
	Transaction(*Transaction) error
	Customer(*Customer) error
	Summary(*Summary) error
}

// Reader is one configured source. Read may be called again for each
// refresh; each call streams the whole source once.
type Reader interface {
	Read(ctx context.Context, sink Sink) (*Report, error)
}

// SinkFuncs adapts functions to a Sink; a nil function ignores its records.
type SinkFuncs struct {
	OnTransaction func(*Transaction) error
	OnCustomer    func(*Customer) error
	OnSummary     func(*Summary) error
}

// Transaction implements Sink.
func (s SinkFuncs) Transaction(t *Transaction) error {
	if s.OnTransaction == nil {
		return nil
	}
	return s.OnTransaction(t)
}

// Customer implements Sink.
func (s SinkFuncs) Customer(c *Customer) error {
	if s.OnCustomer == nil {
		return nil
	}
	return s.OnCustomer(c)
}

// Summary implements Sink.
func (s SinkFuncs) Summary(m *Summary) error {
	if s.OnSummary == nil {
		return nil
	}
	return s.OnSummary(m)
}

// MaxSamples is how many rejected rows a Report describes.
const MaxSamples = 5

// Report counts what a read saw. It holds no personal data: the samples
// name a row number, a column and a reason, never a value.
type Report struct {
	// Rows is the number of data rows read (accepted or rejected), from
	// every file or query of the source; headers and blank lines excluded.
	Rows int64
	// Transactions, Customers and Summaries count the records sent to the sink.
	Transactions, Customers, Summaries int64
	// Rejected is the number of rows skipped because a value was unusable.
	Rejected int64
	// Erased is the number of records left out because their customer was
	// erased (WithoutErased).
	Erased int64
	// Samples describe the first MaxSamples rejected rows.
	Samples []RowError
}

// RowError describes one rejected row without its data.
type RowError struct {
	// Row is the 1-based data row number within its file, query or paged API.
	Row int64
	// Input names the file or query ("transactions", "customers",
	// "summaries") the row came from.
	Input string
	// Column is the column (or JSON field) at fault; empty for row-level problems.
	Column string
	Reason string
}

func (e RowError) String() string {
	s := fmt.Sprintf("%s row %d", e.Input, e.Row)
	if e.Column != "" {
		s += fmt.Sprintf(" column %q", e.Column)
	}
	return s + ": " + e.Reason
}

// RejectedRatio is Rejected/Rows (0 when there are no rows).
func (r *Report) RejectedRatio() float64 {
	if r.Rows == 0 {
		return 0
	}
	return float64(r.Rejected) / float64(r.Rows)
}

func (r *Report) reject(input string, row int64, column, reason string) {
	r.Rejected++
	if len(r.Samples) < MaxSamples {
		r.Samples = append(r.Samples, RowError{Row: row, Input: input, Column: column, Reason: reason})
	}
}

// wantSample reports whether the next rejection will be kept as a sample,
// so a reason that costs an allocation is only built when it is kept.
func (r *Report) wantSample() bool { return len(r.Samples) < MaxSamples }

// TooManyRejectedError is returned by Read when the share of rejected rows
// exceeds the mapping's MaxRejectedRatio. The records already sent to the
// sink should be discarded and the previous snapshot kept.
type TooManyRejectedError struct {
	Report   *Report
	MaxRatio float64
}

func (e *TooManyRejectedError) Error() string {
	r := e.Report
	s := fmt.Sprintf("source: %d of %d rows rejected (%.2f%%), more than the allowed %.2f%%",
		r.Rejected, r.Rows, 100*r.RejectedRatio(), 100*e.MaxRatio)
	if len(r.Samples) > 0 {
		s += "; first: " + r.Samples[0].String()
	}
	return s
}

// MissingColumnError reports a mapped column that the header (CSV), the
// result columns (PostgreSQL) do not have.
type MissingColumnError struct {
	Input  string // "transactions", "customers" or "summaries"
	Field  string // the mapping field, e.g. "customerID" or "attributes[plan]"
	Column string // the column name looked for
	// Have lists the columns that were found (at most 20); nil when
	// HeaderLooksLikeData is set.
	Have []string
	// HeaderLooksLikeData is set when a "column name" looks like a value (an
	// email address, a number, a date, text that is not printable UTF-8):
	// the input probably has no header row, so its first row is data, which
	// may be personal and is not shown.
	HeaderLooksLikeData bool
}

func (e *MissingColumnError) Error() string {
	if e.HeaderLooksLikeData {
		return fmt.Sprintf("source: %s has no column %q (mapping %s); its first row looks like data, not a header "+
			"(values not shown): does the input have a header row?", e.Input, e.Column, e.Field)
	}
	return fmt.Sprintf("source: %s has no column %q (mapping %s); columns are %q", e.Input, e.Column, e.Field, e.Have)
}

var (
	// ErrEmptyInput means a CSV input has no header row at all.
	ErrEmptyInput = errors.New("source: empty input: no header row")
	// ErrRecordTooLong means a CSV record exceeds the record size limit
	// (often an unterminated quote that swallows the rest of the file).
	ErrRecordTooLong = errors.New("source: record too long (unterminated quote?)")
	// ErrInputTooLarge means a CSV input goes on past CSV.MaxBytes (after
	// decompression): an endless download or a decompression bomb.
	ErrInputTooLarge = errors.New("source: input too large")
	// ErrNotCSV means a CSV input whose header cannot be used is evidently
	// something else: an image, a spreadsheet, UTF-16 text, JSON, HTML.
	ErrNotCSV = errors.New("source: not CSV text")
	// ErrStalled means an HTTP server stopped sending a response (headers
	// or body) for longer than the stall timeout.
	ErrStalled = errors.New("source: the server stopped sending")
)

// Kind is what the rows of an input describe.
type Kind int

const (
	// Transactions rows carry customer id, timestamp and amount (and,
	// optionally, attribute and contact columns).
	Transactions Kind = iota
	// Customers rows carry customer id, attributes and contact fields.
	Customers
	// Summaries rows carry one pre-aggregated customer each.
	Summaries
)

func (k Kind) String() string {
	switch k {
	case Transactions:
		return "transactions"
	case Customers:
		return "customers"
	case Summaries:
		return "summaries"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// finish applies the rejected-rows limit.
func finish(rep *Report, maxRatio float64) (*Report, error) {
	if rep.Rejected > 0 && rep.RejectedRatio() > maxRatio {
		return rep, &TooManyRejectedError{Report: rep, MaxRatio: maxRatio}
	}
	return rep, nil
}
