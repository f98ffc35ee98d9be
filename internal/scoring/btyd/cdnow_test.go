package btyd

import (
	"encoding/csv"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/testfiles"
)

// cdnowCustomer is one customer of the CDNOW sample in the usual recipe:
// weeks, same-day purchases merged, calibration ending 1997-09-30, holdout
// 1997-10-01 … 1998-06-30.
type cdnowCustomer struct {
	x        int32
	tx, T    float64
	monetary float64 // mean value of the repeat purchase days in calibration (0 if x = 0)
	holdout  int     // purchase days in the holdout
}

var (
	calEnd     = time.Date(1997, 9, 30, 0, 0, 0, 0, time.UTC)
	holdoutEnd = time.Date(1998, 6, 30, 0, 0, 0, 0, time.UTC)
)

const holdoutWeeks = 39.0

// loadCDNOW reads the CDNOW sample in the repository's testdata/;
// a missing one fails the test.
func loadCDNOW(t testing.TB) []cdnowCustomer {
	t.Helper()
	f, err := os.Open(testfiles.CDNOWSample(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd := csv.NewReader(f)
	if _, err := rd.Read(); err != nil { // header
		t.Fatal(err)
	}
	days := map[string]map[time.Time]float64{} // customer -> day -> amount
	var order []string
	for {
		rec, err := rd.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		day, err := time.Parse("20060102", rec[1])
		if err != nil {
			t.Fatal(err)
		}
		amt, err := strconv.ParseFloat(rec[3], 64)
		if err != nil {
			t.Fatal(err)
		}
		if days[rec[0]] == nil {
			days[rec[0]] = map[time.Time]float64{}
			order = append(order, rec[0])
		}
		days[rec[0]][day] += amt
	}
	week := 7 * 24 * time.Hour
	var out []cdnowCustomer
	for _, id := range order {
		var first, last time.Time
		var cal []time.Time
		c := cdnowCustomer{}
		for d := range days[id] {
			if d.After(calEnd) {
				if !d.After(holdoutEnd) {
					c.holdout++
				}
				continue
			}
			cal = append(cal, d)
			if first.IsZero() || d.Before(first) {
				first = d
			}
			if d.After(last) {
				last = d
			}
		}
		if len(cal) == 0 {
			continue // first purchase after calibration: not in the cohort
		}
		c.x = int32(len(cal) - 1)
		c.tx = float64(last.Sub(first)) / float64(week)
		c.T = float64(calEnd.Sub(first)) / float64(week)
		if c.x > 0 {
			var sum float64
			for _, d := range cal {
				if !d.Equal(first) {
					sum += days[id][d]
				}
			}
			c.monetary = sum / float64(c.x)
		}
		out = append(out, c)
	}
	return out
}

func cdnowData(t testing.TB) ([]cdnowCustomer, *Data) {
	cs := loadCDNOW(t)
	comp := NewCompressor()
	for _, c := range cs {
		if err := comp.Add(c.x, c.tx, c.T); err != nil {
			t.Fatal(err)
		}
	}
	d, err := comp.Data()
	if err != nil {
		t.Fatal(err)
	}
	return cs, d
}
