package v1alpha1

// Condition types. Every kind has Ready; its polarity is positive (True is good).
const (
	// ConditionReady is True when the object's references resolve and the
	// operator has done the object's work (a source scored, a segment
	// evaluated, a channel's Secrets resolved). `kubectl wait --for=condition=Ready` uses it.
	ConditionReady = "Ready"

	// ConditionReconciling is True while the operator is working towards a
	// new observation (a scoring or an evaluation in progress). Abnormal-true:
	// absent when idle.
	ConditionReconciling = "Reconciling"

	// ConditionStalled is True when the spec can never work as written (a
	// rule that does not compile, a query that is rejected) and the operator
	// will not retry until the spec changes. Abnormal-true.
	ConditionStalled = "Stalled"

	// ConditionModelFallback is True on a CustomerSource whose configured
	// model could not be fitted, so scores come from a simpler model (RFM
	// only, or another model of the family). Abnormal-true.
	ConditionModelFallback = "ModelFallback"

	// ConditionSampleRatioMismatch is True on a CampaignRun whose assigned
	// groups are unlikely under the planned split (χ² p < 0.001): its
	// uplift is not to be trusted. Abnormal-true.
	ConditionSampleRatioMismatch = "SampleRatioMismatch"
)

// Condition reasons, shared by the kinds. They are also the reasons of the
// Events the operator records at the same state changes.
const (
	// ReasonSucceeded: the last reconciliation did the object's work.
	ReasonSucceeded = "Succeeded"
	// ReasonProgressing: work is under way.
	ReasonProgressing = "Progressing"
	// ReasonSuspended: spec.suspend is true; nothing is refreshed or sent.
	ReasonSuspended = "Suspended"
	// ReasonSecretNotFound: a referenced Secret does not exist.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonSecretKeyNotFound: a referenced Secret exists but lacks the key.
	ReasonSecretKeyNotFound = "SecretKeyNotFound"
	// ReasonInvalidSecret: a referenced Secret key holds a value that
	// cannot work (e.g. a webhook signing key not in whsec_ form).
	ReasonInvalidSecret = "InvalidSecret"
	// ReasonConfigMapNotFound: a referenced ConfigMap does not exist.
	ReasonConfigMapNotFound = "ConfigMapNotFound"
	// ReasonConfigMapKeyNotFound: a referenced ConfigMap exists but lacks the key.
	ReasonConfigMapKeyNotFound = "ConfigMapKeyNotFound"
	// ReasonSourceNotFound: the referenced CustomerSource does not exist.
	ReasonSourceNotFound = "SourceNotFound"
	// ReasonSourceNotReady: the referenced CustomerSource has no current snapshot.
	ReasonSourceNotReady = "SourceNotReady"
	// ReasonSegmentNotFound: a referenced Segment does not exist.
	ReasonSegmentNotFound = "SegmentNotFound"
	// ReasonSegmentNotReady: a referenced Segment has not been evaluated.
	ReasonSegmentNotReady = "SegmentNotReady"
	// ReasonChannelNotFound: the referenced Channel does not exist.
	ReasonChannelNotFound = "ChannelNotFound"
	// ReasonChannelNotReady: the referenced Channel is not Ready.
	ReasonChannelNotReady = "ChannelNotReady"
	// ReasonCampaignNotFound: the referenced Campaign does not exist.
	ReasonCampaignNotFound = "CampaignNotFound"
	// ReasonInvalidRule: a CEL rule or custom score does not compile or
	// exceeds the cost limit.
	ReasonInvalidRule = "InvalidRule"
	// ReasonInvalidSpec: the spec passed schema validation but cannot work.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonReadFailed: the source could not be read.
	ReasonReadFailed = "ReadFailed"
	// ReasonTooManyRejectedRows: more rows were bad than the source allows;
	// the previous snapshot stays current.
	ReasonTooManyRejectedRows = "TooManyRejectedRows"
	// ReasonScoringFailed: the customers could not be scored.
	ReasonScoringFailed = "ScoringFailed"
	// ReasonModelNotFitted: a model of the BG/NBD family could not be fitted.
	ReasonModelNotFitted = "ModelNotFitted"
	// ReasonStoreUnavailable: the data-plane store could not be reached.
	ReasonStoreUnavailable = "StoreUnavailable"
	// ReasonNotImplemented: the references resolve but this version of the
	// operator cannot yet do the object's work, so it does not claim Ready.
	ReasonNotImplemented = "NotImplemented"
	// ReasonInvalidSchedule: a Campaign's schedule or time zone cannot be
	// parsed (stalled until the spec changes).
	ReasonInvalidSchedule = "InvalidSchedule"
	// ReasonInvalidTemplate: a message template does not parse, or the
	// channel needs a subject the message lacks (stalled).
	ReasonInvalidTemplate = "InvalidTemplate"
	// ReasonSuspendedRuns: a Campaign is suspended: no new run starts.
	ReasonSuspendedRuns = "Suspended"
	// ReasonMaterializing: a run's audience is being written to the store.
	ReasonMaterializing = "Materializing"
	// ReasonSending: a run's outreach Job is sending.
	ReasonSending = "Sending"
	// ReasonMeasuring: a run is sent; its conversion window is open.
	ReasonMeasuring = "Measuring"
	// ReasonCancelled: a run was replaced by a newer one (concurrencyPolicy
	// Replace) before it finished sending.
	ReasonCancelled = "Cancelled"
	// ReasonStoreNotShared: the store is a SQLite file that the pods of an
	// outreach Job cannot share; a cluster needs PostgreSQL.
	ReasonStoreNotShared = "StoreNotShared"
	// ReasonJobFailed: the outreach Job failed and the follow-up limit is
	// reached, or it could not be created.
	ReasonJobFailed = "JobFailed"
	// ReasonMaterializeFailed: the audience could not be written.
	ReasonMaterializeFailed = "MaterializeFailed"
	// ReasonErasing: a CustomerErasure removed the customers and is
	// clearing its Secret.
	ReasonErasing = "Erasing"
)

// Event reasons of state changes that are not condition transitions.
const (
	// EventRunCreated: a Campaign made a CampaignRun for a slot or an entry.
	EventRunCreated = "RunCreated"
	// EventRunSkipped: a slot was skipped by concurrencyPolicy Forbid.
	EventRunSkipped = "RunSkipped"
	// EventRunMissed: a slot was missed by more than startingDeadlineSeconds.
	EventRunMissed = "RunMissed"
	// EventTooManyMissed: more than 100 slots were missed; only the latest runs.
	EventTooManyMissed = "TooManyMissedRuns"
	// EventRunReplaced: an active run was cancelled by a newer one (Replace).
	EventRunReplaced = "RunReplaced"
	// EventRunDeleted: a finished run was deleted by a history limit.
	EventRunDeleted = "RunDeleted"
	// EventMaterialized: a run's audience was written, with its counts.
	EventMaterialized = "Materialized"
	// EventJobCreated: a run's outreach Job was created.
	EventJobCreated = "JobCreated"
	// EventFollowUpJob: a Job was launched again for shards left unfinished.
	EventFollowUpJob = "FollowUpJob"
	// EventRetried: a Failed run was sent again on request (its unsent
	// shards), or there was nothing to send again.
	EventRetried = "Retried"
	// EventSent: a run's Job finished; the delivery counts are final.
	EventSent = "Sent"
	// EventSampleRatioMismatch: a run's groups came out unlike the planned
	// split (χ² p < 0.001).
	EventSampleRatioMismatch = "SampleRatioMismatch"
	// EventMeasured: a run's conversion window closed; its figures are final.
	EventMeasured = "Measured"
)
