package scoring

import (
	"math"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/source"
	"github.com/retention-dev/retention-operator/internal/testfiles"
)

// fixedClock is a Clock that always reads t.
type fixedClock time.Time

func (c fixedClock) Now() time.Time { return time.Time(c) }

func date(s string) time.Time {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return t
}

// cdnowPath is the CDNOW sample in testdata/; a missing one fails the test.
func cdnowPath(t testing.TB) string { return testfiles.CDNOWSample(t) }

func cdnowReader(t testing.TB) source.Reader {
	return &source.CSV{Transactions: source.FromFile(cdnowPath(t)), Mapping: source.Mapping{
		CustomerID: "customer_id", Timestamp: "date", Amount: "amount", DateLayout: "20060102"}}
}

// csvReader reads transactions (customer_id,date,amount with ISO dates) from a string.
func csvReader(data string) *source.CSV {
	return &source.CSV{Transactions: source.FromBytes([]byte(data)), Mapping: source.Mapping{
		Timestamp: "date", DateLayout: "2006-01-02"}}
}

// collect runs Score and returns the result and a copy of every emitted customer by id.
func collect(t testing.TB, r source.Reader, o Options) (*Result, map[string]customer.Scored) {
	t.Helper()
	out := map[string]customer.Scored{}
	res, err := Score(t.Context(), r, o, func(c *customer.Scored) error {
		cp := *c
		if c.Scores.Custom != nil {
			cp.Scores.Custom = map[string]float64{}
			for k, v := range c.Scores.Custom {
				cp.Scores.Custom[k] = v
			}
		}
		if c.Attributes != nil {
			cp.Attributes = customer.Attributes{}
			for k, v := range c.Attributes {
				cp.Attributes[k] = v
			}
		}
		if _, dup := out[c.ID]; dup {
			t.Errorf("customer %q emitted twice", c.ID)
		}
		out[c.ID] = cp
		return nil
	})
	if err != nil {
		t.Fatalf("Score: %v", err)
	}
	checkNoNaN(t, res, out)
	return res, out
}

// checkNoNaN asserts that nothing in the result or any customer is NaN or infinite.
func checkNoNaN(t testing.TB, res *Result, cs map[string]customer.Scored) {
	t.Helper()
	bad := func(what string, v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Errorf("%s = %v", what, v)
		}
	}
	for _, m := range res.Models {
		bad(string(m.Name)+" LL", m.LogLikelihood)
		for k, v := range m.Params {
			bad(string(m.Name)+"."+k, v)
		}
		if h := m.Holdout; h != nil {
			for _, v := range []float64{h.Actual, h.Predicted, h.MAE, h.RMSE, h.Customers} {
				bad(string(m.Name)+" holdout", v)
			}
			for _, b := range h.Buckets {
				bad("bucket", b.MeanActual)
				bad("bucket", b.MeanPredicted)
			}
		}
	}
	for k, v := range res.Spend.Params {
		bad("spend."+k, v)
	}
	bad("spend LL", res.Spend.LogLikelihood)
	bad("mean spend", res.Spend.MeanSpend)
	p := res.Population
	bad("retention", p.RetentionRate)
	bad("total value", p.TotalExpectedValue)
	for id, c := range cs {
		f, s := c.Features, c.Scores
		for _, v := range []float64{f.Recency, f.Age, f.Monetary, f.TotalSpend, s.PAlive, s.ExpectedPurchases,
			s.ExpectedSpend, s.ExpectedValue, s.ValuePercentile, s.FrequencyPercentile, s.RecencyPercentile} {
			bad("customer "+id, v)
		}
		for k, v := range s.Custom {
			bad("customer "+id+" custom "+k, v)
		}
		if s.PAlive < 0 || s.PAlive > 1 {
			t.Errorf("customer %s P(alive) = %v", id, s.PAlive)
		}
		for _, q := range []int8{s.RecencyScore, s.FrequencyScore, s.MonetaryScore} {
			if q < 1 || q > 5 {
				t.Errorf("customer %s quintile %d", id, q)
			}
		}
	}
}
