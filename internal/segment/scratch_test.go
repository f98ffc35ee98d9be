package segment

import (
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
)

func TestScratch(t *testing.T) {
	s := Schema{Attributes: map[string]customer.AttributeType{"complaints": customer.Number, "first_name": customer.String, "vip": customer.Bool, "signup": customer.Timestamp}, CustomScores: []string{"valueAtRisk"}}
	e, err := NewEnv(s, EnvOptions{})
	if err != nil { t.Fatal(err) }
	for _, r := range []string{
		"customer.pAlive < 0.5 && customer.recencyDays <= 180",
		"customer.pAliv < 0.5",
		"customer.attributes.complaint > 0",
		"customer.attributes.complaints > 0",
		"has(customer.attributes.complaints)",
		"has(customer.attributes.nope)",
		"has(customer.pAlive)",
		"customer.custom.valueAtRisk > 100.0",
		"customer.contact.optOut",
		"customer.contact.optout",
		"customer.lastPurchase > now - duration('720h')",
		"customer.pAlive",
		"customer.attributes.first_name == 'نیلوفر'",
		"customer.attributes.first_name > 3",
		"customer.pAlive.x > 1",
		"customer > 1",
		"[1,2,3].all(x, [1,2,3].all(y, x < y))",
		"customer.attributes.first_name.matches('^a.*b$')",
		"has({'a':1}.a)",
		"1/0 == 1",
	} {
		rule, err := e.Compile(r)
		if err != nil { t.Logf("%s\n   -> %v", r, err); continue }
		mn, mx := rule.EstimatedCost()
		m := rule.NewMatcher(time.Now())
		c := &customer.Scored{ID: "c1", Attributes: customer.Attributes{"first_name": "نیلوفر"}}
		c.Scores.PAlive = 0.3
		ok, err := m.Match(c)
		t.Logf("%s\n   OK cost %d..%d match=%v err=%v", r, mn, mx, ok, err)
	}
}
