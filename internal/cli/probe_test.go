package cli

import (
	"io"
	"testing"
	"time"
)

type countW struct{ n int64 }

func (c *countW) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func TestProbeSynth(t *testing.T) {
	for _, c := range []struct{ alpha, b, split float64; years int }{
		{4.414, 2.426, 0.2, 2}, {1, 6, 0.2, 3}, {1.5, 6, 0.2, 4}, {1.2, 6, 0.2, 3}, {0.9, 4, 0.25, 3},
	} {
		o := DefaultSynth()
		o.Customers = 100000
		o.Alpha, o.B, o.Split = c.alpha, c.b, c.split
		o.Start = time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)
		o.End = o.Start.AddDate(c.years, 0, -1)
		var w countW
		t0 := time.Now()
		st, err := Synthesize(o, &w, io.Discard)
		if err != nil { t.Fatal(err) }
		t.Logf("%+v: %.2f rows/cust, %.2f days/cust, %.1f MB per 1M cust, %v", c, float64(st.Transactions)/1e5, float64(st.PurchaseDays)/1e5, float64(w.n)/1e5, time.Since(t0))
	}
}
