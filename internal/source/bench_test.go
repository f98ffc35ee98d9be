package source

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The benchmark input: rows like "c0012345,20240131,23.50" for 1 M
// customers. SOURCE_BENCH_ROWS sets the row count (default 1 M; the
// production-sized file is 8.3 M rows, ~200 MB).
var benchInput = sync.OnceValue(func() []byte {
	rows := 1_000_000
	if s := os.Getenv("SOURCE_BENCH_ROWS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			rows = n
		}
	}
	return genTransactions(rows, 1_000_000, 42)
})

// genTransactions writes n rows for the given number of customers.
func genTransactions(n, customers int, seed uint64) []byte {
	buf := make([]byte, 0, n*24+64)
	buf = append(buf, "customer_id,date,amount\n"...)
	x := seed | 1
	rnd := func() uint64 { // xorshift64*
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		return x * 2685821657736338717
	}
	start := time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		r := rnd()
		c := int(r % uint64(customers))
		buf = append(buf, 'c')
		s := strconv.Itoa(c)
		for k := len(s); k < 7; k++ {
			buf = append(buf, '0')
		}
		buf = append(buf, s...)
		buf = append(buf, ',')
		d := start.AddDate(0, 0, int((r>>20)%1095))
		buf = d.AppendFormat(buf, "20060102")
		buf = append(buf, ',')
		cents := 100 + (r>>32)%20000
		buf = strconv.AppendUint(buf, cents/100, 10)
		buf = append(buf, '.')
		if cc := cents % 100; cc < 10 {
			buf = append(buf, '0')
		}
		buf = strconv.AppendUint(buf, cents%100, 10)
		buf = append(buf, '\n')
	}
	return buf
}

// cpuTime is the process's user+system CPU time: on a shared machine it
// moves less than wall time when other work competes for the cores.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportRows adds rows/s (wall) and CPU ns/row.
func reportRows(b *testing.B, rows int, cpu0 time.Duration) {
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(rows*b.N), "cpu-ns/row")
}

// countSink sums what it sees so nothing is optimised away.
type countSink struct {
	n     int64
	days  int64
	total float64
	idLen int
}

func (s *countSink) Transaction(t *Transaction) error {
	s.n++
	s.days += int64(t.Day)
	s.total += t.Amount
	s.idLen += len(t.CustomerID)
	return nil
}
func (s *countSink) Customer(*Customer) error { return nil }
func (s *countSink) Summary(*Summary) error   { return nil }

func benchMapping() Mapping {
	return Mapping{Timestamp: "date", DateLayout: "20060102"}
}

func BenchmarkCSVRead(b *testing.B) {
	p, err := benchMapping().compile()
	if err != nil {
		b.Fatal(err)
	}
	benchRead(b, func(data []byte, s *countSink) (*Report, error) {
		rep := &Report{}
		err := readCSV(context.Background(), bytes.NewReader(data), p, Transactions, true, ',', 0, s, rep)
		return rep, err
	})
}

// benchRead reads the benchmark input with read b.N times and fails unless
// every row arrived.
func benchRead(b *testing.B, read func(data []byte, s *countSink) (*Report, error)) {
	data := benchInput()
	rows := bytes.Count(data, []byte{'\n'}) - 1
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		var s countSink
		rep, err := read(data, &s)
		if err != nil {
			b.Fatal(err)
		}
		if s.n != int64(rows) || rep.Rejected != 0 || rep.Erased != 0 {
			b.Fatalf("read %d rows, %d rejected, %d erased, want %d", s.n, rep.Rejected, rep.Erased, rows)
		}
	}
	reportRows(b, rows, cpu0)
}

// BenchmarkEncodingCSVScan is the floor the task measures against: a bare
// encoding/csv scan (ReuseRecord), no parsing of values.
func BenchmarkEncodingCSVScan(b *testing.B) {
	data := benchInput()
	rows := bytes.Count(data, []byte{'\n'})
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		r := csv.NewReader(bytes.NewReader(data))
		r.ReuseRecord = true
		n := 0
		for {
			_, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != rows {
			b.Fatalf("scanned %d rows, want %d", n, rows)
		}
	}
	reportRows(b, rows, cpu0)
}

// BenchmarkEncodingCSVParse is encoding/csv plus the same value parsing
// (time.Parse, strconv.ParseFloat) done the ordinary way.
func BenchmarkEncodingCSVParse(b *testing.B) {
	data := benchInput()
	rows := bytes.Count(data, []byte{'\n'}) - 1
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		r := csv.NewReader(bytes.NewReader(data))
		r.ReuseRecord = true
		if _, err := r.Read(); err != nil {
			b.Fatal(err)
		}
		var s countSink
		for {
			rec, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			t, err := time.Parse("20060102", rec[1])
			if err != nil {
				b.Fatal(err)
			}
			f, err := strconv.ParseFloat(rec[2], 64)
			if err != nil {
				b.Fatal(err)
			}
			_ = s.Transaction(&Transaction{CustomerID: []byte(rec[0]), Day: int32(t.Unix() / 86400), Amount: f})
		}
		if s.n != int64(rows) {
			b.Fatalf("read %d rows, want %d", s.n, rows)
		}
	}
	reportRows(b, rows, cpu0)
}

// quoteAll rewrites a generated file with every field quoted (as many
// exporters write them), which takes the RFC 4180 path for every line.
func quoteAll(data []byte) []byte {
	out := make([]byte, 0, len(data)*3/2)
	for _, line := range bytes.SplitAfter(data, []byte{'\n'}) {
		line = bytes.TrimSuffix(line, []byte{'\n'})
		if len(line) == 0 {
			continue
		}
		out = append(out, '"')
		out = append(out, bytes.ReplaceAll(line, []byte{','}, []byte(`","`))...)
		out = append(out, '"', '\r', '\n')
	}
	return out
}

// rfc3339 rewrites the dates of a generated file as RFC 3339 instants.
func rfc3339(data []byte) []byte {
	out := make([]byte, 0, len(data)*2)
	for i, line := range bytes.SplitAfter(data, []byte{'\n'}) {
		f := bytes.Split(bytes.TrimSuffix(line, []byte{'\n'}), []byte{','})
		if len(f) != 3 {
			continue
		}
		if i > 0 {
			d := f[1]
			f[1] = []byte(fmt.Sprintf("%s-%s-%sT13:45:00.5+03:30", d[:4], d[4:6], d[6:]))
		}
		out = append(out, bytes.Join(f, []byte{','})...)
		out = append(out, '\n')
	}
	return out
}

func BenchmarkCSVReadQuoted(b *testing.B) {
	data := quoteAll(benchInput())
	rows := bytes.Count(data, []byte{'\n'}) - 1
	p, err := benchMapping().compile()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		var s countSink
		if err := readCSV(context.Background(), bytes.NewReader(data), p, Transactions, true, ',', 0, &s, &Report{}); err != nil {
			b.Fatal(err)
		}
		if s.n != int64(rows) {
			b.Fatalf("read %d rows, want %d", s.n, rows)
		}
	}
	reportRows(b, rows, cpu0)
}

// TestZeroAllocsPerRow: reading ten times more rows costs no more
// allocations (the buffer, header and per-read setup are per read, not per
// row) on the fast path, on the RFC 4180 path and with RFC 3339 instants
// in a time zone. (Not parallel: testing.AllocsPerRun refuses to run in a
// parallel test.)
func TestZeroAllocsPerRow(t *testing.T) {
	small, large := genTransactions(20_000, 5_000, 1), genTransactions(200_000, 50_000, 1)
	for _, tc := range []struct {
		name string
		m    Mapping
		conv func([]byte) []byte
	}{
		{"fast path", benchMapping(), func(b []byte) []byte { return b }},
		{"quoted", benchMapping(), quoteAll},
		{"rfc3339 in a zone", Mapping{Timestamp: "date", TimeZone: "Europe/Berlin"}, rfc3339},
	} {
		p, err := tc.m.compile()
		if err != nil {
			t.Fatal(err)
		}
		allocs := func(data []byte) float64 {
			return testing.AllocsPerRun(3, func() {
				var s countSink
				rep := &Report{}
				if err := readCSV(context.Background(), bytes.NewReader(data), p, Transactions, true, ',', 0, &s, rep); err != nil {
					t.Fatal(err)
				}
				if rep.Rejected != 0 || s.n == 0 {
					t.Fatalf("%s: %+v", tc.name, rep)
				}
			})
		}
		a, b := allocs(tc.conv(small)), allocs(tc.conv(large))
		if b > a {
			t.Errorf("%s: allocations grow with rows: %v for 20k rows, %v for 200k rows", tc.name, a, b)
		}
		t.Logf("%s: allocations per read: %v (20k rows), %v (200k rows)", tc.name, a, b)
	}
}
