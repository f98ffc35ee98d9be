package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// TriggerType starts a campaign run on an event instead of a schedule.
// +kubebuilder:validation:Enum=OnEnter
type TriggerType string

const (
	// TriggerOnEnter runs the campaign for the customers who entered the
	// segment since the last snapshot the campaign processed: one run per
	// new segment snapshot that brought entries.
	TriggerOnEnter TriggerType = "OnEnter"
)

// ConcurrencyPolicy says what happens when a run is due while another is
// active. A run is active while Pending, Materializing or Sending — not
// while Measuring, so a daily campaign is not blocked for its conversion
// window.
// +kubebuilder:validation:Enum=Allow;Forbid;Replace
type ConcurrencyPolicy string

const (
	// ConcurrencyAllow starts the new run beside the running one.
	ConcurrencyAllow ConcurrencyPolicy = "Allow"
	// ConcurrencyForbid skips the new run while one is active (counted in
	// status.skippedRuns). For OnEnter, the entries wait for the next run
	// instead: the cursor does not move, so no entrant is lost.
	ConcurrencyForbid ConcurrencyPolicy = "Forbid"
	// ConcurrencyReplace cancels the active run (its unclaimed targets are
	// skipped with reason cancelled; sends in flight finish) and starts the
	// new one.
	ConcurrencyReplace ConcurrencyPolicy = "Replace"
)

// MessageVariant is one version of the message, for A/B tests.
type MessageVariant struct {
	// name of the variant, reported in status and metrics.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`

	// weight of the variant relative to the others. If unset, this
	// defaults to 1. 0 pauses the variant: no new customer is given it.
	// Between 0 and 1000; at least one variant must have a weight above 0.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Weight *int32 `json:"weight,omitempty"`

	// subject template; if unset, the message's subject is used.
	// +kubebuilder:validation:MaxLength=998
	// +optional
	Subject string `json:"subject,omitempty"`

	// body template; if unset, the message's body is used.
	// +kubebuilder:validation:MaxLength=65536
	// +optional
	Body string `json:"body,omitempty"`

	// html body template; if unset, the message's html is used.
	// +kubebuilder:validation:MaxLength=131072
	// +optional
	HTML string `json:"html,omitempty"`
}

// Message is what a campaign sends. Subject and body are Go text/template
// templates over the customer (e.g. `{{.Attributes.first_name}}`).
type Message struct {
	// subject template (email subject, webhook "subject" field).
	// +kubebuilder:validation:MaxLength=998
	// +optional
	Subject string `json:"subject,omitempty"`

	// body template: the text of the message (the plain-text part of an
	// email).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=65536
	// +required
	Body string `json:"body"`

	// html is an html/template body: email channels send it beside the
	// text body as multipart/alternative; webhooks carry it as
	// message.html. Values are escaped for their HTML context.
	// +kubebuilder:validation:MaxLength=131072
	// +optional
	HTML string `json:"html,omitempty"`

	// variants split the audience by weight; each may override subject and body.
	// +kubebuilder:validation:XValidation:rule="self.size() == 0 || self.exists(v, !has(v.weight) || v.weight > 0)",message="at least one variant must have a weight above 0"
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
	// Between 1m and 8760h (a year).
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('8760h')",message="window must be between 1m and 8760h"
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
	// the customer, in addition to the source's contact opt-out column and
	// the operator's opt-out list (one-click unsubscribes).
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	// +kubebuilder:validation:MaxLength=63
	// +optional
	OptOutAttribute string `json:"optOutAttribute,omitempty"`
}

// QuietHours is a daily window, in each customer's time zone, in which no
// message is sent; messages wait until it ends (they are deferred, never
// dropped). A window may cross midnight (21:00 to 08:00). A customer
// without a valid time zone gets the campaign's (counted in the run's
// status).
// +kubebuilder:validation:XValidation:rule="self.start != self.end",message="quietHours start and end must differ"
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
	// +kubebuilder:validation:XValidation:rule="self.startsWith('@') || self.split(' ').all(f, f.matches('^[0-9*/,?A-Za-z-]+$'))",message="schedule fields may contain only digits, names, and * / , - ?"
	// +kubebuilder:validation:XValidation:rule="self.startsWith('@') || self.split(' ')[0].matches('^([*]|[0-5]?[0-9](-[0-5]?[0-9])?)(/[0-9]+)?(,([*]|[0-5]?[0-9](-[0-5]?[0-9])?)(/[0-9]+)?)*$')",message="the minute field must be 0-59, *, a range or a step"
	// +kubebuilder:validation:XValidation:rule="self.startsWith('@') || self.split(' ')[1].matches('^([*]|(1?[0-9]|2[0-3])(-(1?[0-9]|2[0-3]))?)(/[0-9]+)?(,([*]|(1?[0-9]|2[0-3])(-(1?[0-9]|2[0-3]))?)(/[0-9]+)?)*$')",message="the hour field must be 0-23, *, a range or a step"
	// +kubebuilder:validation:XValidation:rule="!self.contains('TZ=')",message="set the time zone in timeZone, not in the schedule"
	// +optional
	Schedule string `json:"schedule,omitempty"`

	// timeZone of the schedule, an IANA name such as Europe/Berlin. If
	// unset, UTC. An unknown zone stalls the campaign (reason
	// InvalidSchedule). Also the zone of quiet hours for customers without
	// a valid zone of their own.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z][A-Za-z0-9_+/-]*$`
	// +optional
	TimeZone *string `json:"timeZone,omitempty"`

	// startingDeadlineSeconds is how late a scheduled run may still start,
	// as in a CronJob: a slot missed by more (the operator was down, the
	// campaign suspended) is skipped and counted in status.missedRuns. If
	// unset, a missed slot starts however late; when more than 100 slots
	// were missed, only the latest runs and an Event says so.
	// +kubebuilder:validation:Minimum=0
	// +optional
	StartingDeadlineSeconds *int64 `json:"startingDeadlineSeconds,omitempty"`

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

	// maxPerRun caps the eligible audience of one run (treatment and
	// holdout together, before the split, so the groups stay comparable):
	// the customers with the highest expected value are kept, the rest are
	// excluded with reason over_max. If unset, there is no cap.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxPerRun *int32 `json:"maxPerRun,omitempty"`

	// parallelism is the number of shards a run is split into: the outreach
	// Job's completions, and the pods that send at once. If unset, this
	// defaults to 1. Between 1 and 64.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	// +optional
	Parallelism *int32 `json:"parallelism,omitempty"`

	// conversionWindow after the run's start of sending within which a
	// purchase counts as a conversion, for treatment and holdout alike. If
	// unset, this defaults to 168h (7 days). Between 1h and 2160h (90 days).
	// +kubebuilder:default="168h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h') && duration(self) <= duration('2160h')",message="conversionWindow must be between 1h and 2160h"
	// +optional
	ConversionWindow *metav1.Duration `json:"conversionWindow,omitempty"`

	// concurrencyPolicy says what happens when a run is due while another
	// is active (Pending, Materializing or Sending). If unset, this defaults
	// to Forbid. For OnEnter campaigns, Forbid defers the entrants to the
	// next run after the active one, Replace cancels the active run, Allow
	// runs both.
	// +kubebuilder:default=Forbid
	// +optional
	ConcurrencyPolicy ConcurrencyPolicy `json:"concurrencyPolicy,omitempty"`

	// successfulRunsHistoryLimit is how many succeeded (or cancelled) runs
	// are kept as objects; the store keeps their counts in the campaign's
	// totals, the contact ledger and the holdout assignments. If unset,
	// this defaults to 3. Between 0 and 100.
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	SuccessfulRunsHistoryLimit *int32 `json:"successfulRunsHistoryLimit,omitempty"`

	// failedRunsHistoryLimit is how many failed runs are kept.
	// If unset, this defaults to 1. Between 0 and 100.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	FailedRunsHistoryLimit *int32 `json:"failedRunsHistoryLimit,omitempty"`

	// suspend stops new runs while true; running ones finish.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// dryRun materialises each run's audience and reports every count
	// (by exclusion reason, group and variant) without creating a Job or
	// sending anything; a dry run writes no contact to the ledger.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`
}

// CampaignTotals counts what every run of a campaign ever did: kept in the
// store, so deleting runs (history limits) never changes them.
type CampaignTotals struct {
	// runs made.
	Runs int64 `json:"runs"`
	// audience counts summed over the runs.
	AudienceCounts `json:",inline"`
	// delivery counts summed over the runs.
	DeliveryCounts `json:",inline"`
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

	// lastScheduleTime is the slot of the last run the campaign made.
	// +optional
	LastScheduleTime *metav1.Time `json:"lastScheduleTime,omitempty"`

	// lastSuccessfulTime is when a run of the campaign last succeeded.
	// +optional
	LastSuccessfulTime *metav1.Time `json:"lastSuccessfulTime,omitempty"`

	// nextScheduleTime is when the next run is due.
	// +optional
	NextScheduleTime *metav1.Time `json:"nextScheduleTime,omitempty"`

	// active lists the runs that are Pending, Materializing or Sending.
	// +listType=atomic
	// +optional
	Active []LocalObjectReference `json:"active,omitempty"`

	// missedRuns counts slots skipped because they were missed by more than
	// startingDeadlineSeconds (or by the more than 100 slots rule).
	// +kubebuilder:default=0
	// +optional
	MissedRuns int64 `json:"missedRuns"`

	// skippedRuns counts slots skipped by concurrencyPolicy Forbid.
	// +kubebuilder:default=0
	// +optional
	SkippedRuns int64 `json:"skippedRuns"`

	// lastEnteredSnapshotID is the OnEnter cursor: the segment snapshot
	// whose entrants the campaign has processed. The next run's audience
	// is the customers who entered after it.
	// +optional
	LastEnteredSnapshotID int64 `json:"lastEnteredSnapshotID,omitempty"`

	// totals over every run ever made.
	// +optional
	Totals *CampaignTotals `json:"totals,omitempty"`

	// measurement pooled over every measured run the campaign ever made,
	// stratified by run (Mantel–Haenszel), kept in the store so history
	// limits never change it.
	// +optional
	Measurement *Measurement `json:"measurement,omitempty"`
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
// +kubebuilder:printcolumn:name="Sent",type=integer,JSONPath=`.status.totals.sent`
// +kubebuilder:printcolumn:name="Last Schedule",type=date,JSONPath=`.status.lastScheduleTime`
// +kubebuilder:printcolumn:name="Next Schedule",type=string,JSONPath=`.status.nextScheduleTime`,priority=1
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
