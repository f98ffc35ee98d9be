package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// TriggerType starts a campaign run on an event instead of a schedule.
// +kubebuilder:validation:Enum=OnEnter
type TriggerType string

const (
	// TriggerOnEnter runs the campaign for the customers who entered the
	// segment at its latest evaluation.
	TriggerOnEnter TriggerType = "OnEnter"
)

// ConcurrencyPolicy says what happens when a run is due while another runs.
// +kubebuilder:validation:Enum=Allow;Forbid;Replace
type ConcurrencyPolicy string

const (
	// ConcurrencyAllow starts the new run beside the running one.
	ConcurrencyAllow ConcurrencyPolicy = "Allow"
	// ConcurrencyForbid skips the new run while one is running.
	ConcurrencyForbid ConcurrencyPolicy = "Forbid"
	// ConcurrencyReplace stops the running run and starts the new one.
	ConcurrencyReplace ConcurrencyPolicy = "Replace"
)

// MessageVariant is one version of the message, for A/B tests.
type MessageVariant struct {
	// name of the variant, reported in status and metrics.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`

	// weight of the variant relative to the others. If unset, this defaults to 1.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Weight int32 `json:"weight,omitempty"`

	// subject template; if unset, the message's subject is used.
	// +kubebuilder:validation:MaxLength=998
	// +optional
	Subject string `json:"subject,omitempty"`

	// body template; if unset, the message's body is used.
	// +kubebuilder:validation:MaxLength=65536
	// +optional
	Body string `json:"body,omitempty"`
}

// Message is what a campaign sends. Subject and body are Go text/template
// templates over the customer (e.g. `{{.Attributes.first_name}}`).
type Message struct {
	// subject template (email subject, webhook "subject" field).
	// +kubebuilder:validation:MaxLength=998
	// +optional
	Subject string `json:"subject,omitempty"`

	// body template.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=65536
	// +required
	Body string `json:"body"`

	// variants split the audience by weight; each may override subject and body.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=10
	// +optional
	Variants []MessageVariant `json:"variants,omitempty"`
}

// FrequencyCap limits how often one customer is contacted on a channel,
// across every campaign that uses the channel.
type FrequencyCap struct {
	// maxContacts within window. At least 1.
	// +kubebuilder:validation:Minimum=1
	// +required
	MaxContacts int32 `json:"maxContacts"`

	// window over which contacts are counted, e.g. 168h for a week.
	// +required
	Window metav1.Duration `json:"window"`
}

// Suppression excludes customers from a campaign.
type Suppression struct {
	// segments whose members are never contacted by this campaign (e.g. an
	// unprofitable or complained segment).
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Segments []LocalObjectReference `json:"segments,omitempty"`

	// optOutAttribute names a Bool attribute that, when true, suppresses
	// the customer, in addition to the source's contact opt-out column.
	// +optional
	OptOutAttribute string `json:"optOutAttribute,omitempty"`
}

// QuietHours is a daily window, in each customer's time zone, in which no
// message is sent; messages wait until it ends.
type QuietHours struct {
	// start of the quiet window, HH:MM (24h).
	// +kubebuilder:validation:Pattern=`^([01][0-9]|2[0-3]):[0-5][0-9]$`
	// +required
	Start string `json:"start"`

	// end of the quiet window, HH:MM (24h).
	// +kubebuilder:validation:Pattern=`^([01][0-9]|2[0-3]):[0-5][0-9]$`
	// +required
	End string `json:"end"`
}

// CampaignSpec declares what to send to whom, when and within which limits.
// Exactly one of schedule and trigger must be set.
// +kubebuilder:validation:XValidation:rule="has(self.schedule) != has(self.trigger)",message="exactly one of schedule or trigger must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.timeZone) || has(self.schedule)",message="timeZone can only be set with schedule"
type CampaignSpec struct {
	// segmentRef names the Segment in the same namespace to reach.
	// +required
	SegmentRef LocalObjectReference `json:"segmentRef"`

	// channelRef names the Channel in the same namespace to send through.
	// +required
	ChannelRef LocalObjectReference `json:"channelRef"`

	// message to send.
	// +required
	Message Message `json:"message"`

	// schedule in cron format ("0 9 * * 1") or a macro (@daily, @weekly…).
	// Cannot be set if trigger is set.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|@every [0-9]+(s|m|h)|[^ ]+ [^ ]+ [^ ]+ [^ ]+ [^ ]+)$')",message="schedule must be five cron fields (minute hour day-of-month month day-of-week) or a macro such as @daily"
	// +kubebuilder:validation:XValidation:rule="self.startsWith('@') || self.split(' ').all(f, f.matches('^[0-9*/,?LW#A-Za-z-]+$'))",message="schedule fields may contain only digits, names, and * / , - ?"
	// +optional
	Schedule string `json:"schedule,omitempty"`

	// timeZone of the schedule, an IANA name such as Europe/Berlin. If unset,
	// the operator's time zone (UTC in the shipped Deployment) is used.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	TimeZone *string `json:"timeZone,omitempty"`

	// trigger runs the campaign on an event instead of a schedule.
	// Cannot be set if schedule is set.
	// +optional
	Trigger TriggerType `json:"trigger,omitempty"`

	// holdoutPercent of the audience is held out as a control group that
	// is never contacted, so uplift can be measured. The same customer
	// stays in the same group across runs. If unset, this defaults to 10.
	// Between 0 and 50.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=50
	// +optional
	HoldoutPercent *int32 `json:"holdoutPercent,omitempty"`

	// frequencyCap limits contacts per customer on the channel.
	// +optional
	FrequencyCap *FrequencyCap `json:"frequencyCap,omitempty"`

	// suppress excludes customers from the audience.
	// +optional
	Suppress *Suppression `json:"suppress,omitempty"`

	// quietHours in the customer's time zone in which nothing is sent.
	// +optional
	QuietHours *QuietHours `json:"quietHours,omitempty"`

	// maxPerRun caps the number of customers contacted in one run.
	// If unset, there is no cap.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxPerRun *int32 `json:"maxPerRun,omitempty"`

	// parallelism is the number of shards (Job completions) a run is split
	// into. If unset, this defaults to 1. Between 1 and 64.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	// +optional
	Parallelism *int32 `json:"parallelism,omitempty"`

	// conversionWindow after contact within which a purchase counts as a
	// conversion. If unset, this defaults to 168h (7 days).
	// +kubebuilder:default="168h"
	// +optional
	ConversionWindow *metav1.Duration `json:"conversionWindow,omitempty"`

	// concurrencyPolicy says what happens when a run is due while another
	// is running. If unset, this defaults to Forbid.
	// +kubebuilder:default=Forbid
	// +optional
	ConcurrencyPolicy ConcurrencyPolicy `json:"concurrencyPolicy,omitempty"`

	// successfulRunsHistoryLimit is how many finished runs are kept.
	// If unset, this defaults to 3.
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=0
	// +optional
	SuccessfulRunsHistoryLimit *int32 `json:"successfulRunsHistoryLimit,omitempty"`

	// failedRunsHistoryLimit is how many failed runs are kept.
	// If unset, this defaults to 1.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +optional
	FailedRunsHistoryLimit *int32 `json:"failedRunsHistoryLimit,omitempty"`

	// suspend stops new runs while true; running ones finish.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// dryRun materialises audiences and reports counts without sending.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`
}

// CampaignTotals counts what a campaign's runs did.
type CampaignTotals struct {
	// targeted customers (treatment and holdout).
	Targeted int64 `json:"targeted"`
	// sent messages.
	Sent int64 `json:"sent"`
	// failed messages (retries exhausted).
	Failed int64 `json:"failed"`
	// heldOut customers in the control group.
	HeldOut int64 `json:"heldOut"`
	// suppressed customers (segments, opt-out).
	Suppressed int64 `json:"suppressed"`
	// capped customers (frequency cap).
	Capped int64 `json:"capped"`
	// convertedTreatment customers who bought within the conversion window after contact.
	ConvertedTreatment int64 `json:"convertedTreatment"`
	// convertedHoldout customers in the control group who bought within the window.
	ConvertedHoldout int64 `json:"convertedHoldout"`
}

// CampaignStatus is the observed state of a Campaign.
type CampaignStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready is True when references resolve and runs can start.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// lastScheduleTime is when a run was last started.
	// +optional
	LastScheduleTime *metav1.Time `json:"lastScheduleTime,omitempty"`

	// nextScheduleTime is when the next run is due.
	// +optional
	NextScheduleTime *metav1.Time `json:"nextScheduleTime,omitempty"`

	// active lists the runs in progress.
	// +listType=atomic
	// +optional
	Active []LocalObjectReference `json:"active,omitempty"`

	// totals over the kept runs.
	// +optional
	Totals *CampaignTotals `json:"totals,omitempty"`

	// upliftPercent is the difference in conversion rate between treatment
	// and holdout, in percentage points.
	// +optional
	UpliftPercent string `json:"upliftPercent,omitempty"`
}

// Campaign declares outreach to a segment through a channel.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=camp,categories=retention
// +kubebuilder:printcolumn:name="Segment",type=string,JSONPath=`.spec.segmentRef.name`
// +kubebuilder:printcolumn:name="Channel",type=string,JSONPath=`.spec.channelRef.name`
// +kubebuilder:printcolumn:name="Schedule",type=string,JSONPath=`.spec.schedule`
// +kubebuilder:printcolumn:name="Suspend",type=boolean,JSONPath=`.spec.suspend`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Last Schedule",type=date,JSONPath=`.status.lastScheduleTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Campaign struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired campaign.
	// +required
	Spec CampaignSpec `json:"spec"`

	// status is the observed state.
	// +optional
	Status CampaignStatus `json:"status,omitempty"`
}

// CampaignList is a list of Campaigns.
// +kubebuilder:object:root=true
type CampaignList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Campaign `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Campaign{}, &CampaignList{})
}
