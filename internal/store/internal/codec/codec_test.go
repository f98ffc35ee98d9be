package codec

import (
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
)

func sample() *customer.Scored {
	return &customer.Scored{
		ID: "c1",
		Features: customer.Features{Frequency: 3, Recency: 1.5, Age: 9, Monetary: 12.25, Transactions: 5, TotalSpend: 61,
			FirstPurchase: time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC), LastPurchase: time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC),
			RecencyDays: 10, TenureDays: 70},
		Scores: customer.Scores{PAlive: 0.5, ExpectedPurchases: 1, ExpectedSpend: 2, ExpectedValue: 3, RecencyScore: 1, FrequencyScore: 2,
			MonetaryScore: 3, ValuePercentile: 4, FrequencyPercentile: 5, RecencyPercentile: 6, Custom: map[string]float64{"x": math.Pi}},
		Attributes: customer.Attributes{"name": "نیلوفر", "n": 2.5, "b": true, "t": time.Date(1969, 7, 20, 20, 17, 40, 5, time.UTC)},
		Contact:    customer.Contact{Email: "a@b.c", Phone: "+1", Timezone: "UTC", Locale: "en", OptOut: true},
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	in := sample()
	b, err := AppendData(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	out := customer.Scored{ID: in.ID}
	d := NewDecoder()
	if err := d.Decode(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&out, in) {
		t.Errorf("round trip:\n got %+v\nwant %+v", out, *in)
	}
	// A record without maps clears the reused ones.
	b, _ = AppendData(nil, &customer.Scored{ID: "c2"})
	if err := d.Decode(b, &out); err != nil || out.Attributes != nil || out.Scores.Custom != nil || out.Contact.Email != "" {
		t.Errorf("second decode = %+v, %v", out, err)
	}
}

// TestTruncatedNeverPanics decodes every prefix of a record and garbage.
func TestTruncatedNeverPanics(t *testing.T) {
	t.Parallel()
	b, err := AppendData(nil, sample())
	if err != nil {
		t.Fatal(err)
	}
	d := NewDecoder()
	var c customer.Scored
	for i := 0; i < len(b); i++ {
		if err := d.Decode(b[:i], &c); err == nil {
			t.Errorf("prefix of %d/%d bytes decoded without error", i, len(b))
		}
	}
	if err := d.Decode(append(b, 0), &c); err == nil {
		t.Error("trailing byte accepted")
	}
	if err := d.Decode([]byte{2}, &c); err == nil {
		t.Error("unknown version accepted")
	}
}

func TestInvalid(t *testing.T) {
	t.Parallel()
	for _, c := range []*customer.Scored{
		{ID: "x", Attributes: customer.Attributes{"i": 1}},
		{ID: "x", Attributes: customer.Attributes{"\xff": "v"}},
		{ID: "x", Scores: customer.Scores{Custom: map[string]float64{"a\x00": 1}}},
	} {
		if _, err := AppendData(nil, c); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("AppendData(%+v) = %v, want ErrInvalid", c, err)
		}
	}
	for _, c := range []*customer.Scored{{}, {ID: "\xff"}, {ID: "x", Contact: customer.Contact{Phone: "\x00"}}} {
		if err := Check(c); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Check(%+v) = %v, want ErrInvalid", c, err)
		}
	}
}
