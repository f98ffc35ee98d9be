package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// RunPhase is where a campaign run is in its life.
// +kubebuilder:validation:Enum=Pending;Materializing;Sending;Measuring;Succeeded;Failed
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
)

// CampaignRunSpec declares one run of a campaign.
type CampaignRunSpec struct {
	// campaignRef names the Campaign in the same namespace.
	// +required
	CampaignRef LocalObjectReference `json:"campaignRef"`

	// scheduledTime is the time the run was due; for an ad-hoc run, when it
	// was asked for. Immutable.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="scheduledTime is immutable"
	// +required
	ScheduledTime metav1.Time `json:"scheduledTime"`
}

// AudienceCounts counts how the audience of a run was split.
type AudienceCounts struct {
	// segment members when the run was materialised.
	Members int64 `json:"members"`
	// treatment customers to contact.
	Treatment int64 `json:"treatment"`
	// holdout customers in the control group.
	Holdout int64 `json:"holdout"`
	// suppressed customers (suppression segments, opt-out).
	Suppressed int64 `json:"suppressed"`
	// capped customers (frequency cap).
	Capped int64 `json:"capped"`
}

// DeliveryCounts counts delivery outcomes.
type DeliveryCounts struct {
	// pending messages not yet sent.
	Pending int64 `json:"pending"`
	// sent messages.
	Sent int64 `json:"sent"`
	// failed messages (retries exhausted).
	Failed int64 `json:"failed"`
	// skipped messages (e.g. no contact address).
	Skipped int64 `json:"skipped"`
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

	// conditions: Ready is True when the run has succeeded.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// phase of the run.
	// +optional
	Phase RunPhase `json:"phase,omitempty"`

	// audience split.
	// +optional
	Audience *AudienceCounts `json:"audience,omitempty"`

	// delivery outcomes.
	// +optional
	Delivery *DeliveryCounts `json:"delivery,omitempty"`

	// jobRef names the outreach Job.
	// +optional
	JobRef *LocalObjectReference `json:"jobRef,omitempty"`

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

	// completionTime is when the run succeeded or failed.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// CampaignRun is one run of a campaign: an audience materialised in the
// store, an outreach Job, and its measurement.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=crun,categories=retention
// +kubebuilder:printcolumn:name="Campaign",type=string,JSONPath=`.spec.campaignRef.name`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Sent",type=integer,JSONPath=`.status.delivery.sent`
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
