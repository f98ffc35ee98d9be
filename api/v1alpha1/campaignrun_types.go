package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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

// GroupConversion is the conversion of one group.
type GroupConversion struct {
	// customers in the group.
	Customers int64 `json:"customers"`
	// converted customers within the conversion window.
	Converted int64 `json:"converted"`
	// ratePercent is converted / customers in percent.
	// +optional
	RatePercent string `json:"ratePercent,omitempty"`
}

// Uplift is the measured effect of a run.
type Uplift struct {
	// percentagePoints is the treatment's conversion rate minus the holdout's.
	PercentagePoints string `json:"percentagePoints"`
	// lower bound of the 95% confidence interval, in percentage points.
	Lower string `json:"lower"`
	// upper bound of the 95% confidence interval, in percentage points.
	Upper string `json:"upper"`
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

	// treatment conversion.
	// +optional
	Treatment *GroupConversion `json:"treatment,omitempty"`

	// holdout conversion.
	// +optional
	Holdout *GroupConversion `json:"holdout,omitempty"`

	// uplift with a confidence interval.
	// +optional
	Uplift *Uplift `json:"uplift,omitempty"`

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
