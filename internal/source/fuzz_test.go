package source

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/retention-dev/retention-operator/internal/customer"
)

// Seeds shared by the fuzz targets (the files under testdata/fuzz add more).
var fuzzSeeds = []string{
	"customer_id,timestamp,amount\nc1,2024-01-31,12.50\n",
	"customer_id,timestamp,amount\r\nc1,20240131,-3\r\n\r\nc2,2024-01-31T10:00:00+03:30,1e2\r\n",
	"\xef\xbb\xbfcustomer_id,timestamp,amount,name\n\"c,1\",\"2024-01-31\",\"12.50\",\"a \"\"b\"\"\nc\"\n",
	"customer_id,timestamp,amount\n\"c1,2024-01-31,5\nc2,2024-01-02,6\n",
	"customer_id,timestamp,amount\nc\"1,2024-01-31,5\n\"c2\"x,2024-01-01,1\n",
	"customer_id,timestamp,amount,name,vip,score,since,email,optout\nنیلوفر,2024-02-29,7,نیلوفر,yes,1.5,2020-01-01,a@b.c,no\n",
	"customer_id,timestamp,amount\n,,\n\xff,2024-13-01,abc\nc1,2024-01-01\nc1,2024-01-01,1,2\n",
	"a\n\"",
	"\"\n\"\"\r\n\"\r",
	"x,y\n\"a\"\"\",b\r\n\"\r\n\",\"\"",
}

// FuzzScanner checks the record scanner against encoding/csv record for
// record — fields, malformed records and resynchronisation after them —
// with small buffers so records straddle refills. On a third of the runs
// the scanner stores at most 1 to 4 fields: then it must count the rest.
func FuzzScanner(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), byte(','), uint8(3))
	}
	f.Add([]byte("a;b\n\"x;y\";z\n"), byte(';'), uint8(0))
	f.Add([]byte("a\tb\n\"x\ty\"\tz\n"), byte('\t'), uint8(20))
	f.Fuzz(func(t *testing.T, data []byte, delim byte, bufSize uint8) {
		if delim == 0 || delim >= 0x80 || delim == '"' || delim == '\r' || delim == '\n' {
			delim = ','
		}
		data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
		if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
			return // a second BOM: the scanner drops only one, encoding/csv none; both fine
		}
		ref := csv.NewReader(bytes.NewReader(data))
		ref.Comma = rune(delim)
		ref.FieldsPerRecord = -1
		sc := newScanner(context.Background(), bytes.NewReader(data), delim, int(bufSize)+1, 1<<20)
		if bufSize%3 == 0 {
			sc.maxFields = 1 + int(bufSize/3)%4
		}
		for rec := 0; ; rec++ {
			want, werr := ref.Read()
			got, bad, err := sc.next()
			if err != nil && err != io.EOF {
				t.Fatalf("record %d: scanner error %v", rec, err)
			}
			if werr == io.EOF {
				if err != io.EOF {
					t.Fatalf("record %d: encoding/csv ended, scanner returned %q (bad %v)", rec, got, bad)
				}
				return
			}
			if err == io.EOF {
				t.Fatalf("record %d: scanner ended, encoding/csv returned %q (%v)", rec, want, werr)
			}
			if werr != nil {
				var pe *csv.ParseError
				if !errors.As(werr, &pe) {
					t.Fatalf("record %d: encoding/csv: %v", rec, werr)
				}
				if bad == nil {
					t.Fatalf("record %d: encoding/csv: %v; scanner accepted %q", rec, werr, got)
				}
				continue
			}
			if bad != nil {
				t.Fatalf("record %d: scanner: %v; encoding/csv accepted %q", rec, bad, want)
			}
			if len(got) != min(len(want), sc.maxFields) || len(got)+sc.dropped != len(want) {
				t.Fatalf("record %d: %d fields %q (%d dropped), want %d %q", rec, len(got), got, sc.dropped, len(want), want)
			}
			for i := range got {
				if string(got[i]) != want[i] {
					t.Fatalf("record %d field %d: %q, want %q", rec, i, got[i], want[i])
				}
			}
		}
	})
}

// FuzzCSV reads arbitrary input as a transactions file with every kind of
// attribute and contact column: it must not panic, the counts must add
// up, values handed to the sink must be well formed, and no rejection
// sample may carry more than the fixed reasons.
func FuzzCSV(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), false)
	}
	f.Add([]byte("customer_id;timestamp;amount\nc1;31/01/2024;12,5\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, alt bool) {
		m := Mapping{
			Attributes: []Attribute{
				{Name: "name", Type: customer.String},
				{Name: "vip", Type: customer.Bool},
				{Name: "score", Type: customer.Number},
				{Name: "since", Type: customer.Timestamp},
			},
			Contact:          ContactColumns{Email: "email", OptOut: "optout"},
			MaxRejectedRatio: 1,
		}
		delim := ','
		if alt {
			m.DateLayout, m.DecimalSeparator, m.TimeZone = "02/01/2006", ",", "Asia/Tehran"
			delim = ';'
		}
		var txs, custs int64
		sink := SinkFuncs{
			OnTransaction: func(tx *Transaction) error {
				txs++
				if len(tx.CustomerID) == 0 || !validText(tx.CustomerID) || math.IsNaN(tx.Amount) || math.IsInf(tx.Amount, 0) {
					t.Fatalf("bad transaction %+v", tx)
				}
				return nil
			},
			OnCustomer: func(c *Customer) error {
				custs++
				if c.ID == "" || !validText([]byte(c.ID)) {
					t.Fatalf("bad customer id %q", c.ID)
				}
				for k, v := range c.Attributes {
					if s, ok := v.(string); ok && !utf8.ValidString(s) {
						t.Fatalf("attribute %s not UTF-8", k)
					}
				}
				return nil
			},
		}
		c := &CSV{Transactions: FromBytes(data), Mapping: m, Delimiter: delim, MaxRecordBytes: 1 << 16}
		rep, err := c.Read(context.Background(), sink)
		if rep == nil {
			if err == nil {
				t.Fatal("nil report and nil error")
			}
			return
		}
		if rep.Transactions != txs || rep.Customers != custs {
			t.Fatalf("report %+v, sink saw %d transactions, %d customers", rep, txs, custs)
		}
		if err == nil && rep.Rows != rep.Transactions+rep.Rejected {
			t.Fatalf("rows %d != transactions %d + rejected %d", rep.Rows, rep.Transactions, rep.Rejected)
		}
		if len(rep.Samples) > MaxSamples || int64(len(rep.Samples)) > rep.Rejected {
			t.Fatalf("%d samples for %d rejected", len(rep.Samples), rep.Rejected)
		}
		for _, s := range rep.Samples {
			if !knownReason(s.Reason) {
				t.Fatalf("unexpected reason %q", s.Reason)
			}
		}
	})
}

// knownReason reports whether a rejection reason is one of the fixed
// texts (so it cannot carry data from the row).
func knownReason(r string) bool {
	switch r {
	case reasonMissing, reasonUTF8, reasonNUL, reasonDate, reasonDecimal, reasonNegative, reasonBool, reasonInteger,
		reasonNonNegative, reasonRecency, reasonZeroFreq, reasonScalar, errBareQuote.Error(), errQuote.Error():
		return true
	}
	return strings.HasPrefix(r, "wrong number of fields")
}
