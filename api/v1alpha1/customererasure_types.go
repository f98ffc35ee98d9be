package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// CustomerIDsSecretType is the type a CustomerErasure's Secret must have.
// The operator removes the data of the Secrets an erasure names, and only
// of Secrets of this type (immutable once created): an erasure cannot be
// used to wipe another Secret of its namespace.
const CustomerIDsSecretType = "retention.dev/customer-ids"

// ErasedByAnnotation is set on a CustomerErasure's Secret when the operator
// has removed its data: the erasure's UID.
const ErasedByAnnotation = "retention.dev/erased-by"

// CustomerErasureSpec names the customers to forget and the source they
// are customers of. The customer ids are read from a Secret, never from
// the spec: nothing in etcd holds them in the clear once the erasure is
// done (the operator then removes the Secret's data).
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable: create another CustomerErasure"
type CustomerErasureSpec struct {
	// sourceRef names the CustomerSource, in the same namespace, whose
	// customers are erased. Customer ids are per source: another source's
	// customer with the same id is not touched. The source may have been
	// deleted: its runs' targets and records are erased all the same, and
	// its tombstones keep the customers out of a source made again under
	// the name.
	// +required
	SourceRef LocalObjectReference `json:"sourceRef"`

	// customerIDsSecretRef selects the Secret key that lists the customer
	// ids, one per line (blank lines are ignored). The Secret must be of
	// type retention.dev/customer-ids (`kubectl create secret generic
	// --type=retention.dev/customer-ids`). When the erasure is done, the
	// operator removes the Secret's data and annotates it with
	// retention.dev/erased-by.
	// +required
	CustomerIDsSecretRef CustomerIDsSecretRef `json:"customerIDsSecretRef"`
}

// CustomerIDsSecretRef selects the key of a Secret that lists customer ids.
// +structType=atomic
type CustomerIDsSecretRef struct {
	// name of the Secret in the same namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`

	// key within the Secret's data. If unset, this defaults to "ids".
	// +kubebuilder:default=ids
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +optional
	Key string `json:"key,omitempty"`
}

// ErasurePhase is where an erasure is in its life.
// +kubebuilder:validation:Enum=Pending;Erasing;Completed;Failed
type ErasurePhase string

const (
	// ErasurePending: not started (the Secret is missing, or the store is
	// unreachable; Ready says which).
	ErasurePending ErasurePhase = "Pending"
	// ErasureErasing: the customers are being removed.
	ErasureErasing ErasurePhase = "Erasing"
	// ErasureCompleted: the customers are erased, their tombstones
	// recorded and the Secret's data removed.
	ErasureCompleted ErasurePhase = "Completed"
	// ErasureFailed: the Secret's list cannot be used (no id, too many);
	// nothing was erased. Fix the Secret and create another CustomerErasure.
	ErasureFailed ErasurePhase = "Failed"
)

// ErasureCounts count what an erasure removed. They hold no identifier.
type ErasureCounts struct {
	// customers is the number of distinct customer ids requested.
	Customers int64 `json:"customers"`
	// tombstones is the number of tombstones recorded (customers not
	// erased before).
	Tombstones int64 `json:"tombstones"`
	// alreadyErased is the number of customers that had a tombstone.
	AlreadyErased int64 `json:"alreadyErased"`
	// snapshotRows is the number of customer records removed from the
	// source's snapshots (one per snapshot that held the customer).
	SnapshotRows int64 `json:"snapshotRows"`
	// memberships is the number of segment memberships removed.
	Memberships int64 `json:"memberships"`
	// segments is the number of segments that lost members.
	Segments int64 `json:"segments"`
	// targets is the number of campaign run targets whose customer id was
	// replaced by a tombstone id (their group, outcome and revenue stay, so
	// measured uplift does not change).
	Targets int64 `json:"targets"`
	// skippedTargets is the number of those targets that were still to be
	// sent and are now skipped.
	SkippedTargets int64 `json:"skippedTargets"`
	// records is the number of contact-ledger entries, holdout
	// assignments and holdout contacts removed.
	Records int64 `json:"records"`
	// optOuts is the number of opt-outs removed.
	OptOuts int64 `json:"optOuts"`
}

// CustomerErasureStatus is the observed state of an erasure: counts and
// times only, never an identifier.
type CustomerErasureStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// phase is where the erasure is: Pending, Erasing, Completed or Failed.
	// +optional
	Phase ErasurePhase `json:"phase,omitempty"`

	// startTime is when the erasure began removing customers.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// completionTime is when the erasure completed.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// erased counts what was removed, once the customers are erased.
	// +optional
	Erased *ErasureCounts `json:"erased,omitempty"`

	// conditions: Ready is True when the erasure completed.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// CustomerErasure forgets customers of a source on request (GDPR Art. 17):
// it removes them from every snapshot, segment membership, campaign target,
// contact ledger and opt-out list of the source, keeps aggregate figures
// under tombstone ids, and records a salted-hash tombstone so that later
// scorings leave them out.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=erasure,categories=retention
// +kubebuilder:printcolumn:name="Source",type=string,JSONPath=`.spec.sourceRef.name`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Customers",type=integer,JSONPath=`.status.erased.customers`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Completed",type=date,JSONPath=`.status.completionTime`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type CustomerErasure struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec names the customers to erase.
	// +required
	Spec CustomerErasureSpec `json:"spec"`

	// status is the observed state.
	// +optional
	Status CustomerErasureStatus `json:"status,omitempty"`
}

// CustomerErasureList is a list of CustomerErasures.
// +kubebuilder:object:root=true
type CustomerErasureList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the erasures.
	Items []CustomerErasure `json:"items"`
}

func init() {
	SchemeBuilder.Register(&CustomerErasure{}, &CustomerErasureList{})
}
