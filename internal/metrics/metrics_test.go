package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNewRegistersAndForgets(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(reg); err == nil {
		t.Fatal("registering twice on one registry must fail")
	}
	m.SourceCustomers.WithLabelValues("shop", "a").Set(10)
	m.SourceCustomers.WithLabelValues("shop", "b").Set(20)
	m.SourceCustomersByRisk.WithLabelValues("shop", "a", "high").Set(3)
	m.SegmentSize.WithLabelValues("shop", "at-risk").Set(5)
	if n := testutil.CollectAndCount(m.SourceCustomers); n != 2 {
		t.Fatalf("%d customer series, want 2", n)
	}
	m.ForgetSource("shop", "a")
	if n := testutil.CollectAndCount(m.SourceCustomers); n != 1 {
		t.Fatalf("%d customer series after forgetting a source, want 1", n)
	}
	if n := testutil.CollectAndCount(m.SourceCustomersByRisk); n != 0 {
		t.Fatalf("risk series of a forgotten source remain: %d", n)
	}
	m.ForgetSegment("shop", "at-risk")
	if n := testutil.CollectAndCount(m.SegmentSize); n != 0 {
		t.Fatalf("segment series remain: %d", n)
	}
}

// TestLabelsCarryNoPersonalData: every metric is labelled by object names
// and fixed enums only.
func TestLabelsCarryNoPersonalData(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	if _, err := New(reg); err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"namespace": true, "source": true, "segment": true, "campaign": true, "channel": true,
		"band": true, "result": true, "outcome": true, "group": true, "state": true, "phase": true, "scope": true}
	m, _ := New(prometheus.NewRegistry())
	for _, c := range m.all {
		ch := make(chan *prometheus.Desc, 8)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			s := d.String()
			i := strings.Index(s, "variableLabels: {")
			if i < 0 {
				t.Fatalf("cannot read labels of %s", s)
			}
			rest := s[i+len("variableLabels: {"):]
			for _, l := range strings.Split(rest[:strings.Index(rest, "}")], ",") {
				if l = strings.TrimSpace(l); l != "" && !allowed[l] {
					t.Errorf("%s has label %q", s, l)
				}
			}
		}
	}
}

// TestCampaignTotals: the store's cumulative counts are exported as
// counters, replaced on Set (a restarted operator exports the same
// values), and dropped with the campaign.
func TestCampaignTotals(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.CampaignTotals.Set("shop", "win-back", CampaignCounts{
		Audience:    map[string]int64{OutcomeTreatment: 90, OutcomeHeldOut: 10, OutcomeCapped: 3},
		Messages:    map[string]int64{"sent": 88, "failed": 2},
		Conversions: map[string]int64{GroupTreatment: 9, GroupHoldout: 1},
	})
	m.CampaignTotals.Set("shop", "other", CampaignCounts{Messages: map[string]int64{"sent": 1}})
	want := `
# HELP retention_campaign_messages_total Treatment messages of a campaign's runs by final outcome (sent, failed, skipped). From the store: survives restarts.
# TYPE retention_campaign_messages_total counter
retention_campaign_messages_total{campaign="other",namespace="shop",outcome="sent"} 1
retention_campaign_messages_total{campaign="win-back",namespace="shop",outcome="failed"} 2
retention_campaign_messages_total{campaign="win-back",namespace="shop",outcome="sent"} 88
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "retention_campaign_messages_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.CampaignTotals); n != 8 {
		t.Fatalf("%d series, want 8", n)
	}
	m.ForgetCampaign("shop", "win-back")
	if n := testutil.CollectAndCount(m.CampaignTotals); n != 1 {
		t.Fatalf("%d series after forgetting a campaign, want 1", n)
	}
}
