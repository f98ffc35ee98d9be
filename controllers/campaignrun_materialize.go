package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/campaign"
	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
)

// materialize writes the run's audience into the store with every
// guardrail (store.RunMaterialize with the campaign's planner), then
// launches the outreach Job — or, for a dry run, ends with the counts.
// Both store calls are idempotent, so an operator that stops halfway
// picks up where it was.
func (r *CampaignRunReconciler) materialize(ctx context.Context, st store.Store, run *retentionv1.CampaignRun, c *retentionv1.Campaign, now time.Time) (string, time.Time, error) {
	seg, ch, err := r.runReferences(ctx, c)
	if err != nil {
		return "", time.Time{}, err
	}
	compiled, err := compileMessage(c)
	if err != nil {
		run.Status.Phase = retentionv1.RunFailed
		return "", time.Time{}, err
	}
	if !c.Spec.DryRun && r.storeNotShared() {
		run.Status.Phase = retentionv1.RunFailed
		return "", time.Time{}, stalled(retentionv1.ReasonStoreNotShared,
			"the store is a SQLite file, which the outreach Job's pods cannot share; run the operator with a PostgreSQL store (--store postgres://…)")
	}
	if run.Status.StartTime == nil {
		run.Status.StartTime = &metav1.Time{Time: now}
	}
	run.Status.Phase = retentionv1.RunMaterializing
	stored, err := st.RunCreate(ctx, runCreateParams(run, c, seg, ch, compiled, r.Runner.UnsubscribeBaseURL))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("recording the run: %w", err)
	}
	planner, params, err := planFor(run, c, ch, compiled, stored, now, r.forecast(ctx, seg, stored.ConversionWindow))
	if err != nil {
		run.Status.Phase = retentionv1.RunFailed
		return "", time.Time{}, stalled(retentionv1.ReasonInvalidSpec, "%v", err)
	}
	// A reconcile that read a stale status (Materializing, while an
	// earlier one already materialized) gets the stored tally back from
	// the idempotent RunMaterialize; only the first counts in metrics and
	// Events.
	fresh := stored.Phase == store.PhasePending
	tally, err := st.RunMaterialize(ctx, params)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", time.Time{}, waiting(retentionv1.ReasonSegmentNotReady,
			"snapshot %d of segment %s is gone; waiting for its next evaluation", stored.SnapshotID, seg.Name)
	case err != nil:
		return "", time.Time{}, fmt.Errorf("materializing the audience: %w", err)
	}
	stats := planner.Stats()
	setCounts(run, tally)
	a := *run.Status.Audience
	run.Status.SnapshotID, run.Status.DryRun = stored.SnapshotID, stored.DryRun
	run.Status.Deferred, run.Status.ZoneFallbacks = max(run.Status.Deferred, stats.Deferred), max(run.Status.ZoneFallbacks, stats.ZoneFallbacks)
	switch {
	case fresh:
		baseRate, ok := stats.BaseRate()
		run.Status.Experiment = experimentDesign(a, int32(stored.HoldoutPercent), baseRate, ok)
		r.checkSampleRatio(run)
	case run.Status.Experiment == nil:
		// Materialized by an earlier reconcile whose status this one does
		// not see yet (a stale cache) or lost: the sample-ratio check from
		// the stored counts; the base rate is the planner's, which only the
		// materializing reconcile had. Its status patch, if it lands,
		// merges its figures in.
		run.Status.Experiment = sampleRatioDesign(a, int32(stored.HoldoutPercent))
		r.checkSampleRatio(run)
	}
	if fresh && r.Recorder != nil {
		r.Recorder.Eventf(run, nil, "Normal", retentionv1.EventMaterialized, "Materialize",
			"%d members: %d treatment, %d holdout; excluded %d unreachable, %d opted out, %d suppressed, %d capped, %d over maxPerRun",
			a.Members, a.Treatment, a.Holdout, a.Unreachable, a.OptedOut, a.Suppressed, a.Capped, a.OverMax)
	}
	if stored.DryRun {
		if _, err := st.RunSetPhase(ctx, &store.RunSetPhaseParams{RunID: stored.ID, To: store.PhaseSucceeded}); err != nil {
			return "", time.Time{}, fmt.Errorf("recording the run's phase: %w", err)
		}
		run.Status.Phase = retentionv1.RunSucceeded
		return succeededMessage(run), time.Time{}, nil
	}
	if err := r.launch(ctx, st, run); err != nil {
		return "", time.Time{}, err
	}
	if err := r.startSending(ctx, st, run, now); err != nil {
		return "", time.Time{}, err
	}
	return "", now.Add(sendingRefresh), sendingOutcome(run)
}

// startSending records the run's reference time (the start of sending,
// from which both groups' conversions count) and moves it to Sending.
func (r *CampaignRunReconciler) startSending(ctx context.Context, st store.Store, run *retentionv1.CampaignRun, now time.Time) error {
	if _, err := st.RunSetPhase(ctx, &store.RunSetPhaseParams{RunID: string(run.UID), To: store.PhaseSending, ReferenceAt: now}); err != nil {
		return fmt.Errorf("recording the run's phase: %w", err)
	}
	stored, err := st.RunGet(ctx, string(run.UID))
	if err != nil {
		return fmt.Errorf("reading the run back: %w", err)
	}
	run.Status.ReferenceTime = &metav1.Time{Time: stored.ReferenceAt}
	run.Status.WindowEndTime = &metav1.Time{Time: stored.WindowEnd()}
	run.Status.Phase = retentionv1.RunSending
	return nil
}

// runReferences reads the run's segment (evaluated) and channel.
func (r *CampaignRunReconciler) runReferences(ctx context.Context, c *retentionv1.Campaign) (*retentionv1.Segment, *retentionv1.Channel, error) {
	var seg retentionv1.Segment
	key := types.NamespacedName{Namespace: c.Namespace, Name: c.Spec.SegmentRef.Name}
	if err := getReference(ctx, r.Client, key, &seg, "segment", retentionv1.ReasonSegmentNotFound); err != nil {
		return nil, nil, err
	}
	if seg.IsPreview() {
		return nil, nil, stalled(retentionv1.ReasonInvalidSpec, "segment %s is a preview: campaigns cannot use it", key)
	}
	if seg.Status.SnapshotID == 0 {
		return nil, nil, waiting(retentionv1.ReasonSegmentNotReady, "segment %s has not been evaluated yet", key)
	}
	var ch retentionv1.Channel
	key = types.NamespacedName{Namespace: c.Namespace, Name: c.Spec.ChannelRef.Name}
	if err := getReference(ctx, r.Client, key, &ch, "channel", retentionv1.ReasonChannelNotFound); err != nil {
		return nil, nil, err
	}
	if !isReady(ch.Status.Conditions) {
		return nil, nil, waiting(retentionv1.ReasonChannelNotReady, "channel %s is not ready", key)
	}
	return &seg, &ch, nil
}

// storeNotShared reports whether the store is a SQLite file that the
// Job's pods cannot reach: in a cluster each pod has its own filesystem.
// Only the local harness, which runs the pods' commands on the operator's
// machine, may share it (RunnerConfig.LocalProcesses).
func (r *CampaignRunReconciler) storeNotShared() bool {
	return strings.HasPrefix(r.Stores.URL, "sqlite:") && !r.Runner.LocalProcesses
}

// runCreateParams freeze the run: the campaign's message and the
// channel's non-secret settings, the audience's snapshot, the window.
func runCreateParams(run *retentionv1.CampaignRun, c *retentionv1.Campaign, seg *retentionv1.Segment, ch *retentionv1.Channel, compiled *campaign.Compiled, unsubscribeBase string) *store.RunCreateParams {
	shards := deref(c.Spec.Parallelism, 1)
	return &store.RunCreateParams{
		RunID:            string(run.UID),
		Campaign:         c.Namespace + "/" + c.Name,
		CampaignUID:      string(c.UID),
		Channel:          ch.Namespace + "/" + ch.Name,
		Segment:          seg.Namespace + "/" + seg.Name,
		SnapshotID:       seg.Status.SnapshotID,
		ScheduledAt:      run.Spec.ScheduledTime.Time,
		ConversionWindow: durationOr(c.Spec.ConversionWindow, 7*24*time.Hour),
		DryRun:           c.Spec.DryRun,
		HoldoutPercent:   float64(deref(c.Spec.HoldoutPercent, 10)),
		Shards:           shards,
		Settings: campaign.RunSettings{
			Message: campaignMessage(c),
			Fields:  compiled.Fields(),
			Channel: channelSettings(ch),
			Shards:  shards,
			// Slack posts go to a team channel, not to the customer: no
			// unsubscribe link.
			UnsubscribeBaseURL: unlessSlack(ch, unsubscribeBase),
		},
	}
}

// channelSettings are the channel's non-secret settings.
func channelSettings(ch *retentionv1.Channel) campaign.ChannelSettings {
	var s campaign.ChannelSettings
	switch {
	case ch.Spec.Webhook != nil:
		w := ch.Spec.Webhook
		s.Type, s.URL, s.Signed = campaign.ChannelWebhook, w.URL, w.SigningSecretRef != nil
		s.Timeout = durationOr(w.Timeout, 10*time.Second)
		s.CABundle = w.CABundle
		if len(w.Headers) > 0 {
			s.Headers = map[string]string{}
			for _, h := range w.Headers {
				s.Headers[h.Name] = h.Value
			}
		}
	case ch.Spec.SMTP != nil:
		m := ch.Spec.SMTP
		s.Type, s.Host, s.Port, s.TLSMode, s.From, s.Auth = campaign.ChannelSMTP, m.Host, m.Port, string(m.TLSMode), m.From, m.CredentialsSecretRef != nil
		s.RelaySigns, s.UnsubscribeMailto = m.RelaySigns, m.UnsubscribeMailto
		if m.DKIM != nil {
			s.DKIMDomain, s.DKIMSelector = m.DKIM.Domain, m.DKIM.Selector
		}
	case ch.Spec.Slack != nil:
		s.Type = campaign.ChannelSlack
	}
	if rl := ch.Spec.RateLimit; rl != nil {
		s.RatePerSecond, s.Burst = rl.PerSecond, deref(rl.Burst, rl.PerSecond)
	}
	// The API's defaults, also when spec.retry is left out.
	s.MaxAttempts, s.Backoff = 3, time.Second
	if rt := ch.Spec.Retry; rt != nil {
		if rt.MaxAttempts > 0 {
			s.MaxAttempts = rt.MaxAttempts
		}
		s.Backoff = durationOr(rt.Backoff, time.Second)
	}
	return s
}

// unlessSlack returns base, or "" for a Slack channel.
func unlessSlack(ch *retentionv1.Channel, base string) string {
	if ch.Spec.Slack != nil {
		return ""
	}
	return base
}

// planFor builds the campaign's planner and the materialization's
// parameters from the stored (frozen) run and the campaign's guardrails.
func planFor(run *retentionv1.CampaignRun, c *retentionv1.Campaign, ch *retentionv1.Channel, compiled *campaign.Compiled, stored *store.Run, now time.Time,
	forecast func(*customer.Scored) float64) (*campaign.Planner, *store.RunMaterializeParams, error) {
	zone := time.UTC
	if tz := deref(c.Spec.TimeZone, ""); tz != "" {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			return nil, nil, fmt.Errorf("timeZone %q: %w", tz, err)
		}
		zone = loc
	}
	cfg := campaign.PlanConfig{
		CampaignUID:      stored.CampaignUID,
		RequireEmail:     ch.Spec.SMTP != nil,
		HoldoutThreshold: campaign.Threshold(int32(stored.HoldoutPercent)),
		Shards:           stored.Shards,
		DefaultZone:      zone,
		Now:              now,
		Fields:           compiled.Fields(),
		DryRun:           stored.DryRun,
		Forecast:         forecast,
	}
	params := &store.RunMaterializeParams{RunID: stored.ID}
	if s := c.Spec.Suppress; s != nil {
		cfg.OptOutAttribute = s.OptOutAttribute
		for _, seg := range s.Segments {
			params.SuppressSegments = append(params.SuppressSegments, c.Namespace+"/"+seg.Name)
		}
	}
	if fc := c.Spec.FrequencyCap; fc != nil {
		cfg.MaxContacts = int64(fc.MaxContacts)
		params.CapSince = now.Add(-fc.Window.Duration)
	}
	if q := c.Spec.QuietHours; q != nil {
		qh, err := campaign.ParseQuietHours(q.Start, q.End)
		if err != nil {
			return nil, nil, err
		}
		cfg.Quiet = qh
	}
	cfg.Variants = compiled.Variants()
	if m := c.Spec.MaxPerRun; m != nil {
		params.MaxPerRun = int64(*m)
	}
	if after := run.Spec.EnteredAfterSnapshotID; after != nil {
		params.EnteredSince = *after + 1
	}
	planner, err := campaign.NewPlanner(cfg)
	if err != nil {
		return nil, nil, err
	}
	params.Plan = planner.Plan
	return planner, params, nil
}
