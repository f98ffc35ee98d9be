package metrics

import (
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Group label values of the measurement metrics.
const (
	GroupTreatment = "treatment"
	GroupHoldout   = "holdout"
)

// CampaignCounts are a campaign's cumulative counts over every run it
// ever made, as the store keeps them.
type CampaignCounts struct {
	// Audience by outcome: OutcomeTreatment, OutcomeHeldOut and the
	// exclusion reasons.
	Audience map[string]int64
	// Messages of treatment targets by final state: sent, failed, skipped.
	Messages map[string]int64
	// Conversions by group: GroupTreatment, GroupHoldout.
	Conversions map[string]int64
}

// CampaignTotals exports each campaign's cumulative counts as counters:
// retention_campaign_audience_total, retention_campaign_messages_total
// and retention_campaign_conversions_total. The values come from the
// store (every run ever made, deleted ones folded in), so they are the
// same after an operator restart and never go down: Prometheus sees no
// reset. Set replaces a campaign's counts; Forget drops them.
type CampaignTotals struct {
	mu        sync.Mutex
	campaigns map[[2]string]CampaignCounts
	audience  *prometheus.Desc
	messages  *prometheus.Desc
	converted *prometheus.Desc
}

func newCampaignTotals() *CampaignTotals {
	labels := []string{"namespace", "campaign"}
	name := func(n string) string { return prometheus.BuildFQName(namespace, "campaign", n) }
	return &CampaignTotals{
		campaigns: map[[2]string]CampaignCounts{},
		audience: prometheus.NewDesc(name("audience_total"),
			"Customers of a campaign's materialized runs by outcome: treatment, held_out, or the exclusion reason (unreachable, opted_out, suppressed, capped, over_max). Dry runs included. From the store: survives restarts.",
			append(labels, "outcome"), nil),
		messages: prometheus.NewDesc(name("messages_total"),
			"Treatment messages of a campaign's runs by final outcome (sent, failed, skipped). From the store: survives restarts.",
			append(labels, "outcome"), nil),
		converted: prometheus.NewDesc(name("conversions_total"),
			"Converted customers of a campaign's measured runs by group (treatment, holdout), intent to treat. From the store: survives restarts.",
			append(labels, "group"), nil),
	}
}

// Set records a campaign's counts.
func (t *CampaignTotals) Set(namespace, campaign string, c CampaignCounts) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.campaigns[[2]string{namespace, campaign}] = c
}

// Get returns a campaign's counts (tests).
func (t *CampaignTotals) Get(namespace, campaign string) CampaignCounts {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.campaigns[[2]string{namespace, campaign}]
}

// Describe implements prometheus.Collector.
func (t *CampaignTotals) Describe(ch chan<- *prometheus.Desc) {
	ch <- t.audience
	ch <- t.messages
	ch <- t.converted
}

// Collect implements prometheus.Collector.
func (t *CampaignTotals) Collect(ch chan<- prometheus.Metric) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for key, c := range t.campaigns {
		for _, m := range []struct {
			desc   *prometheus.Desc
			counts map[string]int64
		}{{t.audience, c.Audience}, {t.messages, c.Messages}, {t.converted, c.Conversions}} {
			for _, k := range sortedKeys(m.counts) {
				ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, float64(m.counts[k]), key[0], key[1], k)
			}
		}
	}
}

// DeletePartialMatch drops the campaigns matching the labels (namespace
// and campaign), as the vecs' method does, so ForgetCampaign reaches it.
func (t *CampaignTotals) DeletePartialMatch(l prometheus.Labels) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for key := range t.campaigns {
		if ns, ok := l["namespace"]; ok && ns != key[0] {
			continue
		}
		if name, ok := l["campaign"]; ok && name != key[1] {
			continue
		}
		delete(t.campaigns, key)
		n++
	}
	return n
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
