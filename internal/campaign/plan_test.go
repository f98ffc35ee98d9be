package campaign

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
)

const testUID = "5d2c1f0e-0000-4000-8000-00000000abcd"

// idsByBucket returns a customer id held out at threshold 1000 (10%) and
// one that is not.
func idsByBucket(t *testing.T) (held, treated string) {
	t.Helper()
	for i := 0; held == "" || treated == ""; i++ {
		id := fmt.Sprintf("cust-%d", i)
		if Bucket(testUID, id) < 1000 {
			if held == "" {
				held = id
			}
		} else if treated == "" {
			treated = id
		}
	}
	return held, treated
}

func planCustomer(id string) *customer.Scored {
	c := sampleCustomer()
	c.ID = id
	return c
}

func TestPlannerPlan(t *testing.T) {
	t.Parallel()
	held, treated := idsByBucket(t)
	// 2026-01-10 22:00 UTC: 23:00 in Berlin (quiet), 07:00 on the 11th in
	// Tokyo (quiet), 17:00 in New York (not quiet).
	now := utc("2026-01-10T22:00:00Z")
	quiet := &QuietHours{Start: 21 * 60, End: 8 * 60}
	base := PlanConfig{
		CampaignUID:      testUID,
		RequireEmail:     true,
		OptOutAttribute:  "no_marketing",
		MaxContacts:      3,
		HoldoutThreshold: 1000,
		Variants:         []Variant{{"a", 1}, {"b", 1}},
		Shards:           8,
		Quiet:            quiet,
		DefaultZone:      mustZone(t, "America/New_York"),
		Now:              now,
		Fields:           []string{"Attributes", "ID"},
	}
	type want struct {
		group     store.TargetGroup
		state     store.TargetState
		reason    string
		notBefore time.Time
		zone      string // effective Data.TimeZone for the eligible
		fallback  bool
	}
	excluded := func(reason string) want {
		return want{group: store.GroupExcluded, state: store.StateSkipped, reason: reason}
	}
	tests := []struct {
		name   string
		cfg    func(*PlanConfig)
		member func(m *store.AudienceMember)
		id     string
		want   want
	}{
		{"treatment, quiet in Berlin", nil, nil, treated,
			want{store.GroupTreatment, store.StatePending, "", utc("2026-01-11T07:00:00Z"), "Europe/Berlin", false}},
		{"holdout", nil, nil, held,
			want{store.GroupHoldout, store.StateSkipped, store.ReasonHoldout, time.Time{}, "Europe/Berlin", false}},
		{"no quiet hours", func(c *PlanConfig) { c.Quiet = nil }, nil, treated,
			want{store.GroupTreatment, store.StatePending, "", time.Time{}, "Europe/Berlin", false}},
		{"quiet in Tokyo until 08:00 JST", nil, func(m *store.AudienceMember) { m.Customer.Contact.Timezone = "Asia/Tokyo" }, treated,
			want{store.GroupTreatment, store.StatePending, "", utc("2026-01-10T23:00:00Z"), "Asia/Tokyo", false}},
		{"missing zone: campaign's, not quiet", nil, func(m *store.AudienceMember) { m.Customer.Contact.Timezone = "" }, treated,
			want{store.GroupTreatment, store.StatePending, "", time.Time{}, "America/New_York", true}},
		{"invalid zone: campaign's", nil, func(m *store.AudienceMember) { m.Customer.Contact.Timezone = "Moon/Base" }, treated,
			want{store.GroupTreatment, store.StatePending, "", time.Time{}, "America/New_York", true}},
		{"Local is not a customer zone", nil, func(m *store.AudienceMember) { m.Customer.Contact.Timezone = "Local" }, treated,
			want{store.GroupTreatment, store.StatePending, "", time.Time{}, "America/New_York", true}},
		{"holdout carries no zone (never contacted)", nil, func(m *store.AudienceMember) { m.Customer.Contact.Timezone = "" }, held,
			want{store.GroupHoldout, store.StateSkipped, store.ReasonHoldout, time.Time{}, "America/New_York", true}},
		{"dry run", func(c *PlanConfig) { c.DryRun = true }, nil, treated,
			want{store.GroupTreatment, store.StateSkipped, store.ReasonDryRun, utc("2026-01-11T07:00:00Z"), "Europe/Berlin", false}},
		{"dry run holdout", func(c *PlanConfig) { c.DryRun = true }, nil, held,
			want{store.GroupHoldout, store.StateSkipped, store.ReasonHoldout, time.Time{}, "Europe/Berlin", false}},
		{"recorded holdout beats the bucket", nil, func(m *store.AudienceMember) { m.RecordedGroup = store.GroupHoldout }, treated,
			want{store.GroupHoldout, store.StateSkipped, store.ReasonHoldout, time.Time{}, "Europe/Berlin", false}},
		{"recorded treatment beats the bucket", nil, func(m *store.AudienceMember) { m.RecordedGroup = store.GroupTreatment }, held,
			want{store.GroupTreatment, store.StatePending, "", utc("2026-01-11T07:00:00Z"), "Europe/Berlin", false}},
		{"zero holdout", func(c *PlanConfig) { c.HoldoutThreshold = 0 }, nil, held,
			want{store.GroupTreatment, store.StatePending, "", utc("2026-01-11T07:00:00Z"), "Europe/Berlin", false}},
		{"no email, not required", func(c *PlanConfig) { c.RequireEmail = false }, func(m *store.AudienceMember) { m.Customer.Contact.Email = "" }, treated,
			want{store.GroupTreatment, store.StatePending, "", utc("2026-01-11T07:00:00Z"), "Europe/Berlin", false}},
		{"under the cap", nil, func(m *store.AudienceMember) { m.Contacts = 2 }, treated,
			want{store.GroupTreatment, store.StatePending, "", utc("2026-01-11T07:00:00Z"), "Europe/Berlin", false}},
		{"no cap", func(c *PlanConfig) { c.MaxContacts = 0 }, func(m *store.AudienceMember) { m.Contacts = 1000 }, treated,
			want{store.GroupTreatment, store.StatePending, "", utc("2026-01-11T07:00:00Z"), "Europe/Berlin", false}},
		{"opt-out attribute false", nil, func(m *store.AudienceMember) { m.Customer.Attributes["no_marketing"] = false }, treated,
			want{store.GroupTreatment, store.StatePending, "", utc("2026-01-11T07:00:00Z"), "Europe/Berlin", false}},
		{"opt-out attribute not a bool", nil, func(m *store.AudienceMember) { m.Customer.Attributes["no_marketing"] = "true" }, treated,
			want{store.GroupTreatment, store.StatePending, "", utc("2026-01-11T07:00:00Z"), "Europe/Berlin", false}},
		{"opt-out attribute not configured", func(c *PlanConfig) { c.OptOutAttribute = "" }, func(m *store.AudienceMember) { m.Customer.Attributes["no_marketing"] = true }, treated,
			want{store.GroupTreatment, store.StatePending, "", utc("2026-01-11T07:00:00Z"), "Europe/Berlin", false}},

		// Exclusions, each alone and then in pairs to pin their order.
		{"no email", nil, func(m *store.AudienceMember) { m.Customer.Contact.Email = "  " }, treated, excluded(store.ReasonUnreachable)},
		{"contact opt-out", nil, func(m *store.AudienceMember) { m.Customer.Contact.OptOut = true }, treated, excluded(store.ReasonOptedOut)},
		{"opt-out attribute", nil, func(m *store.AudienceMember) { m.Customer.Attributes["no_marketing"] = true }, held, excluded(store.ReasonOptedOut)},
		{"opt-out list", nil, func(m *store.AudienceMember) { m.OptedOut = true }, treated, excluded(store.ReasonOptedOut)},
		{"suppressed", nil, func(m *store.AudienceMember) { m.Suppressed = true }, treated, excluded(store.ReasonSuppressed)},
		{"capped", nil, func(m *store.AudienceMember) { m.Contacts = 3 }, treated, excluded(store.ReasonCapped)},
		{"capped, over", nil, func(m *store.AudienceMember) { m.Contacts = 9 }, held, excluded(store.ReasonCapped)},
		{"excluded despite a recorded group", nil, func(m *store.AudienceMember) { m.Suppressed, m.RecordedGroup = true, store.GroupHoldout }, treated, excluded(store.ReasonSuppressed)},
		{"unreachable before opted out", nil, func(m *store.AudienceMember) { m.Customer.Contact.Email, m.OptedOut = "", true }, treated, excluded(store.ReasonUnreachable)},
		{"opted out before suppressed", nil, func(m *store.AudienceMember) { m.OptedOut, m.Suppressed = true, true }, treated, excluded(store.ReasonOptedOut)},
		{"opted out before capped", nil, func(m *store.AudienceMember) { m.Customer.Contact.OptOut, m.Contacts = true, 5 }, treated, excluded(store.ReasonOptedOut)},
		{"suppressed before capped", nil, func(m *store.AudienceMember) { m.Suppressed, m.Contacts = true, 5 }, treated, excluded(store.ReasonSuppressed)},
		{"all four", nil, func(m *store.AudienceMember) {
			m.Customer.Contact.Email, m.OptedOut, m.Suppressed, m.Contacts = "", true, true, 5
		}, treated, excluded(store.ReasonUnreachable)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := base
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			p, err := NewPlanner(cfg)
			if err != nil {
				t.Fatal(err)
			}
			m := &store.AudienceMember{Customer: planCustomer(tt.id)}
			if tt.member != nil {
				tt.member(m)
			}
			// The store zeroes the target; a stale one must not leak through.
			tgt := &store.NewTarget{Variant: "stale", Shard: 99, Reason: "stale", Data: store.TargetData{Address: "stale"}}
			if err := p.Plan(m, tgt); err != nil {
				t.Fatal(err)
			}
			w := tt.want
			if tgt.CustomerID != tt.id || tgt.Group != w.group || tgt.State != w.state || tgt.Reason != w.reason || !tgt.NotBefore.Equal(w.notBefore) {
				t.Errorf("target = %+v\nwant group %s state %s reason %q notBefore %s", tgt, w.group, w.state, w.reason, w.notBefore)
			}
			c := m.Customer
			// The baseline and ExpectedValue, always.
			if d := tgt.Data; d.BaseTransactions != 7 || d.BaseSpend != 123.45 || !d.BaseLastPurchase.Equal(c.Features.LastPurchase) || d.ExpectedValue != 99.5 {
				t.Errorf("baseline = %+v", d)
			}
			stats := p.Stats()
			switch w.group {
			case store.GroupExcluded:
				if tgt.Variant != "" || tgt.Shard != 0 || !tgt.NotBefore.IsZero() {
					t.Errorf("excluded target has variant %q shard %d notBefore %s", tgt.Variant, tgt.Shard, tgt.NotBefore)
				}
				if d := tgt.Data; d.Address != "" || d.Locale != "" || d.TimeZone != "" || d.Fields != nil {
					t.Errorf("excluded target carries personal data: %+v", d)
				}
				if stats != (PlanStats{}) {
					t.Errorf("stats = %+v for an excluded member", stats)
				}
				return
			case store.GroupHoldout:
				if tgt.Shard != 0 {
					t.Errorf("holdout shard = %d, want 0", tgt.Shard)
				}
				if want := PickVariant(cfg.Variants, testUID, tt.id); tgt.Variant != want {
					t.Errorf("holdout variant = %q, want %q", tgt.Variant, want)
				}
				if d := tgt.Data; d.Address != "" || d.Locale != "" || d.TimeZone != "" || d.Fields != nil {
					t.Errorf("holdout target carries personal data: %+v", d)
				}
				if stats != (PlanStats{}) {
					t.Errorf("stats = %+v for a holdout member (never contacted)", stats)
				}
				return
			case store.GroupTreatment:
				if want := Shard(tt.id, cfg.Shards); tgt.Shard != want {
					t.Errorf("shard = %d, want %d", tgt.Shard, want)
				}
			}
			if want := PickVariant(cfg.Variants, testUID, tt.id); tgt.Variant != want || want == "" {
				t.Errorf("variant = %q, want %q", tgt.Variant, want)
			}
			d := tgt.Data
			if d.Address != c.Contact.Email || d.Locale != "de-DE" || d.TimeZone != w.zone {
				t.Errorf("data = %+v, want address %q locale de-DE zone %s", d, c.Contact.Email, w.zone)
			}
			if d.Fields["ID"] != tt.id || len(d.Fields) != 2 || d.Fields["Attributes"].(map[string]any)["first_name"] != "Ada" {
				t.Errorf("fields = %v", d.Fields)
			}
			wantStats := PlanStats{}
			if w.fallback {
				wantStats.ZoneFallbacks = 1
			}
			if !w.notBefore.IsZero() {
				wantStats.Deferred = 1
			}
			if stats != wantStats {
				t.Errorf("stats = %+v, want %+v", stats, wantStats)
			}
		})
	}
}

func TestPlannerSplit(t *testing.T) {
	t.Parallel()
	p, err := NewPlanner(PlanConfig{CampaignUID: testUID, HoldoutThreshold: Threshold(20), Variants: []Variant{{"a", 1}, {"b", 3}}, Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	groups := map[store.TargetGroup]int{}
	variants := map[store.TargetGroup]map[string]int{store.GroupHoldout: {}, store.GroupTreatment: {}}
	var tgt store.NewTarget
	for i := range n {
		m := &store.AudienceMember{Customer: &customer.Scored{ID: fmt.Sprintf("c%d", i)}}
		if err := p.Plan(m, &tgt); err != nil {
			t.Fatal(err)
		}
		groups[tgt.Group]++
		variants[tgt.Group][tgt.Variant]++
	}
	if share := float64(groups[store.GroupHoldout]) / n; share < 0.19 || share > 0.21 {
		t.Errorf("holdout share = %.3f, want 0.20", share)
	}
	for g, vs := range variants {
		if share := float64(vs["b"]) / float64(vs["a"]+vs["b"]); share < 0.72 || share > 0.78 {
			t.Errorf("%s: variant b share = %.3f, want 0.75", g, share)
		}
	}
	if s := p.Stats(); s.ZoneFallbacks != int64(groups[store.GroupTreatment]) || s.Deferred != 0 {
		t.Errorf("stats = %+v", s)
	}
}

func TestPlannerErrors(t *testing.T) {
	t.Parallel()
	ok := PlanConfig{CampaignUID: testUID}
	tests := []struct {
		name string
		cfg  func(*PlanConfig)
		want string
	}{
		{"no UID", func(c *PlanConfig) { c.CampaignUID = "" }, "campaign UID"},
		{"negative cap", func(c *PlanConfig) { c.MaxContacts = -1 }, "MaxContacts"},
		{"threshold too high", func(c *PlanConfig) { c.HoldoutThreshold = 10001 }, "HoldoutThreshold"},
		{"threshold negative", func(c *PlanConfig) { c.HoldoutThreshold = -1 }, "HoldoutThreshold"},
		{"negative shards", func(c *PlanConfig) { c.Shards = -2 }, "Shards"},
		{"paused variants", func(c *PlanConfig) { c.Variants = []Variant{{"a", 0}} }, "weight"},
		{"quiet without now", func(c *PlanConfig) { c.Quiet = &QuietHours{Start: 0, End: 60} }, "Now"},
		{"unknown field", func(c *PlanConfig) { c.Fields = []string{"Emial"} }, "Emial"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := ok
			tt.cfg(&cfg)
			if _, err := NewPlanner(cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewPlanner err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}

	p, err := NewPlanner(ok)
	if err != nil {
		t.Fatal(err)
	}
	var tgt store.NewTarget
	if err := p.Plan(&store.AudienceMember{}, &tgt); err == nil {
		t.Error("Plan without a customer: no error")
	}
	if err := p.Plan(&store.AudienceMember{Customer: &customer.Scored{ID: "x"}, RecordedGroup: store.GroupExcluded}, &tgt); err == nil {
		t.Error("Plan with recorded group excluded: no error")
	}
	// Defaults: one shard, UTC.
	if err := p.Plan(&store.AudienceMember{Customer: &customer.Scored{ID: "x"}}, &tgt); err != nil {
		t.Fatal(err)
	}
	if tgt.Shard != 0 || tgt.Data.TimeZone != "UTC" || tgt.Variant != "" || tgt.State != store.StatePending {
		t.Errorf("defaults: %+v", tgt)
	}
}
