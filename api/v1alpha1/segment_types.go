package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// PreviewLabel marks a Segment made by `kubectl retention preview segment`:
// evaluated like any other, never usable by a Campaign, deleted by the
// plugin once read.
const PreviewLabel = "retention.dev/preview"

// PreviewOfAnnotation names, on a preview Segment, the Segment whose
// current membership its entered and exited counts are against (the
// operator copies that membership before the first evaluation).
const PreviewOfAnnotation = "retention.dev/preview-of"

// IsPreview reports whether the Segment is a preview.
func (in *Segment) IsPreview() bool { return in.Labels[PreviewLabel] == "true" }

// SegmentSpec declares who belongs to a segment: a CEL rule over the scored
// customers of one source.
type SegmentSpec struct {
	// sourceRef names the CustomerSource in the same namespace whose scored
	// customers the rule selects from.
	// +required
	SourceRef LocalObjectReference `json:"sourceRef"`

	// rule is a CEL expression over `customer` (features, scores,
	// percentiles, RFM scores, custom scores, attributes and contact
	// fields) and `now` that yields true for members, e.g.
	// `customer.pAlive < 0.5 && customer.recencyDays < 120`.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=8192
	// +required
	Rule string `json:"rule"`

	// description says what the segment is for, for people.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Description string `json:"description,omitempty"`
}

// SegmentStatus is the observed state of a Segment.
type SegmentStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready is True when the rule compiles and membership is
	// current with the source's snapshot.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// The counts are written even when 0, and default to 0: the reconciler
	// writes status with a merge patch, which leaves out a count that was 0
	// and stays 0, so the API server's default is what makes it appear.

	// size is the number of members (0 for an empty segment).
	// +kubebuilder:default=0
	// +optional
	Size int64 `json:"size"`

	// entered is the number of customers who joined at the last evaluation.
	// +kubebuilder:default=0
	// +optional
	Entered int64 `json:"entered"`

	// exited is the number of customers who left at the last evaluation.
	// +kubebuilder:default=0
	// +optional
	Exited int64 `json:"exited"`

	// sharePercent is the members' share of the source's customers, in percent.
	// +optional
	SharePercent string `json:"sharePercent,omitempty"`

	// expectedValue is the members' total expected value, as a decimal string.
	// +optional
	ExpectedValue string `json:"expectedValue,omitempty"`

	// snapshotID is the source snapshot the membership was evaluated against.
	// +optional
	SnapshotID int64 `json:"snapshotID,omitempty"`

	// lastEvaluatedTime is when the membership was last written.
	// +optional
	LastEvaluatedTime *metav1.Time `json:"lastEvaluatedTime,omitempty"`
}

// Segment is a named group of customers selected by a CEL rule.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=seg,categories=retention
// +kubebuilder:printcolumn:name="Source",type=string,JSONPath=`.spec.sourceRef.name`
// +kubebuilder:printcolumn:name="Size",type=integer,JSONPath=`.status.size`
// +kubebuilder:printcolumn:name="Share",type=string,JSONPath=`.status.sharePercent`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Segment struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired segment.
	// +required
	Spec SegmentSpec `json:"spec"`

	// status is the observed state.
	// +optional
	Status SegmentStatus `json:"status,omitempty"`
}

// SegmentList is a list of Segments.
// +kubebuilder:object:root=true
type SegmentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Segment `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Segment{}, &SegmentList{})
}
