package campaign

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
)

// PlanConfig is what a Planner needs to decide each member of a run's
// audience. The controller builds it from the Campaign, its Channel and
// the compiled message.
type PlanConfig struct {
	// CampaignUID keys the holdout and variant hashes. Required.
	CampaignUID string
	// RequireEmail excludes customers without an email address as
	// unreachable (SMTP channels).
	RequireEmail bool
	// OptOutAttribute names a Bool attribute that, when true, opts the
	// customer out (spec.suppress.optOutAttribute); "" for none.
	OptOutAttribute string
	// MaxContacts is the frequency cap: a customer with this many contacts
	// or more in the cap window (AudienceMember.Contacts) is capped. 0
	// means no cap.
	MaxContacts int64
	// HoldoutThreshold is Threshold(holdoutPercent), in [0, Buckets].
	HoldoutThreshold int32
	// Variants are the message's variants and weights (Compiled.Variants);
	// none gives every target the variant "".
	Variants []Variant
	// Shards is the run's number of shards; 0 means 1.
	Shards int32
	// Quiet is the quiet-hours window, or nil for none.
	Quiet *QuietHours
	// DefaultZone is the campaign's zone, for customers without a valid
	// zone of their own. nil means UTC.
	DefaultZone *time.Location
	// Now is the materialization time, against which quiet hours are
	// judged. Required when Quiet is set.
	Now time.Time
	// Fields are the template data keys to freeze into each target
	// (Compiled.Fields).
	Fields []string
	// DryRun plans the treatment as skipped (reason dry_run) instead of
	// pending: counted, never sent.
	DryRun bool
	// Forecast, when set, gives a customer's probability of converting
	// within the window under the source's purchase model (see Forecast):
	// summed over the members given a group, it is the base rate the
	// minimum detectable effect is computed from.
	Forecast func(*customer.Scored) float64
}

// PlanStats counts what a Planner noticed beyond the groups and reasons
// the store tallies.
type PlanStats struct {
	// ZoneFallbacks counts treatment members whose
	// own time zone was missing or invalid, so the campaign's zone was used.
	ZoneFallbacks int64
	// Deferred counts treatment targets given a NotBefore by quiet hours
	// (dry runs included: what would have been deferred).
	Deferred int64
	// Forecasted counts the members given a group (treatment or holdout)
	// when PlanConfig.Forecast is set, and ExpectedConversions sums their
	// forecast probabilities. Frequency caps and MaxPerRun exclude some
	// of them afterwards in the store; the base rate is their mean.
	Forecasted          int64
	ExpectedConversions float64
}

// BaseRate is the mean forecast probability of conversion of the members
// given a group; ok is false without a forecast.
func (s PlanStats) BaseRate() (rate float64, ok bool) {
	if s.Forecasted == 0 {
		return 0, false
	}
	return s.ExpectedConversions / float64(s.Forecasted), true
}

// zoneCacheLimit bounds the number of distinct zone names a Planner
// remembers (valid or not), so garbage in a source cannot grow it without
// bound.
const zoneCacheLimit = 1024

// Planner decides, member by member, what a run does with its audience;
// its Plan method is RunMaterializeParams.Plan. It is not safe for
// concurrent use (RunMaterialize calls Plan from one goroutine).
type Planner struct {
	cfg   PlanConfig
	zones map[string]*time.Location // nil value: invalid name
	stats PlanStats
}

// NewPlanner checks a configuration and returns its Planner.
func NewPlanner(cfg PlanConfig) (*Planner, error) {
	var errs []error
	if cfg.CampaignUID == "" {
		errs = append(errs, errors.New("no campaign UID"))
	}
	if cfg.MaxContacts < 0 {
		errs = append(errs, fmt.Errorf("MaxContacts %d is negative", cfg.MaxContacts))
	}
	if cfg.HoldoutThreshold < 0 || cfg.HoldoutThreshold > Buckets {
		errs = append(errs, fmt.Errorf("HoldoutThreshold %d is outside [0, %d]", cfg.HoldoutThreshold, Buckets))
	}
	if cfg.Shards < 0 {
		errs = append(errs, fmt.Errorf("Shards %d is negative", cfg.Shards))
	}
	if len(cfg.Variants) > 0 && !slices.ContainsFunc(cfg.Variants, func(v Variant) bool { return v.Weight > 0 }) {
		errs = append(errs, errors.New("no variant has a weight above 0"))
	}
	if cfg.Quiet != nil && cfg.Now.IsZero() {
		errs = append(errs, errors.New("quiet hours need Now"))
	}
	for _, f := range cfg.Fields {
		if !slices.Contains(dataKeys, f) {
			errs = append(errs, fmt.Errorf("unknown template field %q", f))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("campaign: plan config: %w", err)
	}
	if cfg.Shards == 0 {
		cfg.Shards = 1
	}
	if cfg.DefaultZone == nil {
		cfg.DefaultZone = time.UTC
	}
	cfg.Variants = slices.Clone(cfg.Variants)
	cfg.Fields = slices.Clone(cfg.Fields)
	return &Planner{cfg: cfg, zones: map[string]*time.Location{}}, nil
}

// Stats returns what the Planner counted so far.
func (p *Planner) Stats() PlanStats { return p.stats }

// Plan fills t for one audience member. It applies the exclusions in this
// order, the first that matches deciding the reason (group excluded, state
// skipped):
//
//  1. unreachable: no email address, when RequireEmail;
//  2. opted_out: the source's contact opt-out, the OptOutAttribute being
//     true, or the channel's opt-out list (m.OptedOut);
//  3. suppressed: a member of a suppression segment;
//  4. capped: MaxContacts > 0 and m.Contacts >= MaxContacts.
//
// Excluded targets carry only the measurement baseline and ExpectedValue,
// no personal data. The eligible keep their recorded group, or are split
// by Bucket < HoldoutThreshold into holdout and treatment. Both groups get
// a variant (PickVariant), so each variant's treatment can be compared
// with the holdout members of the same variant, who were never sent
// anything either way; holdout targets are skipped (reason holdout) in
// shard 0 and carry no personal data (they are never contacted). Treatment targets get their shard, a NotBefore when the quiet
// hours hold at Now in the customer's zone, and are pending (skipped with
// reason dry_run for a dry run). Treatment targets carry the address,
// locale, effective time zone (the customer's, or DefaultZone's name when
// it was missing or invalid), the template fields and the baseline.
func (p *Planner) Plan(m *store.AudienceMember, t *store.NewTarget) error {
	if m == nil || m.Customer == nil {
		return errors.New("campaign: plan: audience member without a customer")
	}
	c := m.Customer
	*t = store.NewTarget{
		CustomerID: c.ID,
		Data: store.TargetData{
			BaseTransactions: int64(c.Features.Transactions),
			BaseSpend:        c.Features.TotalSpend,
			BaseLastPurchase: c.Features.LastPurchase,
			ExpectedValue:    c.Scores.ExpectedValue,
		},
	}
	if reason := p.exclusion(m); reason != "" {
		t.Group, t.State, t.Reason = store.GroupExcluded, store.StateSkipped, reason
		return nil
	}

	switch m.RecordedGroup {
	case store.GroupTreatment, store.GroupHoldout:
		t.Group = m.RecordedGroup
	case "":
		t.Group = store.GroupTreatment
		if Bucket(p.cfg.CampaignUID, c.ID) < p.cfg.HoldoutThreshold {
			t.Group = store.GroupHoldout
		}
	default:
		return fmt.Errorf("campaign: plan: customer %q has recorded group %q, want treatment or holdout", c.ID, m.RecordedGroup)
	}
	t.Variant = PickVariant(p.cfg.Variants, p.cfg.CampaignUID, c.ID)
	if p.cfg.Forecast != nil {
		p.stats.Forecasted++
		p.stats.ExpectedConversions += p.cfg.Forecast(c)
	}
	if t.Group == store.GroupHoldout {
		// Never contacted: the holdout keeps its baseline and no personal data.
		t.State, t.Reason = store.StateSkipped, store.ReasonHoldout
		return nil
	}

	loc, fellBack := p.zone(c.Contact.Timezone)
	if fellBack {
		p.stats.ZoneFallbacks++
	}
	t.Data.Address = c.Contact.Email
	t.Data.Locale = c.Contact.Locale
	t.Data.TimeZone = loc.String()
	t.Data.Fields = TemplateData(c, p.cfg.Fields)
	t.Shard = Shard(c.ID, p.cfg.Shards)
	if p.cfg.Quiet != nil {
		if nb := p.cfg.Quiet.NotBefore(p.cfg.Now, loc); !nb.IsZero() {
			t.NotBefore = nb
			p.stats.Deferred++
		}
	}
	if p.cfg.DryRun {
		t.State, t.Reason = store.StateSkipped, store.ReasonDryRun
		return nil
	}
	t.State = store.StatePending
	return nil
}

// exclusion returns the reason a member is excluded, or "".
func (p *Planner) exclusion(m *store.AudienceMember) string {
	c := m.Customer
	switch {
	case p.cfg.RequireEmail && strings.TrimSpace(c.Contact.Email) == "":
		return store.ReasonUnreachable
	case c.Contact.OptOut || m.OptedOut || p.optOutAttribute(c.Attributes):
		return store.ReasonOptedOut
	case m.Suppressed:
		return store.ReasonSuppressed
	case p.cfg.MaxContacts > 0 && m.Contacts >= p.cfg.MaxContacts:
		return store.ReasonCapped
	}
	return ""
}

// optOutAttribute reports whether the configured Bool attribute is true.
func (p *Planner) optOutAttribute(attrs map[string]any) bool {
	if p.cfg.OptOutAttribute == "" {
		return false
	}
	v, _ := attrs[p.cfg.OptOutAttribute].(bool)
	return v
}

// zone resolves a customer's time zone, falling back to DefaultZone (and
// saying so) when it is empty, "Local" or not a known IANA name.
func (p *Planner) zone(name string) (*time.Location, bool) {
	if name == "" {
		return p.cfg.DefaultZone, true
	}
	loc, ok := p.zones[name]
	if !ok {
		loc, _ = loadZone(name)
		if len(p.zones) < zoneCacheLimit {
			p.zones[name] = loc
		}
	}
	if loc == nil {
		return p.cfg.DefaultZone, true
	}
	return loc, false
}
