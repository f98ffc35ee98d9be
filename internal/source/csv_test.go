package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
)

func readCSVString(t *testing.T, c CSV, tx string) (*memSink, *Report, error) {
	t.Helper()
	if c.Transactions == nil {
		c.Transactions = FromBytes([]byte(tx))
	}
	s := &memSink{}
	rep, err := c.Read(context.Background(), s)
	return s, rep, err
}

func TestCSVTransactions(t *testing.T) {
	t.Parallel()
	in := "customer_id,timestamp,amount\n" +
		"c0012345,20240131,23.50\n" +
		"c2,2024-02-29,-3\n" +
		"c3,2024-03-01T23:30:00-02:00,0.1\n" +
		"  c4 ,2024-03-02 ,  7 \n"
	s, rep, err := readCSVString(t, CSV{Mapping: Mapping{MaxRejectedRatio: -1}}, in)
	if err != nil {
		t.Fatal(err)
	}
	want := []Transaction{
		{Row: 1, CustomerID: []byte("c0012345"), Day: day("2024-01-31"), Amount: 23.5},
		{Row: 2, CustomerID: []byte("c2"), Day: day("2024-02-29"), Amount: -3},
		{Row: 3, CustomerID: []byte("c3"), Day: day("2024-03-02"), Amount: 0.1}, // 01:30 UTC next day
		{Row: 4, CustomerID: []byte("c4"), Day: day("2024-03-02"), Amount: 7},
	}
	if !reflect.DeepEqual(s.txs, want) {
		t.Errorf("transactions\n got %+v\nwant %+v", s.txs, want)
	}
	if !reflect.DeepEqual(*rep, Report{Rows: 4, Transactions: 4}) {
		t.Errorf("report %+v", rep)
	}
}

// TestCSVRejectedRows: each bad row is counted with a reason naming the
// column, never the value.
func TestCSVRejectedRows(t *testing.T) {
	t.Parallel()
	hdr := "customer_id,timestamp,amount,name\n"
	good := "c1,2024-01-01,1,ok\n"
	goodFor := map[string]string{ // the good rows around the bad one, where "good" does not fit
		"date layout mismatch":    "c1,20240101,1,x\n",
		"bad number attribute":    "c1,2024-01-01,1,1\n",
		"bad bool":                "c1,2024-01-01,1,1\n",
		"bad timestamp attribute": "c1,2024-01-01,1,2024-01-01\n",
	}
	for _, tc := range []struct {
		name   string
		row    string
		mod    func(*Mapping)
		column string
		reason string
		raw    []string // values that must not appear in the report
	}{
		{"unparseable date", "alice@example.com,31.01.2024,5,x\n", nil, "timestamp", reasonDate, []string{"alice@example.com", "31.01.2024"}},
		{"impossible date", "c9,2023-02-29,5,x\n", nil, "timestamp", reasonDate, []string{"2023-02-29"}},
		{"date layout mismatch", "c9,2024-01-31,5,x\n", func(m *Mapping) { m.DateLayout = "20060102" }, "timestamp", reasonDate, []string{"2024-01-31"}},
		{"missing date", "c9,,5,x\n", nil, "timestamp", reasonMissing, nil},
		{"bad amount comma", "c9,2024-01-31,\"12,50\",x\n", nil, "amount", reasonDecimal, []string{"12,50"}},
		{"bad amount text", "c9,2024-01-31,EUR12,x\n", nil, "amount", reasonDecimal, []string{"EUR12"}},
		{"amount NaN", "c9,2024-01-31,NaN,x\n", nil, "amount", reasonDecimal, nil},
		{"amount overflow", "c9,2024-01-31,1e999,x\n", nil, "amount", reasonDecimal, []string{"1e999"}},
		{"missing amount", "c9,2024-01-31,,x\n", nil, "amount", reasonMissing, nil},
		{"negative rejected", "c9,2024-01-31,-4.5,x\n", func(m *Mapping) { m.RejectNegativeAmounts = true }, "amount", reasonNegative, []string{"-4.5"}},
		{"missing id", ",2024-01-31,5,x\n", nil, "customer_id", reasonMissing, nil},
		{"blank id", "   ,2024-01-31,5,x\n", nil, "customer_id", reasonMissing, nil},
		{"invalid UTF-8 id", "c\xff9,2024-01-31,5,x\n", nil, "customer_id", reasonUTF8, nil},
		{"too few fields", "c9,2024-01-31,5\n", nil, "", "wrong number of fields: want 4, got 3", []string{"c9"}},
		{"too many fields", "c9,2024-01-31,5,x,y\n", nil, "", "wrong number of fields: want 4, got 5", []string{"c9"}},
		{"invalid UTF-8 attribute", "c9,2024-01-31,5,Ni\xfcfar\n", func(m *Mapping) {
			m.Attributes = []Attribute{{Name: "name", Type: customer.String}}
		}, "name", reasonUTF8, []string{"Ni"}},
		{"bad number attribute", "c9,2024-01-31,5,lots\n", func(m *Mapping) {
			m.Attributes = []Attribute{{Name: "score", Column: "name", Type: customer.Number}}
		}, "name", reasonDecimal, []string{"lots"}},
		{"bad bool", "c9,2024-01-31,5,maybe\n", func(m *Mapping) {
			m.Contact.OptOut = "name"
		}, "name", reasonBool, []string{"maybe"}},
		{"bad timestamp attribute", "c9,2024-01-31,5,yesterday\n", func(m *Mapping) {
			m.Attributes = []Attribute{{Name: "since", Column: "name", Type: customer.Timestamp}}
		}, "name", reasonDate, []string{"yesterday"}},
		{"bare quote", "c\"9,2024-01-31,5,x\n", nil, "", errBareQuote.Error(), []string{"c\"9"}},
		{"text after closing quote", "\"c9\"x,2024-01-31,5,x\n", nil, "", errQuote.Error(), []string{"c9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := Mapping{MaxRejectedRatio: 1}
			if tc.mod != nil {
				tc.mod(&m)
			}
			g := good
			if o, ok := goodFor[tc.name]; ok {
				g = o
			}
			s, rep, err := readCSVString(t, CSV{Mapping: m}, hdr+g+tc.row+g)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Rows != 3 || rep.Rejected != 1 || rep.Transactions != 2 || len(s.txs) != 2 {
				t.Fatalf("report %+v, %d transactions", rep, len(s.txs))
			}
			want := RowError{Row: 2, Input: "transactions", Column: tc.column, Reason: tc.reason}
			if !reflect.DeepEqual(rep.Samples, []RowError{want}) {
				t.Errorf("samples %+v, want %+v", rep.Samples, want)
			}
			if s.txs[1].Row != 3 {
				t.Errorf("row after the rejected one numbered %d, want 3", s.txs[1].Row)
			}
			assertNoPersonalData(t, rep, err, tc.raw...)
		})
	}
}

func TestCSVUnterminatedQuote(t *testing.T) {
	t.Parallel()
	// The open quote swallows the rest of the file into one malformed record.
	in := "customer_id,timestamp,amount\nc1,2024-01-01,1\nc2,\"2024-01-02,2\nc3,2024-01-03,3\n"
	s, rep, err := readCSVString(t, CSV{Mapping: Mapping{MaxRejectedRatio: 1}}, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.txs) != 1 || rep.Rows != 2 || rep.Rejected != 1 || rep.Samples[0].Reason != errQuote.Error() {
		t.Fatalf("report %+v", rep)
	}
	// With the record size bounded, an unterminated quote in a big file fails the read.
	big := "customer_id,timestamp,amount\nc1,\"2024" + strings.Repeat("x", 5000)
	_, _, err = readCSVString(t, CSV{MaxRecordBytes: 1024}, big)
	if !errors.Is(err, ErrRecordTooLong) {
		t.Fatalf("error %v, want ErrRecordTooLong", err)
	}
}

func TestCSVFatalErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   []byte
		c    CSV
		want string
		is   error
	}{
		{"empty file", nil, CSV{}, "empty input", ErrEmptyInput},
		{"only blank lines and a BOM", []byte("\xef\xbb\xbf\n\r\n\n"), CSV{}, "empty input", ErrEmptyInput},
		{"missing header column", []byte("customer_id,date,amount\nc1,2024-01-01,1\n"), CSV{},
			`transactions has no column "timestamp" (mapping timestamp)`, nil},
		{"missing renamed column", []byte("customer_id,timestamp,amount\n"), CSV{Mapping: Mapping{Amount: "total"}},
			`no column "total"`, nil},
		{"missing attribute column", []byte("customer_id,timestamp,amount\n"),
			CSV{Mapping: Mapping{Attributes: []Attribute{{Name: "plan", Type: customer.String}}}},
			`no column "plan" (mapping attributes[plan])`, nil},
		{"malformed header", []byte("customer_id,\"timestamp\nx"), CSV{}, "header", nil},
		{"gzip truncated", truncated(gz(t, "customer_id,timestamp,amount\n"+strings.Repeat("c1,2024-01-01,1\n", 1000))), CSV{},
			"gzip stream truncated or corrupt", nil},
		{"gzip header only", []byte{0x1f, 0x8b, 8}, CSV{}, "gzip", nil},
		{"bad delimiter", []byte("a"), CSV{Delimiter: '"'}, "delimiter", nil},
		{"bad layout", []byte("a"), CSV{Mapping: Mapping{DateLayout: "YYYY-MM-DD"}}, "date layout", nil},
		{"bad zone", []byte("a"), CSV{Mapping: Mapping{TimeZone: "Mars/Olympus"}}, "time zone", nil},
		{"bad separator", []byte("a"), CSV{Mapping: Mapping{DecimalSeparator: "'"}}, "decimal separator", nil},
		{"bad attribute type", []byte("a"), CSV{Mapping: Mapping{Attributes: []Attribute{{Name: "a", Type: "Money"}}}}, "unknown type", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := tc.c
			c.Transactions = FromBytes(tc.in)
			_, _, err := readCSVString(t, c, "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
		})
	}
	// The missing column error is typed and names the column.
	_, _, err := readCSVString(t, CSV{}, "customer_id,amount\n")
	mc := wantErrAs[*MissingColumnError](t, err)
	if mc.Column != "timestamp" || mc.Input != "transactions" || !reflect.DeepEqual(mc.Have, []string{"customer_id", "amount"}) {
		t.Errorf("%+v", mc)
	}
}

func truncated(b []byte) []byte { return b[:len(b)/2] }

func TestCSVHeaderOnly(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"customer_id,timestamp,amount", "customer_id,timestamp,amount\r\n", "\xef\xbb\xbfcustomer_id,timestamp,amount\n\n"} {
		s, rep, err := readCSVString(t, CSV{}, in)
		if err != nil || rep.Rows != 0 || len(s.txs) != 0 {
			t.Errorf("%q: %v %+v", in, err, rep)
		}
	}
}

func TestCSVTooManyRejected(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("customer_id,timestamp,amount\n")
	for i := 0; i < 200; i++ {
		if i%20 == 0 {
			fmt.Fprintf(&b, "secret-%d,not-a-date,1\n", i)
		} else {
			fmt.Fprintf(&b, "c%d,2024-01-01,1\n", i)
		}
	}
	in := b.String()
	// 10 of 200 = 5%: over the default 1%.
	_, rep, err := readCSVString(t, CSV{}, in)
	e := wantErrAs[*TooManyRejectedError](t, err)
	if e.Report != rep || rep.Rows != 200 || rep.Rejected != 10 || rep.Transactions != 190 || len(rep.Samples) != MaxSamples || e.MaxRatio != DefaultMaxRejectedRatio {
		t.Fatalf("%+v %+v", e, rep)
	}
	for i, s := range rep.Samples {
		if s.Row != int64(i*20+1) || s.Column != "timestamp" || s.Reason != reasonDate {
			t.Errorf("sample %d: %+v", i, s)
		}
	}
	if !strings.Contains(err.Error(), "10 of 200 rows rejected") {
		t.Errorf("message %q", err)
	}
	assertNoPersonalData(t, rep, err, "secret", "not-a-date")
	// A 10% limit lets it pass; a negative one tolerates nothing.
	if _, _, err := readCSVString(t, CSV{Mapping: Mapping{MaxRejectedRatio: 0.1}}, in); err != nil {
		t.Errorf("ratio 0.1: %v", err)
	}
	_, _, err = readCSVString(t, CSV{Mapping: Mapping{MaxRejectedRatio: -1}}, "customer_id,timestamp,amount\nc1,2024-01-01,1\nc1,x,1\n"+strings.Repeat("c1,2024-01-01,1\n", 1000))
	wantErrAs[*TooManyRejectedError](t, err)
}

func TestCSVUnicodeRoundTrip(t *testing.T) {
	t.Parallel()
	names := []string{"نیلوفر", "Ελένη", "石川 さくら", "Zoë 👩🏽‍💻", "ﷺ\u200d\u200c"}
	var b strings.Builder
	b.WriteString("\xef\xbb\xbfcustomer_id,timestamp,amount,name,city\n")
	for i, n := range names {
		fmt.Fprintf(&b, "%s,2024-01-0%d,%d,%s,\"%s, تهران\"\n", n, i+1, i, n, n)
	}
	m := Mapping{Attributes: []Attribute{{Name: "name", Type: customer.String}, {Name: "city", Type: customer.String}}}
	s, rep, err := readCSVString(t, CSV{Mapping: m}, b.String())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Transactions != 5 || rep.Customers != 5 {
		t.Fatalf("%+v", rep)
	}
	for i, n := range names {
		if string(s.txs[i].CustomerID) != n || s.custs[i].ID != n || s.custs[i].Attributes["name"] != n ||
			s.custs[i].Attributes["city"] != n+", تهران" {
			t.Errorf("%d: %q %q %v", i, s.txs[i].CustomerID, s.custs[i].ID, s.custs[i].Attributes)
		}
	}
}

func TestCSVQuoting(t *testing.T) {
	t.Parallel()
	in := "\"customer_id\",\"timestamp\",\"amount\",\"note\"\r\n" +
		"\"a,b\",\"2024-01-01\",\"1.5\",\"line one\r\nline \"\"two\"\"\"\r\n" +
		"plain,2024-01-02,2,\"\"\r\n" +
		"\"\",2024-01-03,3,x\r\n" + // empty quoted id
		"\"q\",2024-01-04,4,\"a\nb,c\"\n" +
		"last,2024-01-05,5,\"no newline at end\""
	m := Mapping{Attributes: []Attribute{{Name: "note", Type: customer.String}}, MaxRejectedRatio: 1}
	s, rep, err := readCSVString(t, CSV{Mapping: m}, in)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tx := range s.txs {
		ids = append(ids, string(tx.CustomerID))
	}
	if !reflect.DeepEqual(ids, []string{"a,b", "plain", "q", "last"}) || rep.Rejected != 1 || rep.Samples[0].Row != 3 {
		t.Fatalf("ids %q, report %+v", ids, rep)
	}
	notes := map[string]any{}
	for _, c := range s.custs {
		notes[c.ID] = c.Attributes["note"]
	}
	want := map[string]any{"a,b": "line one\nline \"two\"", "q": "a\nb,c", "last": "no newline at end"}
	if !reflect.DeepEqual(notes, want) {
		t.Errorf("notes %q, want %q", notes, want)
	}
}

func TestCSVDelimiters(t *testing.T) {
	t.Parallel()
	for _, d := range []rune{';', '\t', '|'} {
		in := strings.ReplaceAll("customer_id,timestamp,amount\nc1,2024-01-01,\"1,5\"\n\"c,2\",2024-01-02,2\n", ",", string(d))
		in = strings.ReplaceAll(in, "1"+string(d)+"5", "1,5") // the decimal comma stays a comma
		in = strings.ReplaceAll(in, "c"+string(d)+"2", "c,2")
		s, rep, err := readCSVString(t, CSV{Delimiter: d, Mapping: Mapping{DecimalSeparator: ","}}, in)
		if err != nil {
			t.Fatalf("%q: %v", d, err)
		}
		if rep.Transactions != 2 || s.txs[0].Amount != 1.5 || string(s.txs[1].CustomerID) != "c,2" {
			t.Errorf("%q: %+v %+v", d, rep, s.txs)
		}
	}
}

func TestCSVDateLayouts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		layout, zone, value string
		want                int32
		ok                  bool
	}{
		{"", "", "2024-01-31", day("2024-01-31"), true},
		{"", "", "20240131", day("2024-01-31"), true},
		{"", "", "2024-01-31T23:59:59Z", day("2024-01-31"), true},
		{"", "", "2024-01-31T23:59:59.123456789+01:00", day("2024-01-31"), true},
		{"", "", "2024-01-31T23:59:59-01:00", day("2024-02-01"), true},
		{"", "", "2024-01-31 12:00:00+00", day("2024-01-31"), true}, // PostgreSQL text
		{"", "", "2024-01-31 12:00", day("2024-01-31"), true},
		{"", "", "2024-01-31T24:00:00Z", 0, false},
		{"", "", "31/01/2024", 0, false},
		{"", "", "1706659200", 0, false},
		{"RFC3339", "", "2024-01-31T22:00:00-05:00", day("2024-02-01"), true},
		{"RFC3339", "", "2024-01-31", 0, false},
		{"RFC3339", "", "2024-01-31T10:00:00", 0, false},
		{"2006-01-02", "", "2024-01-31", day("2024-01-31"), true},
		{"2006-01-02", "", "2024-01-31T10:00:00Z", 0, false},
		{"20060102", "", "20240131", day("2024-01-31"), true},
		{"20060102", "", "2024-01-31", 0, false},
		{"02/01/2006", "", "31/01/2024", day("2024-01-31"), true},
		{"02/01/2006", "", "31/02/2024", 0, false},
		{"Jan 2, 2006 3:04 PM MST", "", "Jan 31, 2024 11:30 PM UTC", day("2024-01-31"), true},
		{time.RFC1123Z, "", "Wed, 31 Jan 2024 23:30:00 -0200", day("2024-02-01"), true},
		// Instants become days in the zone; dates and offset-less times are taken as written.
		{"", "Asia/Tehran", "2024-01-31T21:00:00Z", day("2024-02-01"), true},
		{"", "America/New_York", "2024-02-01T03:00:00Z", day("2024-01-31"), true},
		{"", "America/New_York", "2024-02-01", day("2024-02-01"), true},
		{"", "America/New_York", "2024-02-01T03:00:00", day("2024-02-01"), true},
		{"2006-01-02 15:04", "Asia/Tokyo", "2024-02-01 03:00", day("2024-02-01"), true},
		{time.RFC3339, "Asia/Tokyo", "2024-01-31T20:00:00Z", day("2024-02-01"), true},
	} {
		in := "customer_id,timestamp,amount\nc1,\"" + tc.value + "\",1\n"
		s, rep, err := readCSVString(t, CSV{Mapping: Mapping{DateLayout: tc.layout, TimeZone: tc.zone, MaxRejectedRatio: 1}}, in)
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		if tc.ok != (rep.Transactions == 1) || tc.ok && s.txs[0].Day != tc.want {
			t.Errorf("layout %q zone %q value %q: report %+v %+v, want day %d ok=%v", tc.layout, tc.zone, tc.value, rep, s.txs, tc.want, tc.ok)
		}
	}
}

func TestCSVCustomersFileAndAttributes(t *testing.T) {
	t.Parallel()
	customers := "id;plan;vip;score;since;email;phone;tz;lang;optout\n" +
		"c1;gold;yes;4,5;2020-05-01T10:00:00+02:00;a@example.com;+98 21 1234;Asia/Tehran;fa-IR;no\n" +
		"c2;;0;;;;;;;TRUE\n"
	tx := "id;timestamp;amount;plan\nc1;2024-01-01;5,5;silver\nc1;2024-01-02;1;silver\nc2;2024-01-03;2;\nc1;2024-01-04;3;silver\n"
	m := Mapping{
		CustomerID:       "id",
		DecimalSeparator: ",",
		Attributes: []Attribute{
			{Name: "plan", Type: customer.String},
			{Name: "vip", Type: customer.Bool},
			{Name: "score", Type: customer.Number},
			{Name: "since", Type: customer.Timestamp},
		},
		Contact: ContactColumns{Email: "email", Phone: "phone", Timezone: "tz", Locale: "lang", OptOut: "optout"},
	}
	s := &memSink{}
	c := &CSV{Customers: FromBytes([]byte(customers)), Transactions: FromBytes([]byte(tx)), Mapping: m, Delimiter: ';'}
	rep, err := c.Read(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	want := []Customer{
		{Row: 1, ID: "c1", Attributes: customer.Attributes{"plan": "gold", "vip": true, "score": 4.5,
			"since": time.Date(2020, 5, 1, 8, 0, 0, 0, time.UTC)},
			Contact: customer.Contact{Email: "a@example.com", Phone: "+98 21 1234", Timezone: "Asia/Tehran", Locale: "fa-IR"}},
		{Row: 2, ID: "c2", Attributes: customer.Attributes{"vip": false}, Contact: customer.Contact{OptOut: true}},
		// From the transactions file: plan only (the other columns are not
		// there); not again for rows 2 and 4, equal to the last one sent.
		{Row: 1, ID: "c1", Attributes: customer.Attributes{"plan": "silver"}},
	}
	if !reflect.DeepEqual(s.custs, want) {
		t.Errorf("customers\n got %+v\nwant %+v", s.custs, want)
	}
	if rep.Rows != 6 || rep.Customers != 3 || rep.Transactions != 4 || s.txs[0].Amount != 5.5 {
		t.Errorf("%+v %+v", rep, s.txs)
	}
	// A customers file must have every mapped attribute column.
	c.Customers = FromBytes([]byte("id;plan\nc1;gold\n"))
	_, err = c.Read(context.Background(), &memSink{})
	if mc := wantErrAs[*MissingColumnError](t, err); mc.Input != "customers" || mc.Column != "vip" {
		t.Errorf("%+v", mc)
	}
}

func TestCSVSinkErrorAborts(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	s := &memSink{fail: boom}
	rep, err := (&CSV{Transactions: FromBytes([]byte("customer_id,timestamp,amount\nc1,2024-01-01,1\nc2,2024-01-01,1\n"))}).Read(context.Background(), s)
	if !errors.Is(err, boom) || len(s.txs) != 1 || rep.Transactions != 1 {
		t.Fatalf("%v %+v", err, rep)
	}
	wantErrAs[*SinkError](t, err)
}

func TestCSVContextCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	data := genTransactions(200_000, 1000, 7)
	n := 0
	sink := SinkFuncs{OnTransaction: func(*Transaction) error {
		if n++; n == 10 {
			cancel()
		}
		return nil
	}}
	_, err := (&CSV{Transactions: FromBytes(data), Mapping: Mapping{Timestamp: "date"}}).Read(ctx, sink)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v", err)
	}
}

// TestCSVLargeRecordsAcrossBuffers: records longer than the initial buffer
// and records straddling buffer refills.
func TestCSVLargeRecordsAcrossBuffers(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("ß", 300_000) // 600 kB
	in := "customer_id,timestamp,amount,note\n" + strings.Repeat("c1,2024-01-01,1,x\n", 70_000) +
		"c2,2024-01-02,2," + long + "\n" + "c3,2024-01-03,3,\"" + long + "\n" + long + "\"\n" +
		strings.Repeat("c4,2024-01-04,4,\"y\"\n", 70_000)
	m := Mapping{Attributes: []Attribute{{Name: "note", Type: customer.String}}}
	var notes []int
	var txs int
	sink := SinkFuncs{
		OnTransaction: func(*Transaction) error { txs++; return nil },
		OnCustomer: func(c *Customer) error {
			if n := len(c.Attributes["note"].(string)); n > 10 {
				notes = append(notes, n)
			}
			return nil
		},
	}
	rep, err := (&CSV{Transactions: FromBytes([]byte(in)), Mapping: m}).Read(context.Background(), sink)
	if err != nil {
		t.Fatal(err)
	}
	if txs != 140_002 || rep.Rejected != 0 || !reflect.DeepEqual(notes, []int{len(long), 2*len(long) + 1}) {
		t.Fatalf("%d transactions, %+v, notes %v", txs, rep, notes)
	}
}

func TestCSVGzipAllOrigins(t *testing.T) {
	t.Parallel()
	plain := "customer_id,timestamp,amount\nنیلوفر,2024-01-01,1\nc2,2024-01-02,2\n"
	zipped := gz(t, plain)
	dir := t.TempDir()
	path := filepath.Join(dir, "tx.csv.gz")
	if err := os.WriteFile(path, zipped, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := newFileServer(t, zipped)
	for name, open := range map[string]Opener{
		"bytes": FromBytes(zipped),
		"file":  FromFile(path),
		"url":   FromURL(srv.URL+"/tx.csv.gz", Auth{BearerToken: srv.token}),
	} {
		s, rep, err := readCSVString(t, CSV{Transactions: open}, "")
		if err != nil || rep.Transactions != 2 || string(s.txs[0].CustomerID) != "نیلوفر" {
			t.Errorf("%s: %v %+v", name, err, rep)
		}
	}
	if _, err := OpenFile(filepath.Join(dir, "missing.csv")); err == nil {
		t.Error("missing file opened")
	}
}

func TestDecompressShortInputs(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "a", "ab", "\x1f", "\x1fa"} {
		r, err := Decompress(strings.NewReader(in))
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		got, _ := io.ReadAll(r)
		if string(got) != in {
			t.Errorf("%q read back as %q", in, got)
		}
	}
}

func TestCSVAmounts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		sep  string
		want float64
		ok   bool
	}{
		{"12.50", "", 12.5, true}, {"-3", "", -3, true}, {"+3.", "", 3, true}, {".5", "", 0.5, true},
		{"0.1", "", 0.1, true}, {"1e3", "", 1000, true}, {"2.5E-1", "", 0.25, true},
		{"123456789012345.5", "", 123456789012345.5, true}, {"0.30000000000000004", "", 0.30000000000000004, true},
		{"12,50", "", 0, false}, {"1,234.50", "", 0, false}, {"12,50", ",", 12.5, true}, {"12.50", ",", 0, false},
		{"1e", "", 0, false}, {"e5", "", 0, false}, {"-", "", 0, false}, {".", "", 0, false}, {"1..2", "", 0, false},
		{"Inf", "", 0, false}, {"0x10", "", 0, false}, {"1_000", "", 0, false}, {"$5", "", 0, false},
		{" 7 ", "", 7, true}, {"1e400", "", 0, false},
	} {
		sep := byte('.')
		if tc.sep == "," {
			sep = ','
		}
		got, ok := parseDecimal([]byte(tc.in), sep)
		if ok != tc.ok || ok && got != tc.want {
			t.Errorf("parseDecimal(%q, %q) = %v, %v; want %v, %v", tc.in, sep, got, ok, tc.want, tc.ok)
		}
	}
	// The fast path agrees with strconv on many short decimals.
	for i := 0; i < 200000; i += 7 {
		s := fmt.Sprintf("%d.%02d", i/100, i%100)
		got, ok := parseDecimal([]byte(s), '.')
		want, _ := parseFloatSlow([]byte(s), '.')
		if !ok || got != want || math.Signbit(got) {
			t.Fatalf("%s: %v, want %v", s, got, want)
		}
	}
}

func TestParseBool(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int{"true": 1, "TRUE": 1, "Yes": 1, "1": 1, "t": 1, "y": 1,
		"false": 0, "No": 0, "0": 0, "F": 0, " n ": 0, "": -1, "2": -1, "yess": -1, "truee": -1, "ja": -1} {
		v, ok := parseBool([]byte(in))
		got := -1
		if ok {
			got = 0
			if v {
				got = 1
			}
		}
		if got != want {
			t.Errorf("parseBool(%q) = %v, %v", in, v, ok)
		}
	}
}
