package v1alpha1

// LocalObjectReference names another object in the same namespace.
// +structType=atomic
type LocalObjectReference struct {
	// name of the referenced object in the same namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`
}

// KeySelector selects one key of a Secret or ConfigMap in the same namespace.
// +structType=atomic
type KeySelector struct {
	// name of the Secret or ConfigMap in the same namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`

	// key within the Secret's or ConfigMap's data (or binaryData).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +required
	Key string `json:"key"`
}

// HTTPAuth is how to authenticate to an HTTP server. At most one of
// bearerTokenSecretRef and basicAuthSecretRef may be set.
// +kubebuilder:validation:XValidation:rule="!(has(self.bearerTokenSecretRef) && has(self.basicAuthSecretRef))",message="at most one of bearerTokenSecretRef and basicAuthSecretRef may be set"
type HTTPAuth struct {
	// bearerTokenSecretRef selects the key of a Secret that holds a bearer
	// token, sent as "Authorization: Bearer <token>".
	// Cannot be set if basicAuthSecretRef is set.
	// +optional
	BearerTokenSecretRef *KeySelector `json:"bearerTokenSecretRef,omitempty"`

	// basicAuthSecretRef names a Secret with the keys "username" and
	// "password", sent as HTTP basic authentication.
	// Cannot be set if bearerTokenSecretRef is set.
	// +optional
	BasicAuthSecretRef *LocalObjectReference `json:"basicAuthSecretRef,omitempty"`
}

// RowRejection says why one input row was rejected. It names the row and
// column, never the row's content (which may be personal data).
type RowRejection struct {
	// row is the 1-based data row number (header excluded), or the item
	// number for HTTP sources.
	Row int64 `json:"row"`

	// column is the column or field that could not be read.
	// +optional
	Column string `json:"column,omitempty"`

	// reason says what was wrong, without the value.
	Reason string `json:"reason"`
}
