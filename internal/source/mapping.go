package source

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/retention-dev/retention-operator/internal/customer"
)

// Mapping says which columns (CSV header names, SQL result column names or
// JSON field names) hold what, and how to read their values.
type Mapping struct {
	// CustomerID, Timestamp and Amount name the transaction columns
	// (defaults "customer_id", "timestamp", "amount"). Only CustomerID is
	// needed by a customers input.
	CustomerID string
	Timestamp  string
	Amount     string

	// Frequency, Recency, Age and Monetary name the columns of a summary
	// push-down query (defaults "frequency", "recency", "age", "monetary").
	Frequency, Recency, Age, Monetary string

	// DateLayout is how timestamps are written: a Go reference layout
	// ("02/01/2006 15:04") or one of the presets "RFC3339" (date, time and
	// offset), "2006-01-02" and "20060102", which are parsed by hand without
	// allocating. Empty: RFC 3339 (the offset may be missing, a space may
	// replace the T), then 2006-01-02, then 20060102. Database date and
	// timestamp columns are always read in their ISO form.
	DateLayout string
	// TimeZone is an IANA zone name ("Europe/Berlin"). Instants are turned
	// into days in this zone, and timestamps without an offset are read in
	// it. Empty: UTC.
	TimeZone string
	// DecimalSeparator is "." (default) or ",". Amounts and numbers are
	// plain decimals: "12.50", "-3", "1e3"; no thousands separators, no
	// currency symbols.
	DecimalSeparator string
	// RejectNegativeAmounts rejects rows with an amount below zero (refunds
	// are accepted by default).
	RejectNegativeAmounts bool

	// Attributes are typed customer attributes read from extra columns.
	Attributes []Attribute
	// Contact names the contact columns; empty names are not read.
	Contact ContactColumns

	// MaxRejectedRatio is the share of rejected rows above which Read fails
	// with *TooManyRejectedError. 0 means DefaultMaxRejectedRatio; a
	// negative value tolerates no rejected row; 1 never fails.
	MaxRejectedRatio float64
}

// DefaultMaxRejectedRatio is used when Mapping.MaxRejectedRatio is 0.
const DefaultMaxRejectedRatio = 0.01

// Attribute is one typed customer attribute.
type Attribute struct {
	// Name is the attribute's name in customer.Attributes.
	Name string
	// Column is where it is read from (default: Name).
	Column string
	Type   customer.AttributeType
}

// ContactColumns name the columns holding contact fields. OptOut is read
// as a boolean: true/false, 1/0, yes/no (also t/f, y/n), any case.
type ContactColumns struct {
	Email, Phone, Timezone, Locale, OptOut string
}

// Date layout presets.
const (
	LayoutRFC3339 = "RFC3339"
	LayoutDate    = "2006-01-02"
	LayoutCompact = "20060102"
)

type dateMode uint8

const (
	dateAuto    dateMode = iota // RFC 3339 (offset optional), YYYY-MM-DD, YYYYMMDD
	dateRFC3339                 // date, time and offset required
	dateISO                     // YYYY-MM-DD only
	dateCompact                 // YYYYMMDD only
	dateLayout                  // time.ParseInLocation
)

// plan is a validated Mapping.
type plan struct {
	m        Mapping
	loc      *time.Location // nil means UTC
	mode     dateMode
	layout   string
	decimal  byte
	maxRatio float64
}

func (m Mapping) compile() (*plan, error) {
	p := &plan{m: m}
	def := func(s *string, d string) {
		if strings.TrimSpace(*s) == "" {
			*s = d
		}
	}
	def(&p.m.CustomerID, "customer_id")
	def(&p.m.Timestamp, "timestamp")
	def(&p.m.Amount, "amount")
	def(&p.m.Frequency, "frequency")
	def(&p.m.Recency, "recency")
	def(&p.m.Age, "age")
	def(&p.m.Monetary, "monetary")

	switch l := strings.TrimSpace(m.DateLayout); l {
	case "":
		p.mode = dateAuto
	case LayoutRFC3339, "RFC3339Nano", time.RFC3339, time.RFC3339Nano:
		p.mode = dateRFC3339
	case LayoutDate:
		p.mode = dateISO
	case LayoutCompact:
		p.mode = dateCompact
	default:
		if !strings.ContainsAny(l, "0123456789") {
			return nil, fmt.Errorf("source: date layout %q has no date elements; use a Go reference layout such as 2006-01-02", l)
		}
		p.mode = dateLayout
		p.layout = l
	}
	if tz := strings.TrimSpace(m.TimeZone); tz != "" && tz != "UTC" {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			return nil, fmt.Errorf("source: time zone %q: %w", tz, err)
		}
		p.loc = loc
	}
	switch m.DecimalSeparator {
	case "", ".":
		p.decimal = '.'
	case ",":
		p.decimal = ','
	default:
		return nil, fmt.Errorf("source: decimal separator %q: want \".\" or \",\"", m.DecimalSeparator)
	}
	switch r := m.MaxRejectedRatio; {
	case r == 0:
		p.maxRatio = DefaultMaxRejectedRatio
	case r < 0:
		p.maxRatio = 0
	default:
		p.maxRatio = r
	}
	seen := map[string]bool{}
	p.m.Attributes = make([]Attribute, len(m.Attributes))
	for i, a := range m.Attributes {
		if a.Name == "" {
			return nil, fmt.Errorf("source: attribute %d has no name", i)
		}
		if seen[a.Name] {
			return nil, fmt.Errorf("source: attribute %q is mapped twice", a.Name)
		}
		seen[a.Name] = true
		switch a.Type {
		case customer.String, customer.Number, customer.Bool, customer.Timestamp:
		case "":
			a.Type = customer.String
		default:
			return nil, fmt.Errorf("source: attribute %q: unknown type %q (want String, Number, Bool or Timestamp)", a.Name, a.Type)
		}
		if strings.TrimSpace(a.Column) == "" {
			a.Column = a.Name
		}
		p.m.Attributes[i] = a
	}
	return p, nil
}

// column is one mapped column bound to its position in a row.
type column struct {
	name  string // for reasons and errors
	field string // mapping field, for MissingColumnError
	idx   int    // position in the row; -1 when not mapped
	// typed columns come from a database column of a date/time or numeric
	// type: they are read in PostgreSQL's ISO text form whatever the layout.
	typed bool
}

type attrColumn struct {
	column
	attr string
	typ  customer.AttributeType
}

// binding maps the columns of one input (a CSV header, a result set, the
// fields of a JSON item) onto a plan.
type binding struct {
	p                                *plan
	kind                             Kind
	input                            string
	ncols                            int // expected fields per row; 0: do not check
	id                               column
	ts                               column
	amt                              column
	freq                             column
	rec                              column
	age                              column
	mon                              column
	attrs                            []attrColumn
	email, phone, tz, locale, optout column
	// extra is true when rows carry attribute or contact columns.
	extra bool
}

// wanted lists the columns an input of this kind reads, in a fixed order:
// required ones first.
func (p *plan) wanted(kind Kind) (required, optional []column) {
	c := func(name, field string) column { return column{name: name, field: field, idx: -1} }
	required = append(required, c(p.m.CustomerID, "customerID"))
	switch kind {
	case Transactions:
		required = append(required, c(p.m.Timestamp, "timestamp"), c(p.m.Amount, "amount"))
	case Summaries:
		required = append(required, c(p.m.Frequency, "frequency"), c(p.m.Recency, "recency"),
			c(p.m.Age, "age"), c(p.m.Monetary, "monetary"))
	}
	for _, a := range p.m.Attributes {
		optional = append(optional, c(a.Column, "attributes["+a.Name+"]"))
	}
	cc := p.m.Contact
	for _, x := range []struct{ name, field string }{
		{cc.Email, "contact.email"}, {cc.Phone, "contact.phone"}, {cc.Timezone, "contact.timezone"},
		{cc.Locale, "contact.locale"}, {cc.OptOut, "contact.optOut"},
	} {
		if strings.TrimSpace(x.name) != "" {
			optional = append(optional, c(x.name, x.field))
		} else {
			optional = append(optional, column{idx: -1})
		}
	}
	return required, optional
}

// bind resolves the mapped columns against names (a header). Required
// columns must be present. Attribute and contact columns must be present
// too when requireExtra is set (the input is where they are meant to come
// from, so a missing one is a configuration error, not a silent gap);
// otherwise the ones present are read. isTyped, when not nil, says which
// positions hold typed database values.
func (p *plan) bind(kind Kind, names []string, isTyped func(int) bool, requireExtra bool) (*binding, error) {
	b := &binding{p: p, kind: kind, input: kind.String(), ncols: len(names)}
	find := func(c *column) error {
		if c.name == "" {
			return nil
		}
		idx := -1
		for i, n := range names {
			if n == c.name {
				idx = i
				break
			}
		}
		if idx < 0 {
			want := strings.TrimSpace(c.name)
			for i, n := range names {
				if strings.EqualFold(strings.TrimSpace(n), want) {
					idx = i
					break
				}
			}
		}
		if idx < 0 {
			return p.missing(b.input, c, names)
		}
		c.idx = idx
		if isTyped != nil {
			c.typed = isTyped(idx)
		}
		return nil
	}
	req, opt := p.wanted(kind)
	for i := range req {
		if err := find(&req[i]); err != nil {
			return nil, err
		}
	}
	for i := range opt {
		if err := find(&opt[i]); err != nil {
			if requireExtra {
				return nil, err
			}
			opt[i].idx = -1
		}
	}
	b.id = req[0]
	switch kind {
	case Transactions:
		b.ts, b.amt = req[1], req[2]
	case Summaries:
		b.freq, b.rec, b.age, b.mon = req[1], req[2], req[3], req[4]
	}
	for i, a := range p.m.Attributes {
		b.attrs = append(b.attrs, attrColumn{column: opt[i], attr: a.Name, typ: a.Type})
	}
	n := len(p.m.Attributes)
	b.email, b.phone, b.tz, b.locale, b.optout = opt[n], opt[n+1], opt[n+2], opt[n+3], opt[n+4]
	b.extra = len(b.attrs) > 0 || b.email.idx >= 0 || b.phone.idx >= 0 || b.tz.idx >= 0 ||
		b.locale.idx >= 0 || b.optout.idx >= 0
	return b, nil
}

// missing builds the error for a column that names lack. The names are
// shown to help fix the mapping, unless one of them looks like a value: a
// file without a header row would otherwise put its first row (an email
// address, a customer id) into the error, and from there into logs and the
// resource's status.
func (p *plan) missing(input string, c *column, names []string) error {
	e := &MissingColumnError{Input: input, Field: c.field, Column: c.name}
	for _, n := range names {
		if p.looksLikeData(n) {
			e.HeaderLooksLikeData = true
			return e
		}
	}
	have := names
	if len(have) > 20 {
		have = have[:20]
	}
	e.Have = append([]string(nil), have...)
	return e
}

// looksLikeData reports whether a header name looks like a value: text
// that is not printable UTF-8, an email address, or (any part of it between
// common delimiters, in case the delimiter is wrong) a number or a date.
func (p *plan) looksLikeData(name string) bool {
	if !utf8.ValidString(name) || strings.Contains(name, "@") {
		return true
	}
	for _, c := range []byte(name) {
		if c < ' ' && c != '\t' || c == 0x7f {
			return true
		}
	}
	parts := strings.FieldsFunc(name, func(r rune) bool { return r == ',' || r == ';' || r == '\t' || r == '|' })
	for _, part := range parts {
		b := trimSpace([]byte(part))
		var s1, s2, s3 stamp
		if _, ok := parseDecimal(b, '.'); ok || p.parseStamp(b, false, &s1) ||
			parseISO(b, &s2, false, false) || parseCompact(b, &s3) {
			return true
		}
	}
	return false
}

// names lists every column name the plan reads for kind (for JSON items,
// which have no header: the field names are the columns).
func (p *plan) names(kind Kind) []string {
	req, opt := p.wanted(kind)
	var out []string
	seen := map[string]bool{}
	for _, c := range append(req, opt...) {
		if c.name != "" && !seen[c.name] {
			seen[c.name] = true
			out = append(out, c.name)
		}
	}
	return out
}
