package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// ChannelSpec declares how messages leave the cluster. Exactly one of
// webhook, smtp and slack must be set.
// +kubebuilder:validation:XValidation:rule="[has(self.webhook), has(self.smtp), has(self.slack)].filter(x, x).size() == 1",message="exactly one of webhook, smtp or slack must be set"
type ChannelSpec struct {
	// webhook posts each message as JSON to an HTTP endpoint.
	// Cannot be set if smtp or slack is set.
	// +optional
	Webhook *WebhookChannel `json:"webhook,omitempty"`

	// smtp sends each message as an email.
	// Cannot be set if webhook or slack is set.
	// +optional
	SMTP *SMTPChannel `json:"smtp,omitempty"`

	// slack posts each message to a Slack incoming webhook.
	// Cannot be set if webhook or smtp is set.
	// +optional
	Slack *SlackChannel `json:"slack,omitempty"`

	// rateLimit caps how fast one run sends on this channel: the rate is
	// split evenly across the run's shards (each sends at its share).
	// Runs of different campaigns at the same time each get the rate.
	// +optional
	RateLimit *RateLimit `json:"rateLimit,omitempty"`

	// retry says how failed sends are retried.
	// +optional
	Retry *RetryPolicy `json:"retry,omitempty"`
}

// HTTPHeader is a header sent with every webhook request.
type HTTPHeader struct {
	// name of the header.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9-]+$`
	// +kubebuilder:validation:MaxLength=256
	// +required
	Name string `json:"name"`
	// value of the header.
	// +kubebuilder:validation:MaxLength=4096
	// +required
	Value string `json:"value"`
}

// WebhookChannel posts messages as JSON. Each request carries an idempotency
// key (`<run-uid>/<customer-id>`) and, with a signing Secret, Standard
// Webhooks signature headers (HMAC-SHA256).
type WebhookChannel struct {
	// url of the endpoint.
	// +kubebuilder:validation:Pattern=`^https?://`
	// +kubebuilder:validation:MaxLength=2048
	// +required
	URL string `json:"url"`

	// signingSecretRef selects the Secret key that holds the HMAC signing key.
	// If unset, requests are not signed.
	// +optional
	SigningSecretRef *KeySelector `json:"signingSecretRef,omitempty"`

	// headers sent with every request.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Headers []HTTPHeader `json:"headers,omitempty"`

	// caBundle is a PEM bundle of the certificate authorities trusted for
	// an https url (for private endpoints). If unset, the system's roots.
	// +kubebuilder:validation:MaxLength=65536
	// +optional
	CABundle []byte `json:"caBundle,omitempty"`

	// timeout bounds each request. If unset, this defaults to 10s.
	// +kubebuilder:default="10s"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// TLSMode is how an SMTP connection is secured.
// +kubebuilder:validation:Enum=None;StartTLS;TLS
type TLSMode string

const (
	// TLSModeNone sends in clear text (only for local relays).
	TLSModeNone TLSMode = "None"
	// TLSModeStartTLS upgrades the connection with STARTTLS.
	TLSModeStartTLS TLSMode = "StartTLS"
	// TLSModeTLS connects over TLS from the start (implicit TLS, port 465).
	TLSModeTLS TLSMode = "TLS"
)

// SMTPChannel sends messages as email.
// +kubebuilder:validation:XValidation:rule="!(has(self.dkim) && has(self.relaySigns) && self.relaySigns)",message="dkim cannot be set when relaySigns is true"
// +kubebuilder:validation:XValidation:rule="has(self.dkim) || (has(self.relaySigns) && self.relaySigns)",message="set dkim, or relaySigns: true when the relay signs: RFC 8058 one-click unsubscribe needs a DKIM signature over List-Unsubscribe"
type SMTPChannel struct {
	// host of the SMTP server.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Host string `json:"host"`

	// port of the SMTP server. If unset, this defaults to 587. Between 1 and 65535.
	// +kubebuilder:default=587
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`

	// tlsMode secures the connection. If unset, this defaults to StartTLS.
	// +kubebuilder:default=StartTLS
	// +optional
	TLSMode TLSMode `json:"tlsMode,omitempty"`

	// from is the sender address, e.g. "Shop <hello@shop.example>".
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=320
	// +required
	From string `json:"from"`

	// credentialsSecretRef names a Secret with the keys "username" and
	// "password". If unset, no authentication is used.
	// +optional
	CredentialsSecretRef *LocalObjectReference `json:"credentialsSecretRef,omitempty"`

	// dkim signs every message with a DKIM key (RFC 6376), covering the
	// List-Unsubscribe headers as RFC 8058 requires. Cannot be set if
	// relaySigns is true.
	// +optional
	DKIM *DKIMSigning `json:"dkim,omitempty"`

	// relaySigns says the SMTP relay adds the DKIM signature, so the
	// operator does not sign. If unset, this defaults to false; bulk mail
	// that nobody signs is refused by the large mailbox providers.
	// +optional
	RelaySigns bool `json:"relaySigns,omitempty"`

	// unsubscribeMailto is the address of the mailto: List-Unsubscribe
	// entry, beside the operator's one-click https link.
	// +kubebuilder:validation:MaxLength=320
	// +kubebuilder:validation:Pattern=`^[^@\s<>]+@[^@\s<>]+$`
	// +optional
	UnsubscribeMailto string `json:"unsubscribeMailto,omitempty"`
}

// DKIMSigning selects the key messages are signed with.
type DKIMSigning struct {
	// domain is the signing domain (d=), usually the From address's.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Domain string `json:"domain"`

	// selector is the DKIM selector (s=): the key's DNS record is
	// <selector>._domainkey.<domain>.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +required
	Selector string `json:"selector"`

	// privateKeySecretRef selects the Secret key holding the PEM private
	// key (RSA or Ed25519).
	// +required
	PrivateKeySecretRef KeySelector `json:"privateKeySecretRef"`
}

// SlackChannel posts messages to a Slack incoming webhook.
type SlackChannel struct {
	// webhookURLSecretRef selects the Secret key that holds the incoming
	// webhook URL (the URL is a credential).
	// +required
	WebhookURLSecretRef KeySelector `json:"webhookURLSecretRef"`
}

// RateLimit is a token bucket.
type RateLimit struct {
	// perSecond is the sustained number of messages per second. At least 1.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +required
	PerSecond int32 `json:"perSecond"`

	// burst is the number of messages that may be sent at once.
	// If unset, this defaults to perSecond.
	// +kubebuilder:validation:Minimum=1
	// +optional
	Burst *int32 `json:"burst,omitempty"`
}

// RetryPolicy retries failed sends with exponential backoff.
type RetryPolicy struct {
	// maxAttempts per message, the first included. If unset, this
	// defaults to 3. Between 1 and 10.
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	// +optional
	MaxAttempts int32 `json:"maxAttempts,omitempty"`

	// backoff before the first retry; doubled for each further one.
	// If unset, this defaults to 1s.
	// +kubebuilder:default="1s"
	// +optional
	Backoff *metav1.Duration `json:"backoff,omitempty"`
}

// ChannelStatus is the observed state of a Channel.
type ChannelStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready is True when the configuration and its Secrets resolve.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Channel declares how messages leave the cluster.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=chan,categories=retention
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Channel struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired channel.
	// +required
	Spec ChannelSpec `json:"spec"`

	// status is the observed state.
	// +optional
	Status ChannelStatus `json:"status,omitempty"`
}

// ChannelList is a list of Channels.
// +kubebuilder:object:root=true
type ChannelList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Channel `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Channel{}, &ChannelList{})
}
