package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// CancelRequestedAnnotation asks the operator to cancel an active
// CampaignRun: its pending targets are skipped (reason cancelled), targets
// a runner already holds are sent, and the run ends Cancelled. The value
// names who asked: the run that replaced it (concurrencyPolicy Replace),
// or AbortRequest.
const CancelRequestedAnnotation = "retention.dev/cancel-requested-by"

// AbortRequest is the CancelRequestedAnnotation value of a run cancelled
// by a person (`kubectl retention abort run NAME`).
const AbortRequest = "abort"

// RetryRequestedAnnotation asks the operator to send a Failed run's
// unsent targets once more: a run that failed because its Jobs left
// shards unfinished after the follow-up limit goes back to Sending with
// one more Job for those shards (`kubectl retention retry run NAME`). A
// new value (a time, by convention) is a new request;
// status.lastHandledRetryAt shows the last one handled.
const RetryRequestedAnnotation = "retention.dev/retry-requested-at"

// RunPhase is where a campaign run is in its life.
// +kubebuilder:validation:Enum=Pending;Materializing;Sending;Measuring;Succeeded;Failed;Cancelled
type RunPhase string

const (
	// RunPending: created, not started.
	RunPending RunPhase = "Pending"
	// RunMaterializing: the audience and targets are being written to the store.
	RunMaterializing RunPhase = "Materializing"
	// RunSending: the outreach Job is sending.
	RunSending RunPhase = "Sending"
	// RunMeasuring: sending finished; conversions are counted until the window ends.
	RunMeasuring RunPhase = "Measuring"
	// RunSucceeded: measured and done.
	RunSucceeded RunPhase = "Succeeded"
	// RunFailed: the run could not complete.
	RunFailed RunPhase = "Failed"
	// RunCancelled: a newer run replaced it (concurrencyPolicy Replace):
	// its unclaimed targets were skipped; sends in flight were recorded.
	RunCancelled RunPhase = "Cancelled"
)

// Active reports whether a run in this phase blocks a Forbid campaign's
// next run: Pending, Materializing and Sending do; Measuring does not.
func (p RunPhase) Active() bool {
	return p == "" || p == RunPending || p == RunMaterializing || p == RunSending
}

// Finished reports whether the phase is final.
func (p RunPhase) Finished() bool {
	return p == RunSucceeded || p == RunFailed || p == RunCancelled
}

// CampaignRunSpec declares one run of a campaign. Runs are made by their
// Campaign on its schedule or trigger; a person may create one for an
// ad-hoc run.
type CampaignRunSpec struct {
	// campaignRef names the Campaign in the same namespace. Immutable.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="campaignRef is immutable"
	// +required
	CampaignRef LocalObjectReference `json:"campaignRef"`

	// scheduledTime is the time the run was due; for an ad-hoc run, when it
	// was asked for. Immutable.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="scheduledTime is immutable"
	// +required
	ScheduledTime metav1.Time `json:"scheduledTime"`

	// enteredAfterSnapshotID, for an OnEnter run, limits the audience to
	// the segment's members who entered on a snapshot after this one. If
	// unset, the audience is every current member. Immutable.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="enteredAfterSnapshotID is immutable"
	// +kubebuilder:validation:Minimum=0
	// +optional
	EnteredAfterSnapshotID *int64 `json:"enteredAfterSnapshotID,omitempty"`
}

// AudienceCounts counts how the audience of a run was split. Exclusions
// happen before the split, in this order: unreachable, optedOut,
// suppressed, capped, overMax.
type AudienceCounts struct {
	// members of the segment when the run was materialised (for an OnEnter
	// run, the entrants).
	Members int64 `json:"members"`
	// treatment customers to contact.
	Treatment int64 `json:"treatment"`
	// holdout customers in the control group, never contacted.
	Holdout int64 `json:"holdout"`
	// unreachable customers had no contact address for the channel.
	Unreachable int64 `json:"unreachable"`
	// optedOut customers opted out (contact column, opt-out attribute or
	// the operator's opt-out list).
	OptedOut int64 `json:"optedOut"`
	// suppressed customers are members of a suppression segment.
	Suppressed int64 `json:"suppressed"`
	// capped customers reached the channel's frequency cap.
	Capped int64 `json:"capped"`
	// overMax customers were beyond maxPerRun (lowest expected value first).
	OverMax int64 `json:"overMax"`
}

// DeliveryCounts counts delivery outcomes of treatment targets.
type DeliveryCounts struct {
	// pending messages not yet sent (deferred ones included).
	Pending int64 `json:"pending"`
	// deferred messages are pending ones waiting for a not-before time
	// still to come: quiet hours in the customer's time zone, or a retry's
	// backoff.
	// +optional
	Deferred int64 `json:"deferred,omitempty"`
	// inFlight messages claimed by a runner and not yet recorded.
	InFlight int64 `json:"inFlight"`
	// sent messages.
	Sent int64 `json:"sent"`
	// failed messages (permanent failure or retries exhausted).
	Failed int64 `json:"failed"`
	// skipped messages (cancelled, opted out at send time, dry run).
	Skipped int64 `json:"skipped"`
}

// VariantCounts counts one message variant's targets.
type VariantCounts struct {
	// name of the variant.
	Name string `json:"name"`
	// treatment customers given the variant.
	Treatment int64 `json:"treatment"`
	// holdout customers given the variant (never sent; the variant's own
	// comparison group).
	// +optional
	Holdout int64 `json:"holdout"`
	// sent messages of the variant.
	Sent int64 `json:"sent"`
	// failed messages of the variant.
	// +optional
	Failed int64 `json:"failed"`
}

// GroupConversion is the conversion of one experiment group.
type GroupConversion struct {
	// customers assigned to the group (intent to treat: sent or not).
	Customers int64 `json:"customers"`
	// converted customers: a purchase beyond their baseline within the
	// conversion window.
	Converted int64 `json:"converted"`
	// ratePercent is converted / customers in percent (absent for an
	// empty group).
	// +optional
	RatePercent string `json:"ratePercent,omitempty"`
	// revenuePerCustomer is the revenue since the baseline of the group's
	// converted customers divided by all its customers, in the source's
	// currency.
	// +optional
	RevenuePerCustomer string `json:"revenuePerCustomer,omitempty"`
}

// UpliftMethod names how an uplift's interval was computed.
// +kubebuilder:validation:Enum=NewcombeHybridScore;MantelHaenszel
type UpliftMethod string

const (
	// UpliftNewcombe is Newcombe's hybrid score interval for a difference
	// of two independent proportions (one run).
	UpliftNewcombe UpliftMethod = "NewcombeHybridScore"
	// UpliftMantelHaenszel is the Mantel–Haenszel risk difference pooled
	// over runs, stratified by run (a campaign).
	UpliftMantelHaenszel UpliftMethod = "MantelHaenszel"
)

// Uplift is the measured effect: the treatment's conversion rate minus
// the holdout's.
type Uplift struct {
	// percentagePoints is the absolute uplift, treatment minus holdout.
	PercentagePoints string `json:"percentagePoints"`
	// lower bound of the 95% confidence interval, in percentage points.
	Lower string `json:"lower"`
	// upper bound of the 95% confidence interval, in percentage points.
	Upper string `json:"upper"`
	// relativePercent is the uplift relative to the holdout's rate (absent
	// when the holdout did not convert at all).
	// +optional
	RelativePercent string `json:"relativePercent,omitempty"`
	// pValue of the test of no difference (two-sided).
	PValue string `json:"pValue"`
	// method of the interval and test.
	Method UpliftMethod `json:"method"`
}

// Measurement is what a run achieved — or a campaign's runs, pooled —
// measured by intent to treat: everyone assigned to the treatment (sent or
// not) against everyone assigned to the holdout, from one reference time
// with one conversion rule.
type Measurement struct {
	// final is true once the figures can no longer change: the conversion
	// window has closed and been measured (for a campaign: for every run
	// pooled). Until then they are provisional.
	Final bool `json:"final"`
	// snapshotID is the last scored snapshot of the source measured (runs).
	// +optional
	SnapshotID int64 `json:"snapshotID,omitempty"`
	// measuredTime is when that snapshot was measured (runs).
	// +optional
	MeasuredTime *metav1.Time `json:"measuredTime,omitempty"`
	// runs pooled (campaigns).
	// +optional
	Runs int32 `json:"runs,omitempty"`
	// treatment group.
	Treatment GroupConversion `json:"treatment"`
	// holdout group.
	Holdout GroupConversion `json:"holdout"`
	// uplift with its 95% confidence interval; absent when the groups are
	// too small for an interval to mean anything (verdict says so).
	// +optional
	Uplift *Uplift `json:"uplift,omitempty"`
	// verdict says in one sentence what the figures show, or why there are
	// too few customers to say.
	Verdict string `json:"verdict"`
}

// VariantConversion is the conversion of one message variant: its
// treatment against the holdout members given the same variant.
type VariantConversion struct {
	// name of the variant.
	Name string `json:"name"`
	// treatment of the variant.
	Treatment GroupConversion `json:"treatment"`
	// holdout of the variant.
	Holdout GroupConversion `json:"holdout"`
}

// ExperimentDesign is what the run's groups can show, known before
// anything is sent, and whether the split came out as planned.
type ExperimentDesign struct {
	// baseRatePercent is the conversion rate the source's purchase model
	// expects of the eligible within the conversion window (the mean of
	// each one's probability of at least one purchase); absent without a
	// fitted purchase model.
	// +optional
	BaseRatePercent string `json:"baseRatePercent,omitempty"`
	// minimumDetectableEffect is the smallest absolute uplift, in
	// percentage points, that these group sizes detect with 80% power at a
	// two-sided α of 0.05, at the base rate.
	// +optional
	MinimumDetectableEffect string `json:"minimumDetectableEffect,omitempty"`
	// minimumDetectableLiftPercent is the same relative to the base rate.
	// +optional
	MinimumDetectableLiftPercent string `json:"minimumDetectableLiftPercent,omitempty"`
	// plannedHoldoutPercent is the holdout share the campaign asked for.
	PlannedHoldoutPercent int32 `json:"plannedHoldoutPercent"`
	// sampleRatioPValue is the p-value of the χ² test of the assigned
	// group sizes against the planned split; below 0.001 the split is a
	// sample-ratio mismatch (condition SampleRatioMismatch) and the uplift
	// is not to be trusted.
	// +optional
	SampleRatioPValue string `json:"sampleRatioPValue,omitempty"`
	// note says why a figure is absent.
	// +optional
	Note string `json:"note,omitempty"`
}

// CampaignRunStatus is the observed state of a CampaignRun.
type CampaignRunStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready is True only when the run has succeeded (so
	// `kubectl wait --for=condition=Ready` waits for its end);
	// Reconciling is True while it works; Stalled is True when it failed.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// phase of the run.
	// +optional
	Phase RunPhase `json:"phase,omitempty"`

	// dryRun is true when the run was materialised as a dry run: counted,
	// never sent.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`

	// snapshotID is the scored snapshot of the source the audience was
	// read from.
	// +optional
	SnapshotID int64 `json:"snapshotID,omitempty"`

	// audience split.
	// +optional
	Audience *AudienceCounts `json:"audience,omitempty"`

	// variants counts targets per message variant.
	// +listType=map
	// +listMapKey=name
	// +optional
	Variants []VariantCounts `json:"variants,omitempty"`

	// deferred counts treatment targets whose sending waits for the end of
	// quiet hours in the customer's time zone.
	// +optional
	Deferred int64 `json:"deferred,omitempty"`

	// zoneFallbacks counts customers without a valid time zone, whose
	// quiet hours used the campaign's zone.
	// +optional
	ZoneFallbacks int64 `json:"zoneFallbacks,omitempty"`

	// delivery outcomes.
	// +optional
	Delivery *DeliveryCounts `json:"delivery,omitempty"`

	// jobRef names the outreach Job (in the operator's jobs namespace).
	// +optional
	JobRef *NamespacedReference `json:"jobRef,omitempty"`

	// followUpJobs counts Jobs launched again for shards that a finished
	// Job left with pending or stale-claimed targets.
	// +optional
	FollowUpJobs int32 `json:"followUpJobs,omitempty"`

	// lastHandledRetryAt is the value of the last
	// retention.dev/retry-requested-at annotation handled.
	// +optional
	LastHandledRetryAt string `json:"lastHandledRetryAt,omitempty"`

	// experiment: the minimum detectable effect of the groups (before
	// sending) and the sample-ratio check of the split.
	// +optional
	Experiment *ExperimentDesign `json:"experiment,omitempty"`

	// measurement of the run: provisional while the conversion window is
	// open, final when the run has succeeded.
	// +optional
	Measurement *Measurement `json:"measurement,omitempty"`

	// variantConversions measures each message variant (campaigns with
	// variants).
	// +listType=map
	// +listMapKey=name
	// +optional
	VariantConversions []VariantConversion `json:"variantConversions,omitempty"`

	// startTime is when the run left Pending.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// referenceTime is when sending started: conversions of both groups
	// count from it.
	// +optional
	ReferenceTime *metav1.Time `json:"referenceTime,omitempty"`

	// windowEndTime is when the conversion window closes.
	// +optional
	WindowEndTime *metav1.Time `json:"windowEndTime,omitempty"`

	// completionTime is when the run succeeded, failed or was cancelled.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// NamespacedReference names an object in a given namespace.
// +structType=atomic
type NamespacedReference struct {
	// namespace of the object.
	// +required
	Namespace string `json:"namespace"`
	// name of the object.
	// +required
	Name string `json:"name"`
}

// CampaignRun is one run of a campaign: an audience materialised in the
// store, an outreach Job, and its measurement.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=crun,categories=retention
// +kubebuilder:printcolumn:name="Campaign",type=string,JSONPath=`.spec.campaignRef.name`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Treatment",type=integer,JSONPath=`.status.audience.treatment`
// +kubebuilder:printcolumn:name="Holdout",type=integer,JSONPath=`.status.audience.holdout`
// +kubebuilder:printcolumn:name="Sent",type=integer,JSONPath=`.status.delivery.sent`
// +kubebuilder:printcolumn:name="Uplift",type=string,JSONPath=`.status.measurement.uplift.percentagePoints`
// +kubebuilder:printcolumn:name="Scheduled",type=date,JSONPath=`.spec.scheduledTime`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type CampaignRun struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired run.
	// +required
	Spec CampaignRunSpec `json:"spec"`

	// status is the observed state.
	// +optional
	Status CampaignRunStatus `json:"status,omitempty"`
}

// CampaignRunList is a list of CampaignRuns.
// +kubebuilder:object:root=true
type CampaignRunList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CampaignRun `json:"items"`
}

func init() {
	SchemeBuilder.Register(&CampaignRun{}, &CampaignRunList{})
}
