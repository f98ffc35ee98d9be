package source

import (
	"bytes"
	"context"
	"io"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
)

// Fuzz targets for the value parsers (parse.go), the mapping of a row onto
// records (rows.go, mapping.go) and the JSON page decoder (httpjson.go).
// Each checks its results against an independent oracle (strconv, the time
// package, the general row path) rather than only "no panic". Seeds here and
// under testdata/fuzz/<FuzzName>/ run in every `go test`.

// decimalGrammar is the syntax parseDecimal accepts, per separator.
var decimalGrammar = map[byte]*regexp.Regexp{
	'.': regexp.MustCompile(`^[ \t]*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?[ \t]*$`),
	',': regexp.MustCompile(`^[ \t]*[+-]?([0-9]+,?[0-9]*|,[0-9]+)([eE][+-]?[0-9]+)?[ \t]*$`),
}

// FuzzParseDecimal: parseDecimal accepts exactly the decimal grammar, and
// gives strconv.ParseFloat's correctly rounded value, refusing values that
// overflow to an infinity.
func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{"12.50", "-3", "+.5", "5.", " 7 ", "1e308", "1e400", "-1e400", "1e-400", "-0", "NaN", "Inf",
		"0x1p3", "1_000", "123456789012345.5", "1234567890123456789012", "0.30000000000000004", "1,5", "1.7976931348623157e308",
		"4.9e-324", "00000000000000000000001.5", "1e", "e5", ".", "-", "1..2", "0," + strings.Repeat("0", 70) + "1"} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, b []byte, comma bool) {
		sep := byte('.')
		if comma {
			sep = ','
		}
		got, ok := parseDecimal(b, sep)
		if !decimalGrammar[sep].Match(b) {
			if ok {
				t.Fatalf("%q (sep %q) is not a decimal, parsed as %v", b, sep, got)
			}
			return
		}
		norm := strings.ReplaceAll(string(trimSpace(b)), string(sep), ".")
		want, err := strconv.ParseFloat(norm, 64)
		if err != nil && !math.IsInf(want, 0) {
			t.Fatalf("%q: the grammar accepts what strconv refuses: %v", b, err)
		}
		if math.IsInf(want, 0) {
			if ok {
				t.Fatalf("%q overflows, parsed as %v", b, got)
			}
			return
		}
		if !ok || got != want || math.Signbit(got) != math.Signbit(want) {
			t.Fatalf("%q (sep %q): %v, %v; strconv says %v", b, sep, got, ok, want)
		}
	})
}

var (
	fuzzLayouts = []string{"", LayoutRFC3339, LayoutDate, LayoutCompact, "02/01/2006 15:04", "Jan _2 2006 15:04:05.000 MST", time.RFC1123Z}
	fuzzZones   = []string{"", "Asia/Tehran", "America/New_York", "Pacific/Kiritimati", "Europe/Dublin", "America/St_Johns"}
	// notRFC3339 matches what time.Parse(time.RFC3339) accepts but RFC 3339
	// does not, and parseISO refuses: a one-digit hour, an offset of 24 hours
	// or more or with 60 minutes or more.
	notRFC3339 = regexp.MustCompile(`^.{10}T[0-9]:|[+-](2[4-9]|[3-9][0-9]):[0-9][0-9]$|[+-][0-9][0-9]:[6-9][0-9]$`)
)

// civilDays is the days since 1970-01-01 of a civil date, by the time package.
func civilDays(y int, m time.Month, d int) int64 {
	return int64(math.Floor(float64(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix()) / 86400))
}

// FuzzParseStamp: whatever parseStamp accepts is a real date and time, and
// the day and instant the plan computes from it by hand agree with the time
// package. For the ISO and compact presets it accepts exactly what
// time.Parse accepts; every RFC 3339 value time.Parse accepts, it accepts as
// the same instant.
func FuzzParseStamp(f *testing.F) {
	for _, s := range []string{"2024-01-31", "20240131", "2024-02-29", "2023-02-29", "0000-01-01", "0001-01-01", "9999-12-31",
		"10000-01-01", "1800-02-29", "2024-01-31T23:59:59Z", "2024-01-31t23:59:59.123456789z", "2024-01-31 12:00:00+00",
		"2024-01-31T10:00:00,5-03:30", "2024-01-31T10:00:00+05:45:30", "9999-12-31T23:59:59-23:59", "0000-01-01T00:00:00+23:59",
		"2024-01-31T24:00:00Z", "2024-01-31T10:00:00+24:00", "31/01/2024 10:00", "Jan 31 2024 10:00:00.000 PST",
		"Wed, 31 Jan 2024 23:30:00 -0200", " 2024-01-31\t", "2024-03-10T02:30:00", "2024-11-03T01:30:00"} {
		for mode := range fuzzLayouts {
			f.Add([]byte(s), uint8(mode), uint8(mode%len(fuzzZones)))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, mode, zone uint8) {
		p, err := Mapping{DateLayout: fuzzLayouts[int(mode)%len(fuzzLayouts)], TimeZone: fuzzZones[int(zone)%len(fuzzZones)]}.compile()
		if err != nil {
			t.Fatal(err)
		}
		var st stamp
		ok := p.parseStamp(b, false, &st)
		if ok {
			checkStamp(t, p, b, &st)
		}
		var typed stamp
		if p.parseStamp(b, true, &typed) {
			checkStamp(t, p, b, &typed)
		}
		in := string(trimSpace(b))
		switch p.mode {
		case dateISO, dateCompact:
			want, err := time.Parse(p.m.DateLayout, in)
			if ok != (err == nil) || ok && st.days != civilDays(want.Date()) {
				t.Fatalf("%q: ok=%v days %d; time.Parse: %v %v", b, ok, st.days, want, err)
			}
		case dateAuto, dateRFC3339:
			want, err := time.Parse(time.RFC3339, in)
			if err != nil || notRFC3339.MatchString(in) {
				return
			}
			if !ok || !p.instant(&st).Equal(want) {
				t.Fatalf("%q: ok=%v %v; time.Parse(RFC3339): %v", b, ok, p.instant(&st), want)
			}
		}
	})
}

// checkStamp checks an accepted stamp against the time package.
func checkStamp(t *testing.T, p *plan, b []byte, st *stamp) {
	t.Helper()
	y, m, d := int(st.year), time.Month(st.month), int(st.day)
	if y < 0 || y > 9999 || m < 1 || m > 12 || d < 1 || d > int(daysIn(st.month, st.year)) ||
		st.hour < 0 || st.hour > 23 || st.minute < 0 || st.minute > 59 || st.second < 0 || st.second > 59 ||
		st.nsec < 0 || st.nsec >= 1e9 {
		t.Fatalf("%q: impossible stamp %+v", b, st)
	}
	if st.days != civilDays(y, m, d) {
		t.Fatalf("%q: %+v: days %d, want %d", b, st, st.days, civilDays(y, m, d))
	}
	loc := p.loc
	if loc == nil {
		loc = time.UTC
	}
	zone := loc
	if st.hasOffset {
		zone = time.FixedZone("", int(st.offset))
	}
	at := time.Date(y, m, d, int(st.hour), int(st.minute), int(st.second), int(st.nsec), zone)
	if got := p.instant(st); !got.Equal(at) {
		t.Fatalf("%q: %+v: instant %v, want %v", b, st, got, at)
	}
	want := civilDays(y, m, d) // a date (and time) without an offset is taken as written
	if st.hasOffset {
		want = civilDays(at.In(loc).Date())
	}
	if got := p.day(st); int64(got) != want {
		t.Fatalf("%q: %+v in %v: day %d, want %d", b, st, loc, got, want)
	}
}

// FuzzMapping maps one row of arbitrary fields onto a transaction (or a
// summary) twice — through the allocation-free fast path and through the
// general path — and requires the same outcome, then checks it: a row is
// accepted or rejected, never both nor neither; an accepted row carries a
// clean id, the parsed day and a finite amount; a rejection names a mapped
// column and a fixed reason.
func FuzzMapping(f *testing.F) {
	for _, r := range [][4]string{
		{"c1", "2024-01-31", "12.50", "ann@example.com"},
		{" c1 ", "20240131", "-3", ""},
		{"c\xff1", "2024-01-31", "1", "x"},
		{"c\x001", "2024-01-31", "1", "x"},
		{"c00\x00123456", "2024-01-31", "1", "x"},
		{"", "2024-01-31", "1", "x"},
		{"c1", "0001-01-01", "1e308", "x"},
		{"c1", "9999-12-31T23:59:59-12:00", "1e400", "x"},
		{"c1", "31/01/2024 10:00", "12,5", "a\x00b"},
		{"c1", "2024-02-30", "NaN", "\xff"},
		{"c1", "2024-01-31", "", ""},
		{"c1", "1", "2", "2"}, // as a summary (variant 16): frequency 1, recency 2, age 2, monetary 1
		{"c1", "2", "5", "3"}, // as a summary: recency beyond age
		{"c1", "0", "1", "3"}, // as a summary: recency without repeat purchases
	} {
		for _, variant := range []uint8{0, 1, 2, 4, 8, 16, 31} {
			f.Add([]byte(r[0]), []byte(r[1]), []byte(r[2]), []byte(r[3]), uint8(4), variant)
		}
	}
	f.Add([]byte("c1"), []byte("2024-01-31"), []byte("1"), []byte("x"), uint8(5), uint8(0))
	f.Add([]byte("c1"), []byte("2024-01-31"), []byte("1"), []byte("x"), uint8(2), uint8(0))
	f.Fuzz(func(t *testing.T, id, ts, amount, extra []byte, nfields, variant uint8) {
		m := Mapping{MaxRejectedRatio: 1, RejectNegativeAmounts: variant&1 != 0}
		if variant&2 != 0 {
			m.DecimalSeparator = ","
		}
		if variant&4 != 0 {
			m.DateLayout, m.TimeZone = "02/01/2006 15:04", "America/St_Johns"
		}
		if variant&8 != 0 {
			m.Attributes = []Attribute{{Name: "name", Type: customer.String}}
			m.Contact.Email = "name"
		}
		p, err := m.compile()
		if err != nil {
			t.Fatal(err)
		}
		kind, names := Transactions, []string{"customer_id", "timestamp", "amount", "name"}
		if variant&16 != 0 {
			kind, names = Summaries, []string{"customer_id", "frequency", "recency", "age", "monetary"}
		}
		b, err := p.bind(kind, names, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		fields := [][]byte{id, ts, amount, extra, []byte("1"), []byte("x")}[:int(nfields)%7]
		fast, slow := &memSink{}, &memSink{}
		repFast, repSlow := &Report{}, &Report{}
		ef, es := newEmitter(b, fast, repFast), newEmitter(b, slow, repSlow)
		if b.canFast() {
			err = ef.fastRow(1, fields)
		} else {
			err = ef.row(1, fields)
		}
		if err2 := es.row(1, fields); err != nil || err2 != nil {
			t.Fatalf("sink errors %v %v", err, err2)
		}
		if !reflect.DeepEqual(repFast, repSlow) || !reflect.DeepEqual(fast, slow) {
			t.Fatalf("fast path %+v %+v\ngeneral path %+v %+v", repFast, fast, repSlow, slow)
		}
		checkMapped(t, p, b, fields, repSlow, slow)
	})
}

// checkMapped checks the outcome of mapping one row.
func checkMapped(t *testing.T, p *plan, b *binding, fields [][]byte, rep *Report, s *memSink) {
	t.Helper()
	if rep.Rows != 1 || rep.Transactions+rep.Summaries+rep.Rejected != 1 {
		t.Fatalf("report %+v: the row is not accounted for once", rep)
	}
	if rep.Rejected == 1 {
		smp := rep.Samples[0]
		if !knownReason(smp.Reason) || smp.Row != 1 || smp.Column != "" && !strings.Contains(",customer_id,timestamp,amount,name,frequency,recency,age,monetary,", ","+smp.Column+",") {
			t.Fatalf("sample %+v", smp)
		}
		if len(s.txs)+len(s.custs)+len(s.sums) != 0 {
			t.Fatalf("a rejected row sent %+v", s)
		}
		return
	}
	id := trimSpace(fields[0])
	if len(id) == 0 || !validText(id) {
		t.Fatalf("accepted id %q", id)
	}
	if b.kind == Summaries {
		m := s.sums[0]
		if m.ID != string(id) || m.Frequency < 0 || m.Recency < 0 || m.Recency > m.Age || m.Monetary < 0 ||
			m.Frequency == 0 && m.Recency != 0 || math.IsInf(m.Age, 0) || math.IsInf(m.Monetary, 0) {
			t.Fatalf("accepted summary %+v", m)
		}
		return
	}
	tx := s.txs[0]
	var st stamp
	if !p.parseStamp(fields[1], false, &st) || tx.Day != p.day(&st) {
		t.Fatalf("transaction %+v from timestamp %q", tx, fields[1])
	}
	amt, ok := parseDecimal(fields[2], p.decimal)
	if !bytes.Equal(tx.CustomerID, id) || !ok || tx.Amount != amt || math.IsInf(amt, 0) || amt < 0 && p.m.RejectNegativeAmounts {
		t.Fatalf("transaction %+v from %q", tx, fields)
	}
}

// FuzzHTTPJSONPage reads an arbitrary body as every page of a paged JSON
// API: no panic, every item is accounted for, rejections carry fixed
// reasons only, errors come from this package.
func FuzzHTTPJSONPage(f *testing.F) {
	for _, s := range []string{
		`{"data": [{"customer_id": "c1", "timestamp": "2024-01-31", "amount": 12.5}], "next": null}`,
		`{"data": [{"customer_id": "c1", "timestamp": "2024-01-31", "amount": "1e400"}, "x", [1], {"customer_id": {"a": 1}}], "next": "?p=2"}`,
		`[{"customer_id": "c\u0000", "timestamp": "0001-01-01", "amount": -1}]`,
		`{"data": null}`, `{"data": {}}`, `{"data": [}`, `{"data": []} []`, ``, `null`, `"data"`,
		`{"data": [` + strings.Repeat(`[`, 10001) + `]}`,
		`{"data": [{"customer_id": "c1", "timestamp": "2024-01-31", "amount": 1, "customer_id": "c2"}], "next": "/"}`,
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, body []byte, variant uint8) {
		h := &HTTPJSON{URL: "http://api.example/v1/orders", MaxPages: 3, MaxAttempts: 1, MaxPageBytes: 1 << 20,
			Mapping: Mapping{MaxRejectedRatio: 1}, Client: bodyClient(func() io.ReadCloser { return io.NopCloser(bytes.NewReader(body)) })}
		if variant&1 != 0 {
			h.ItemsPath = "."
		}
		s := &memSink{}
		rep, err := h.Read(context.Background(), s)
		if rep == nil {
			if err == nil {
				t.Fatal("nil report and nil error")
			}
			return
		}
		if rep.Transactions != int64(len(s.txs)) || rep.Rows != rep.Transactions+rep.Rejected {
			t.Fatalf("report %+v, %d transactions sent", rep, len(s.txs))
		}
		for _, smp := range rep.Samples {
			if !knownReason(smp.Reason) && smp.Reason != "item is not a JSON object" {
				t.Fatalf("sample %+v", smp)
			}
		}
		if err != nil && !strings.HasPrefix(err.Error(), "source: ") {
			t.Fatalf("error %q", err)
		}
	})
}
