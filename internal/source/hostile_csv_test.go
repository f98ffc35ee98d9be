package source

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/retention-dev/retention-operator/internal/customer"
)

// Hostile and broken CSV input (issue #19). Each row is accepted with its
// exact value or rejected and counted with a fixed reason; each unusable
// file fails with an error naming the problem and no value from it.

// TestCSVHostileRows: one hostile row between two good ones. Accepted rows
// carry the exact day and amount; rejected ones are counted with their
// column and reason; either way the rows around it are read and numbered.
func TestCSVHostileRows(t *testing.T) {
	t.Parallel()
	wide := "c9,2024-01-31,5,x" + strings.Repeat(",y", 9996) + "\n" // 10,000 fields
	withAttrs := func(m *Mapping) {
		m.Attributes = []Attribute{{Name: "name", Type: customer.String}}
		m.Contact.Email = "name"
	}
	for _, tc := range []struct {
		name   string
		row    string
		mod    func(*Mapping)
		day    int32   // accepted: the transaction's day
		amount float64 // accepted: its amount
		column string  // rejected: the sample's column
		reason string  // rejected: the sample's reason; "" when accepted
	}{
		// Wrong column counts (3 and 5 fields: TestCSVRejectedRows).
		{name: "one field", row: "c9\n", reason: "wrong number of fields: want 4, got 1"},
		{name: "only delimiters", row: ",,,,,,,,\n", reason: "wrong number of fields: want 4, got 9"},
		{name: "10,000 fields", row: wide, reason: "wrong number of fields: want 4, got 10000"},
		{name: "10,000 fields quoted", row: "\"c9\"" + wide[2:], reason: "wrong number of fields: want 4, got 10000"},
		{name: "four empty fields", row: ",,,\n", column: "customer_id", reason: reasonMissing},

		// Invalid UTF-8 (and NUL bytes, which the store refuses).
		{name: "overlong encoding in id", row: "c\xc0\xaf9,2024-01-31,5,x\n", column: "customer_id", reason: reasonUTF8},
		{name: "UTF-16 surrogate in id", row: "c\xed\xa0\x809,2024-01-31,5,x\n", column: "customer_id", reason: reasonUTF8},
		{name: "truncated sequence ends id", row: "c9\xe2\x82,2024-01-31,5,x\n", column: "customer_id", reason: reasonUTF8},
		{name: "Latin-1 id", row: "M\xfcller,2024-01-31,5,x\n", column: "customer_id", reason: reasonUTF8},
		{name: "NUL in short id", row: "c\x009,2024-01-31,5,x\n", column: "customer_id", reason: reasonNUL},
		{name: "NUL in 10-byte id", row: "c00\x00123456,2024-01-31,5,x\n", column: "customer_id", reason: reasonNUL},
		{name: "NUL in string attribute", row: "c9,2024-01-31,5,a\x00b\n", mod: func(m *Mapping) {
			m.Attributes = []Attribute{{Name: "name", Type: customer.String}}
		}, column: "name", reason: reasonNUL},
		{name: "NUL in email", row: "c9,2024-01-31,5,a\x00@b.c\n", mod: func(m *Mapping) { m.Contact.Email = "name" },
			column: "name", reason: reasonNUL},
		{name: "invalid UTF-8 in email", row: "c9,2024-01-31,5,\xff@b.c\n", mod: withAttrs, column: "name", reason: reasonUTF8},
		{name: "invalid UTF-8 in date", row: "c9,2024-01-3\xff,5,x\n", column: "timestamp", reason: reasonDate},
		{name: "invalid UTF-8 in amount", row: "c9,2024-01-31,5\xff,x\n", column: "amount", reason: reasonDecimal},
		{name: "invalid UTF-8 in unread column", row: "c9,2024-01-31,5,\xff\xfe\n", day: day("2024-01-31"), amount: 5},

		// Amounts: refunds are accepted; NaN, infinities and overflows are not numbers.
		{name: "negative", row: "c9,2024-01-31,-12.5,x\n", day: day("2024-01-31"), amount: -12.5},
		{name: "negative rejected", row: "c9,2024-01-31,-12.5,x\n", mod: func(m *Mapping) { m.RejectNegativeAmounts = true },
			column: "amount", reason: reasonNegative},
		{name: "nan", row: "c9,2024-01-31,nan,x\n", column: "amount", reason: reasonDecimal},
		{name: "-NaN", row: "c9,2024-01-31,-NaN,x\n", column: "amount", reason: reasonDecimal},
		{name: "Inf", row: "c9,2024-01-31,Inf,x\n", column: "amount", reason: reasonDecimal},
		{name: "+Inf", row: "c9,2024-01-31,+Inf,x\n", column: "amount", reason: reasonDecimal},
		{name: "-Infinity", row: "c9,2024-01-31,-Infinity,x\n", column: "amount", reason: reasonDecimal},
		{name: "infinity sign", row: "c9,2024-01-31,∞,x\n", column: "amount", reason: reasonDecimal},
		{name: "hex float", row: "c9,2024-01-31,0x1p3,x\n", column: "amount", reason: reasonDecimal},
		{name: "1e308", row: "c9,2024-01-31,1e308,x\n", day: day("2024-01-31"), amount: 1e308},
		{name: "-1e308", row: "c9,2024-01-31,-1e308,x\n", day: day("2024-01-31"), amount: -1e308},
		{name: "largest float", row: "c9,2024-01-31,1.7976931348623157e308,x\n", day: day("2024-01-31"), amount: math.MaxFloat64},
		{name: "just past the largest float", row: "c9,2024-01-31,1.8e308,x\n", column: "amount", reason: reasonDecimal},
		{name: "1e400", row: "c9,2024-01-31,1e400,x\n", column: "amount", reason: reasonDecimal},
		{name: "-1e400", row: "c9,2024-01-31,-1e400,x\n", column: "amount", reason: reasonDecimal},
		{name: "400-digit integer", row: "c9,2024-01-31,1" + strings.Repeat("0", 400) + ",x\n", column: "amount", reason: reasonDecimal},
		{name: "300-digit integer", row: "c9,2024-01-31,1" + strings.Repeat("0", 300) + ",x\n", day: day("2024-01-31"), amount: 1e300},
		{name: "underflow is zero", row: "c9,2024-01-31,1e-400,x\n", day: day("2024-01-31"), amount: 0},

		// Dates far in the past and the future are real days (scoring counts
		// those after the observation end as late); beyond 4 digits they are not dates.
		{name: "year 0001", row: "c9,0001-01-01,5,x\n", day: -719162, amount: 5},
		{name: "year 0000", row: "c9,0000-01-01,5,x\n", day: -719528, amount: 5},
		{name: "year 1800", row: "c9,1800-06-15,5,x\n", day: day("1800-06-15"), amount: 5},
		{name: "1800 is not a leap year", row: "c9,1800-02-29,5,x\n", column: "timestamp", reason: reasonDate},
		{name: "1900 is not a leap year", row: "c9,1900-02-29,5,x\n", column: "timestamp", reason: reasonDate},
		{name: "year 9999", row: "c9,9999-12-31,5,x\n", day: day("9999-12-31"), amount: 5},
		{name: "year 9999 compact", row: "c9,99991231,5,x\n", day: day("9999-12-31"), amount: 5},
		{name: "year 0001 compact", row: "c9,00010101,5,x\n", day: -719162, amount: 5},
		{name: "year 9999 west of UTC", row: "c9,9999-12-31T23:59:59-12:00,5,x\n", day: day("9999-12-31") + 1, amount: 5},
		{name: "year 0001 east of UTC", row: "c9,0001-01-01T00:00:00+14:00,5,x\n", day: -719163, amount: 5},
		{name: "year 0001 layout", row: "c9,01/01/0001,5,x\n", mod: func(m *Mapping) { m.DateLayout = "02/01/2006" }, day: -719162, amount: 5},
		{name: "year 9999 in a time zone", row: "c9,9999-12-31T12:00:00Z,5,x\n", mod: func(m *Mapping) { m.TimeZone = "Pacific/Kiritimati" },
			day: day("9999-12-31") + 1, amount: 5},
		{name: "year 10000", row: "c9,10000-01-01,5,x\n", column: "timestamp", reason: reasonDate},
		{name: "negative year", row: "c9,-0001-01-01,5,x\n", column: "timestamp", reason: reasonDate},
		{name: "unix seconds", row: "c9,253402300799,5,x\n", column: "timestamp", reason: reasonDate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := Mapping{MaxRejectedRatio: 1}
			if tc.mod != nil {
				tc.mod(&m)
			}
			good := "c1,2024-01-01,1,ok@example.com\n"
			if m.DateLayout != "" {
				good = "c1,01/01/2024,1,ok@example.com\n"
			}
			s, rep, err := readCSVString(t, CSV{Mapping: m}, "customer_id,timestamp,amount,name\n"+good+tc.row+good)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Rows != 3 || rep.Transactions+rep.Rejected != 3 || int64(len(s.txs)) != rep.Transactions {
				t.Fatalf("report %+v, %d transactions: a row is unaccounted for", rep, len(s.txs))
			}
			if last := s.txs[len(s.txs)-1]; last.Row != 3 {
				t.Errorf("the row after the hostile one numbered %d, want 3", last.Row)
			}
			assertNoPersonalData(t, rep, err, "c9", "Müller", "M\xfcller")
			if tc.reason != "" {
				want := []RowError{{Row: 2, Input: "transactions", Column: tc.column, Reason: tc.reason}}
				if rep.Rejected != 1 || !reflect.DeepEqual(rep.Samples, want) {
					t.Fatalf("samples %+v, want %+v", rep.Samples, want)
				}
				return
			}
			got := s.txs[1]
			if rep.Rejected != 0 || got.Row != 2 || got.Day != tc.day || got.Amount != tc.amount {
				t.Fatalf("row 2: %+v (report %+v), want day %d amount %v", got, rep, tc.day, tc.amount)
			}
		})
	}
}

// pngHead is the start of a PNG file: signature and IHDR chunk.
const pngHead = "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"

// TestCSVHostileFiles: whole inputs that cannot be read as a transactions
// file fail with an error that says why, and never with a value from them.
func TestCSVHostileFiles(t *testing.T) {
	t.Parallel()
	hdr := "customer_id,timestamp,amount\n"
	var wideHdr, wideRow strings.Builder
	wideHdr.WriteString("customer_id,timestamp,amount")
	wideRow.WriteString("c1,2024-01-01,1")
	for i := 3; i < 9999; i++ {
		wideHdr.WriteString(",x")
		wideRow.WriteString(",")
	}
	for _, tc := range []struct {
		name string
		in   []byte
		is   error    // errors.Is target; nil with want empty: no error
		want []string // parts of the error
		rows int64    // rows read when there is no error
	}{
		// 0 bytes and a bare header: TestCSVFatalErrors, TestCSVHeaderOnly.
		{name: "0 bytes gzipped", in: gz(t, ""), is: ErrEmptyInput, want: []string{"empty input: no header row (transactions)"}},
		{name: "header only gzipped", in: gz(t, hdr)},
		{name: "9,999 columns", in: []byte(wideHdr.String() + "\n" + wideRow.String() + "\n"), rows: 1},
		{name: "10,000 columns", in: []byte(wideHdr.String() + ",x\n"), want: []string{"transactions header has more than 9999 columns"}},
		{name: "100,000 columns", in: []byte(strings.Repeat("x,", 99999) + "x\n"), want: []string{"transactions header has more than 9999 columns"}},
		{name: "PNG image", in: []byte(pngHead), is: ErrNotCSV, want: []string{"not CSV text: the transactions input looks like a PNG image"}},
		{name: "PNG image gzipped", in: gz(t, pngHead), is: ErrNotCSV, want: []string{"looks like a PNG image"}},
		{name: "JPEG image", in: []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00"), is: ErrNotCSV, want: []string{"looks like a JPEG image"}},
		{name: "PDF", in: []byte("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"), is: ErrNotCSV, want: []string{"looks like a PDF document"}},
		{name: "Excel workbook", in: []byte("PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00"), is: ErrNotCSV, want: []string{"ZIP archive (an Excel .xlsx workbook?)"}},
		{name: "gzip header only", in: []byte{0x1f, 0x8b, 8, 0}, want: []string{"reading transactions: source: gzip: unexpected EOF"}},
		{name: "gzip compressed twice", in: gz(t, string(gz(t, hdr+"c1,2024-01-01,1\n"))), is: ErrNotCSV, want: []string{"looks like gzip data compressed twice"}},
		{name: "UTF-16 with BOM", in: []byte("\xff\xfec\x00u\x00s\x00t\x00o\x00m\x00e\x00r\x00_\x00i\x00d\x00\n\x00"), is: ErrNotCSV,
			want: []string{"looks like UTF-16 text (save it as UTF-8)"}},
		{name: "binary with NUL bytes", in: []byte("\x00\x01\x02\x03alice@example.com\n"), is: ErrNotCSV, want: []string{"looks like binary data"}},
		{name: "JSON document", in: []byte(`{"data": [{"customer_id": "alice@example.com", "timestamp": "2024-01-01", "amount": 1}]}`),
			is: ErrNotCSV, want: []string{"looks like JSON"}},
		{name: "JSON pretty printed", in: []byte("\xef\xbb\xbf\n  {\n  \"customer_id\": \"alice@example.com\"\n}\n"), is: ErrNotCSV, want: []string{"looks like JSON"}},
		{name: "JSON array", in: []byte(`[{"customer_id":"alice@example.com"}]`), is: ErrNotCSV, want: []string{"looks like JSON"}},
		{name: "HTML login page", in: []byte("<!DOCTYPE html>\n<html><body>Sign in, alice@example.com</body></html>\n"), is: ErrNotCSV,
			want: []string{"looks like HTML or XML"}},
		// A file without a header row: its first row is data and is not shown.
		{name: "no header row", in: []byte("alice@example.com,2024-01-01,5\nbob,2024-01-02,6\n"),
			want: []string{`no column "customer_id"`, "first row looks like data, not a header (values not shown)"}},
		{name: "no header row, wrong delimiter", in: []byte("c0012345;2024-01-01;5\n"),
			want: []string{"first row looks like data"}},
		// A real header with the wrong delimiter is shown: it helps.
		{name: "TSV read as CSV", in: []byte("customer_id\ttimestamp\tamount\nc1\t2024-01-01\t1\n"),
			want: []string{`columns are ["customer_id\ttimestamp\tamount"]`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, rep, err := readCSVString(t, CSV{Transactions: FromBytes(tc.in)}, "")
			assertNoPersonalData(t, rep, err, "alice", "bob", "c0012345")
			if tc.is == nil && tc.want == nil {
				if err != nil || rep.Rows != tc.rows || rep.Transactions != tc.rows {
					t.Fatalf("error %v, report %+v, want %d rows", err, rep, tc.rows)
				}
				return
			}
			wantErrText(t, err, tc.want...)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
		})
	}
	// A headerless file's missing column stays a typed error, without the names.
	_, _, err := readCSVString(t, CSV{}, "alice@example.com,2024-01-01,5\n")
	if mc := wantErrAs[*MissingColumnError](t, err); !mc.HeaderLooksLikeData || mc.Have != nil {
		t.Errorf("%+v", mc)
	}
}

// countingOpener opens r once, counting in *n the bytes read from it.
func countingOpener(r io.Reader, n *int64) Opener {
	return func(context.Context) (io.ReadCloser, error) {
		return io.NopCloser(readerFunc(func(p []byte) (int, error) {
			k, err := r.Read(p)
			*n += int64(k)
			return k, err
		})), nil
	}
}

// TestCSVHostileSizes: huge fields, endless lines, endless files and
// decompression bombs stop at a size limit, having read (and held) no more
// than the limit. The endless readers end after 1 GiB, so a missing limit
// fails the test instead of hanging it.
func TestCSVHostileSizes(t *testing.T) {
	t.Parallel()
	hdr := "customer_id,timestamp,amount\n"
	row := "c1,2024-01-01,1\n" // 16 bytes
	const gib = 1 << 30
	for _, tc := range []struct {
		name           string
		src            io.Reader
		c              CSV
		is             error
		want           []string
		maxRead        int64 // bytes the reader may have consumed
		minTxs, maxTxs int64
	}{
		{name: "5 MiB field", src: strings.NewReader(hdr + row + "c2,2024-01-01," + strings.Repeat("9", 5<<20) + "\n" + row),
			is: ErrRecordTooLong, want: []string{"reading transactions after row 1", "a record is limited to 4194304 bytes"},
			maxRead: DefaultMaxRecordBytes + defaultBufferSize, minTxs: 1, maxTxs: 1},
		{name: "endless line", src: &endless{head: []byte(hdr), body: []byte("x"), limit: gib}, c: CSV{MaxRecordBytes: 1 << 20},
			is: ErrRecordTooLong, want: []string{"a record is limited to 1048576 bytes"}, maxRead: 1<<20 + defaultBufferSize},
		{name: "endless header", src: &endless{body: []byte("customer_id"), limit: gib},
			is: ErrRecordTooLong, want: []string{"reading transactions header"}, maxRead: DefaultMaxRecordBytes + defaultBufferSize},
		{name: "endless rows", src: &endless{head: []byte(hdr), body: []byte(row), limit: gib}, c: CSV{MaxBytes: 8 << 20},
			is: ErrInputTooLarge, want: []string{"input too large: transactions goes on past 8388608 bytes (after decompression)"},
			maxRead: 8<<20 + 1, minTxs: (8<<20 - 29) / 16, maxTxs: (8<<20 - 29) / 16},
		{name: "no limit", src: &endless{head: []byte(hdr), body: []byte(row), limit: 8<<20 + 29}, c: CSV{MaxBytes: -1},
			is: nil, maxRead: 8<<20 + 29, minTxs: 8 << 20 / 16, maxTxs: 8 << 20 / 16},
		{name: "10,000-field rows", src: &endless{head: []byte(hdr), body: []byte("c1,2024-01-01,1" + strings.Repeat(",", 9997) + "\n"), limit: gib},
			c: CSV{MaxBytes: 8 << 20, Mapping: Mapping{MaxRejectedRatio: 1}}, is: ErrInputTooLarge, maxRead: 8<<20 + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var read int64
			c := tc.c
			c.Transactions = countingOpener(tc.src, &read)
			s, rep, err := readCSVString(t, c, "")
			if !errors.Is(err, tc.is) || tc.is == nil && err != nil {
				t.Fatalf("error %v, want %v", err, tc.is)
			}
			if tc.is != nil {
				wantErrText(t, err, tc.want...)
			}
			if read > tc.maxRead {
				t.Errorf("read %d bytes, want at most %d", read, tc.maxRead)
			}
			if n := int64(len(s.txs)); n < tc.minTxs || n > tc.maxTxs || rep.Transactions != n {
				t.Errorf("%d transactions (report %+v), want %d to %d", n, rep, tc.minTxs, tc.maxTxs)
			}
			if rep.Rows != rep.Transactions+rep.Rejected {
				t.Errorf("report %+v: rows unaccounted for", rep)
			}
		})
	}
	t.Run("gzip bomb", func(t *testing.T) {
		t.Parallel()
		src := &endless{head: []byte(hdr), body: []byte(row), limit: gib}
		zr := gzipStream(src)
		defer zr.Close()
		var compressed int64
		_, rep, err := readCSVString(t, CSV{Transactions: countingOpener(zr, &compressed), MaxBytes: 4 << 20}, "")
		if !errors.Is(err, ErrInputTooLarge) {
			t.Fatalf("error %v, want ErrInputTooLarge", err)
		}
		// What was decompressed is bounded by the limit (plus what gzip and
		// the pipe buffer), though a few kilobytes of gzip were read.
		if rep.Transactions != (4<<20-29)/16 || compressed > 1<<20 {
			t.Errorf("report %+v, %d compressed bytes read", rep, compressed)
		}
		zr.Close()
		if n := src.n.Load(); n > 64<<20 {
			t.Errorf("%d bytes inflated, want about 4 MiB (plus what gzip compresses ahead)", n)
		}
	})
}

// TestCapReader: an input of exactly the limit passes; one byte more fails.
func TestCapReader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		size, max int64
		fail      bool
	}{{0, 1, false}, {10, 10, false}, {11, 10, true}, {1 << 20, 1 << 20, false}, {1<<20 + 1, 1 << 20, true}} {
		in := bytes.Repeat([]byte("x"), int(tc.size))
		got, err := io.ReadAll(&capReader{r: bytes.NewReader(in), max: tc.max, what: "transactions"})
		if tc.fail != errors.Is(err, ErrInputTooLarge) || (!tc.fail && err != nil) {
			t.Errorf("%d bytes, limit %d: error %v", tc.size, tc.max, err)
		}
		if int64(len(got)) != min(tc.size, tc.max) {
			t.Errorf("%d bytes, limit %d: read %d", tc.size, tc.max, len(got))
		}
	}
}
