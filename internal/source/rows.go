package source

import (
	"bytes"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/retention-dev/retention-operator/internal/customer"
)

// Rejection reasons. They describe the problem, never the value.
const (
	reasonMissing     = "missing value"
	reasonUTF8        = "not valid UTF-8"
	reasonNUL         = "contains a NUL byte" // which the store refuses
	reasonDate        = "unparseable date"
	reasonDecimal     = "not a decimal number"
	reasonNegative    = "negative amount"
	reasonBool        = "not a boolean (want true/false, 1/0, yes/no)"
	reasonInteger     = "not a non-negative integer"
	reasonNonNegative = "not a non-negative number"
	reasonRecency     = "recency exceeds age"
	reasonZeroFreq    = "recency must be 0 when frequency is 0"
	reasonScalar      = "not a string, number or boolean"
)

// rowError is a rejection found while mapping a row.
type rowError struct {
	column string
	reason string
}

// emitter maps rows of one input onto records and sends them to the sink.
// It owns the reused records; one emitter per goroutine.
type emitter struct {
	b    *binding
	sink Sink
	rep  *Report

	tx   Transaction
	cust Customer
	sum  Summary
	st   stamp

	// Customers from transaction rows: the previous emission, so that a
	// run of rows of one customer with the same attribute cells emits one
	// Customer.
	lastID    []byte
	lastExtra []byte
	haveLast  bool
	scratch   []byte
	// nested marks fields whose JSON value was an object or array.
	nested []bool
	// dropped is the number of fields of the current CSV row that the
	// scanner did not store (see scanner.dropped).
	dropped int
}

func newEmitter(b *binding, sink Sink, rep *Report) *emitter {
	e := &emitter{b: b, sink: sink, rep: rep}
	e.cust.Attributes = customer.Attributes{}
	e.sum.Attributes = customer.Attributes{}
	return e
}

func (e *emitter) reject(row int64, column, reason string) {
	e.rep.reject(e.b.input, row, column, reason)
}

// row maps one row of fields and sends its records. fields alias the
// reader's buffer. A missing field (beyond the row, or nil) is empty. The
// error is the sink's.
func (e *emitter) row(row int64, fields [][]byte) error {
	e.rep.Rows++
	b := e.b
	if b.ncols > 0 && len(fields) != b.ncols {
		reason := "wrong number of fields"
		if e.rep.wantSample() {
			reason = fmt.Sprintf("wrong number of fields: want %d, got %d", b.ncols, len(fields)+e.dropped)
		}
		e.reject(row, "", reason)
		return nil
	}
	id, rerr := e.id(fields)
	if rerr.reason != "" {
		e.reject(row, rerr.column, rerr.reason)
		return nil
	}
	switch b.kind {
	case Transactions:
		return e.transaction(row, id, fields)
	case Customers:
		if rerr := e.extra(fields, &e.cust.Attributes, &e.cust.Contact); rerr.reason != "" {
			e.reject(row, rerr.column, rerr.reason)
			return nil
		}
		return e.emitCustomer(row, id)
	default:
		return e.summary(row, id, fields)
	}
}

// fastRow handles the common case of a transaction row without attribute
// or contact columns: a clean id, a bare date, a decimal amount. Anything
// else — including every row to reject — goes through row, which does the
// full checks; so this stays small enough for the compiler to keep in
// registers.
func (e *emitter) fastRow(row int64, f [][]byte) error {
	b := e.b
	if len(f) != b.ncols {
		return e.row(row, f)
	}
	id, ts, am := f[b.id.idx], f[b.ts.idx], f[b.amt.idx]
	if len(id) == 0 || id[0] <= ' ' || id[len(id)-1] <= ' ' || !validText(id) {
		return e.row(row, f)
	}
	day, ok := b.p.dateDay(ts)
	if !ok {
		return e.row(row, f)
	}
	amt, ok := parseDecimal(am, b.p.decimal)
	if !ok || amt < 0 && b.p.m.RejectNegativeAmounts {
		return e.row(row, f)
	}
	e.rep.Rows++
	e.rep.Transactions++
	tx := &e.tx
	tx.Row, tx.CustomerID, tx.Day, tx.Amount = row, id, day, amt
	if err := e.sink.Transaction(tx); err != nil {
		return sinkError(err)
	}
	return nil
}

// canFast reports whether fastRow applies to this binding.
func (b *binding) canFast() bool {
	return b.kind == Transactions && !b.extra && b.ncols > 0 && !b.ts.typed && !b.amt.typed &&
		(b.p.mode == dateAuto || b.p.mode == dateISO || b.p.mode == dateCompact)
}

func field(fields [][]byte, c column) []byte {
	if c.idx < 0 || c.idx >= len(fields) {
		return nil
	}
	return fields[c.idx]
}

func (e *emitter) isNested(c column) bool {
	return e.nested != nil && c.idx >= 0 && c.idx < len(e.nested) && e.nested[c.idx]
}

func (e *emitter) id(fields [][]byte) ([]byte, rowError) {
	c := e.b.id
	if e.isNested(c) {
		return nil, rowError{c.name, reasonScalar}
	}
	id := trimSpace(field(fields, c))
	if len(id) == 0 {
		return nil, rowError{c.name, reasonMissing}
	}
	return id, checkText(c.name, id)
}

// checkText rejects text that is not UTF-8 or holds a NUL byte: the store
// refuses those, and one such value would fail the whole snapshot instead
// of one row.
func checkText(column string, v []byte) rowError {
	if !utf8.Valid(v) {
		return rowError{column, reasonUTF8}
	}
	if bytes.IndexByte(v, 0) >= 0 {
		return rowError{column, reasonNUL}
	}
	return rowError{}
}

func (e *emitter) decimal(fields [][]byte, c column) (float64, rowError) {
	if e.isNested(c) {
		return 0, rowError{c.name, reasonScalar}
	}
	v := field(fields, c)
	if len(v) == 0 {
		return 0, rowError{c.name, reasonMissing}
	}
	sep := e.b.p.decimal
	if c.typed {
		sep = '.'
	}
	f, ok := parseDecimal(v, sep)
	if !ok {
		return 0, rowError{c.name, reasonDecimal}
	}
	return f, rowError{}
}

func (e *emitter) transaction(row int64, id []byte, fields [][]byte) error {
	b := e.b
	ts := field(fields, b.ts)
	if len(ts) == 0 {
		e.reject(row, b.ts.name, reasonMissing)
		return nil
	}
	if e.isNested(b.ts) || !b.p.parseStamp(ts, b.ts.typed, &e.st) {
		e.reject(row, b.ts.name, reasonDate)
		return nil
	}
	amt, rerr := e.decimal(fields, b.amt)
	if rerr.reason == "" && amt < 0 && b.p.m.RejectNegativeAmounts {
		rerr = rowError{b.amt.name, reasonNegative}
	}
	if rerr.reason != "" {
		e.reject(row, rerr.column, rerr.reason)
		return nil
	}
	day := b.p.day(&e.st)
	emitCust := false
	if b.extra {
		// Validate the extra columns before sending anything, so a row is
		// accepted or rejected as a whole.
		if e.extraPresent(fields) && !e.sameExtra(id, fields) {
			if rerr := e.extra(fields, &e.cust.Attributes, &e.cust.Contact); rerr.reason != "" {
				e.haveLast = false
				e.reject(row, rerr.column, rerr.reason)
				return nil
			}
			emitCust = true
		}
	}
	e.tx = Transaction{Row: row, CustomerID: id, Day: day, Amount: amt}
	e.rep.Transactions++
	if err := e.sink.Transaction(&e.tx); err != nil {
		return sinkError(err)
	}
	if emitCust {
		return e.emitCustomer(row, id)
	}
	return nil
}

// extraPresent reports whether any attribute or contact cell is non-empty.
func (e *emitter) extraPresent(fields [][]byte) bool {
	b := e.b
	for _, a := range b.attrs {
		if len(field(fields, a.column)) > 0 || e.isNested(a.column) {
			return true
		}
	}
	for _, c := range [...]column{b.email, b.phone, b.tz, b.locale, b.optout} {
		if len(field(fields, c)) > 0 || e.isNested(c) {
			return true
		}
	}
	return false
}

// sameExtra reports whether id and the raw attribute and contact cells are
// those of the previous Customer emitted from a transaction row, and
// remembers them otherwise.
func (e *emitter) sameExtra(id []byte, fields [][]byte) bool {
	b := e.b
	s := e.scratch[:0]
	add := func(c column) {
		v := field(fields, c)
		nested := byte(0)
		if e.isNested(c) {
			nested = 1
		}
		s = append(s, nested, byte(len(v)>>24), byte(len(v)>>16), byte(len(v)>>8), byte(len(v)))
		s = append(s, v...)
	}
	for _, a := range b.attrs {
		add(a.column)
	}
	for _, c := range [...]column{b.email, b.phone, b.tz, b.locale, b.optout} {
		add(c)
	}
	e.scratch = s
	if e.haveLast && bytes.Equal(id, e.lastID) && bytes.Equal(s, e.lastExtra) {
		return true
	}
	e.lastID = append(e.lastID[:0], id...)
	e.lastExtra = append(e.lastExtra[:0], s...)
	e.haveLast = true
	return false
}

// extra reads attribute and contact columns into the reused map and
// contact. Empty cells leave the attribute unset.
func (e *emitter) extra(fields [][]byte, attrs *customer.Attributes, contact *customer.Contact) rowError {
	b := e.b
	clear(*attrs)
	*contact = customer.Contact{}
	for _, a := range b.attrs {
		raw := field(fields, a.column)
		if e.isNested(a.column) {
			return rowError{a.name, reasonScalar}
		}
		if a.typ != customer.String {
			raw = trimSpace(raw)
		}
		if len(raw) == 0 {
			continue
		}
		switch a.typ {
		case customer.String:
			if rerr := checkText(a.name, raw); rerr.reason != "" {
				return rerr
			}
			(*attrs)[a.attr] = string(raw)
		case customer.Number:
			sep := b.p.decimal
			if a.typed {
				sep = '.'
			}
			f, ok := parseDecimal(raw, sep)
			if !ok {
				return rowError{a.name, reasonDecimal}
			}
			(*attrs)[a.attr] = f
		case customer.Bool:
			v, ok := parseBool(raw)
			if !ok {
				return rowError{a.name, reasonBool}
			}
			(*attrs)[a.attr] = v
		case customer.Timestamp:
			if !b.p.parseStamp(raw, a.typed, &e.st) {
				return rowError{a.name, reasonDate}
			}
			(*attrs)[a.attr] = b.p.instant(&e.st)
		}
	}
	str := func(c column, dst *string) rowError {
		if e.isNested(c) {
			return rowError{c.name, reasonScalar}
		}
		v := trimSpace(field(fields, c))
		if len(v) == 0 {
			return rowError{}
		}
		if rerr := checkText(c.name, v); rerr.reason != "" {
			return rerr
		}
		*dst = string(v)
		return rowError{}
	}
	for _, x := range [...]struct {
		c   column
		dst *string
	}{{b.email, &contact.Email}, {b.phone, &contact.Phone}, {b.tz, &contact.Timezone}, {b.locale, &contact.Locale}} {
		if rerr := str(x.c, x.dst); rerr.reason != "" {
			return rerr
		}
	}
	if e.isNested(b.optout) {
		return rowError{b.optout.name, reasonScalar}
	}
	if v := trimSpace(field(fields, b.optout)); len(v) > 0 {
		opt, ok := parseBool(v)
		if !ok {
			return rowError{b.optout.name, reasonBool}
		}
		contact.OptOut = opt
	}
	return rowError{}
}

func (e *emitter) emitCustomer(row int64, id []byte) error {
	e.cust.Row = row
	e.cust.ID = string(id)
	e.rep.Customers++
	if err := e.sink.Customer(&e.cust); err != nil {
		return sinkError(err)
	}
	return nil
}

func (e *emitter) summary(row int64, id []byte, fields [][]byte) error {
	b := e.b
	var vals [4]float64
	for i, c := range [...]column{b.freq, b.rec, b.age, b.mon} {
		f, rerr := e.decimal(fields, c)
		if rerr.reason == "" && f < 0 {
			rerr = rowError{c.name, reasonNonNegative}
		}
		if rerr.reason != "" {
			if i == 0 && rerr.reason != reasonMissing {
				rerr.reason = reasonInteger
			}
			e.reject(row, rerr.column, rerr.reason)
			return nil
		}
		vals[i] = f
	}
	freq := vals[0]
	if freq != math.Trunc(freq) || freq > math.MaxInt32 {
		e.reject(row, b.freq.name, reasonInteger)
		return nil
	}
	if vals[1] > vals[2] {
		e.reject(row, b.rec.name, reasonRecency)
		return nil
	}
	if freq == 0 && vals[1] != 0 {
		e.reject(row, b.rec.name, reasonZeroFreq)
		return nil
	}
	if rerr := e.extra(fields, &e.sum.Attributes, &e.sum.Contact); rerr.reason != "" {
		e.reject(row, rerr.column, rerr.reason)
		return nil
	}
	e.sum.Row = row
	e.sum.ID = string(id)
	e.sum.Frequency = int32(freq)
	e.sum.Recency, e.sum.Age, e.sum.Monetary = vals[1], vals[2], vals[3]
	e.rep.Summaries++
	if err := e.sink.Summary(&e.sum); err != nil {
		return sinkError(err)
	}
	return nil
}

// SinkError wraps an error returned by the Sink.
type SinkError struct{ Err error }

func (e *SinkError) Error() string { return "source: sink: " + e.Err.Error() }
func (e *SinkError) Unwrap() error { return e.Err }

func sinkError(err error) error { return &SinkError{Err: err} }
