package scoring

import (
	"context"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
	"github.com/retention-dev/retention-operator/internal/source"
)

// TestCustomerRecords: attributes and contact merge by id (the last record
// wins); a customer without purchases is counted, not scored.
func TestCustomerRecords(t *testing.T) {
	t.Parallel()
	customers := `customer_id,plan,score,vip,since,email,opt_out
a,gold,4.5,true,2020-01-01,a@example.org,false
b,silver,,false,,b@example.org,true
z,bronze,1,false,,z@example.org,false
`
	for _, w := range []int{1, 2} {
		r := &source.CSV{
			Customers:    source.FromBytes([]byte(customers)),
			Transactions: source.FromBytes([]byte(smallLog)),
			Mapping: source.Mapping{Timestamp: "date", DateLayout: "2006-01-02",
				Attributes: []source.Attribute{{Name: "plan"}, {Name: "score", Type: customer.Number},
					{Name: "vip", Type: customer.Bool}, {Name: "since", Type: customer.Timestamp}},
				Contact: source.ContactColumns{Email: "email", OptOut: "opt_out"}},
		}
		end := date("2024-03-31")
		res, cs := collect(t, r, Options{ObservationEnd: end, Clock: fixedClock(end), Workers: w})
		if res.Unscored != 1 || res.Customers != 5 {
			t.Errorf("customers %d, unscored %d; want 5, 1", res.Customers, res.Unscored)
		}
		if _, ok := cs["z"]; ok {
			t.Error("z has no purchase but was scored")
		}
		a := cs["a"]
		if a.Attributes["plan"] != "gold" || a.Attributes["score"] != 4.5 || a.Attributes["vip"] != true ||
			!a.Attributes["since"].(time.Time).Equal(date("2020-01-01")) || a.Contact.Email != "a@example.org" || a.Contact.OptOut {
			t.Errorf("a: %+v %+v", a.Attributes, a.Contact)
		}
		b := cs["b"]
		if b.Attributes["plan"] != "silver" || b.Attributes["vip"] != false || !b.Contact.OptOut {
			t.Errorf("b: %+v %+v", b.Attributes, b.Contact)
		}
		if _, ok := b.Attributes["score"]; ok {
			t.Errorf("b: empty score present: %+v", b.Attributes)
		}
		if c := cs["c"]; len(c.Attributes) != 0 || c.Contact != (customer.Contact{}) {
			t.Errorf("c has no customer record but %+v %+v", c.Attributes, c.Contact)
		}
	}
}

// TestLastRecordWins: a later customer record replaces an earlier one.
func TestLastRecordWins(t *testing.T) {
	t.Parallel()
	r := readerFunc(func(ctx context.Context, s source.Sink) (*source.Report, error) {
		c := &source.Customer{ID: "a", Attributes: customer.Attributes{"plan": "gold", "seats": 3.0}}
		if err := s.Customer(c); err != nil {
			return nil, err
		}
		c.Attributes = customer.Attributes{"plan": "silver"}
		c.Contact.Email = "new@example.org"
		if err := s.Customer(c); err != nil {
			return nil, err
		}
		for _, d := range []int32{19700, 19710, 19720} {
			if err := s.Transaction(&source.Transaction{CustomerID: []byte("a"), Day: d, Amount: 5}); err != nil {
				return nil, err
			}
		}
		return &source.Report{}, nil
	})
	res, cs := collect(t, r, Options{ObservationEnd: dayTime(19730)})
	a := cs["a"]
	if len(a.Attributes) != 1 || a.Attributes["plan"] != "silver" || a.Contact.Email != "new@example.org" {
		t.Errorf("a: %+v %+v", a.Attributes, a.Contact)
	}
	_ = res
}

type readerFunc func(context.Context, source.Sink) (*source.Report, error)

func (f readerFunc) Read(ctx context.Context, s source.Sink) (*source.Report, error) {
	return f(ctx, s)
}

// TestSummaries: pre-aggregated (x, t_x, T, monetary) rows skip the
// aggregation and fit exactly as the transactions they summarise.
func TestSummaries(t *testing.T) {
	t.Parallel()
	o := Options{TimeUnit: 7, ObservationEnd: date("1997-09-30"), Clock: fixedClock(date("2000-01-01"))}
	ref, cs := collect(t, cdnowReader(t), o)
	r := readerFunc(func(ctx context.Context, s source.Sink) (*source.Report, error) {
		m := &source.Summary{Attributes: customer.Attributes{}}
		for id, c := range cs {
			f := c.Features
			m.ID, m.Frequency, m.Recency, m.Age, m.Monetary = id, f.Frequency, f.Recency, f.Age, f.Monetary
			clear(m.Attributes)
			if f.Frequency > 3 {
				m.Attributes["loyal"] = true
			}
			if err := s.Summary(m); err != nil {
				return nil, err
			}
		}
		return &source.Report{Summaries: int64(len(cs))}, nil
	})
	res, sc := collect(t, r, o)
	a, b := ref.Published(), res.Published()
	if a == nil || b == nil || a.Name != btyd.NameBGNBD || b.Name != btyd.NameBGNBD {
		t.Fatalf("published %+v and %+v", a, b)
	}
	for k, v := range a.Params {
		if !approx(b.Params[k], v) {
			t.Errorf("%s from summaries %v, from transactions %v", k, b.Params[k], v)
		}
	}
	if len(sc) != len(cs) || res.Triples != ref.Triples {
		t.Errorf("customers %d vs %d, triples %d vs %d", len(sc), len(cs), res.Triples, ref.Triples)
	}
	for id, c := range sc {
		want := cs[id]
		if !approx(c.Scores.PAlive, want.Scores.PAlive) || !approx(c.Scores.ExpectedPurchases, want.Scores.ExpectedPurchases) ||
			c.Features.RecencyDays != want.Features.RecencyDays || c.Features.TenureDays != want.Features.TenureDays {
			t.Fatalf("%s: from summary %+v\nfrom transactions %+v", id, c, want)
		}
		if (want.Features.Frequency > 3) != (c.Attributes["loyal"] == true) {
			t.Errorf("%s: attributes %+v", id, c.Attributes)
		}
	}
}
