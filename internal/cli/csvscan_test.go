package cli

import (
	"bufio"
	"context"

	"encoding/csv"
	"fmt"
	"github.com/retention-dev/retention-operator/internal/source"
	"io"
	"os"
	"time"
)

// csvScan reads a CSV with encoding/csv, touching every field, and prints
// the time it took: the floor under any scoring of the same file.
func csvScan(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: csvscan FILE")
		return 2
	}
	start := time.Now()
	f, err := os.Open(args[0])
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReaderSize(f, 1<<20))
	r.ReuseRecord = true
	var rows, bytes int64
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		rows++
		for _, v := range rec {
			bytes += int64(len(v))
		}
	}
	el := time.Since(start).Seconds()
	fmt.Fprintf(stdout, "%-24s %8.3f s %12.0f rows/s  %d rows  peak RSS %.0f MiB\n", "encoding/csv scan", el, float64(rows-1)/el, rows-1, peakRSSMiB())
	return 0
}

// sourceScan reads a transactions CSV with internal/source into a sink
// that only counts: the floor of the scoring job's read stage.
func sourceScan(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: sourcescan FILE")
		return 2
	}
	start := time.Now()
	var n int64
	var sum float64
	r := &source.CSV{Transactions: source.FromFile(args[0]), Mapping: source.Mapping{Timestamp: "date", MaxRejectedRatio: 1}}
	_, err := r.Read(context.Background(), source.SinkFuncs{OnTransaction: func(t *source.Transaction) error {
		n++
		sum += t.Amount + float64(t.Day) + float64(len(t.CustomerID))
		return nil
	}})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	el := time.Since(start).Seconds()
	fmt.Fprintf(stdout, "%-24s %8.3f s %12.0f rows/s  %d rows  peak RSS %.0f MiB\n", "internal/source scan", el, float64(n)/el, n, peakRSSMiB())
	return 0
}
