package campaign

import "time"

// RunSettings is what a run freezes into its store record when it is
// created: the message, its variants and the channel's non-secret
// settings. The outreach runner reads only this (and the per-run
// credentials Secret in its environment), so editing the Campaign or the
// Channel never changes a run already under way.
type RunSettings struct {
	// Message is the campaign's message with its variants.
	Message Message `json:"message"`
	// Fields are the template data keys frozen into each target.
	Fields []string `json:"fields,omitempty"`
	// Channel is the channel's non-secret configuration.
	Channel ChannelSettings `json:"channel"`
	// Shards is the number of shards the run is split into; a rate limit
	// is split evenly across them.
	Shards int32 `json:"shards"`
	// UnsubscribeBaseURL is the operator's public https base for one-click
	// unsubscribe links ("" when it serves none); the link's token is
	// signed with the key in EnvUnsubscribeKey.
	UnsubscribeBaseURL string `json:"unsubscribeBaseURL,omitempty"`
}

// ChannelType names how a channel sends.
type ChannelType string

// Channel types.
const (
	ChannelWebhook ChannelType = "webhook"
	ChannelSMTP    ChannelType = "smtp"
	ChannelSlack   ChannelType = "slack"
)

// ChannelSettings are a channel's non-secret settings. Credentials (the
// signing key, SMTP password, Slack URL) reach the runner through the
// per-run Secret's environment variables named by the Env* constants.
type ChannelSettings struct {
	Type ChannelType `json:"type"`
	// Webhook: the endpoint, extra headers and the request timeout.
	URL     string            `json:"url,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Timeout time.Duration     `json:"timeout,omitempty"`
	// Signed is true when the webhook signs requests (keys in
	// EnvSigningKey, whitespace-separated while they rotate).
	Signed bool `json:"signed,omitempty"`
	// CABundle (PEM), when set, is the only trust for an https webhook.
	CABundle []byte `json:"caBundle,omitempty"`
	// SMTP: the server and sender.
	Host    string `json:"host,omitempty"`
	Port    int32  `json:"port,omitempty"`
	TLSMode string `json:"tlsMode,omitempty"`
	From    string `json:"from,omitempty"`
	// Auth is true when SMTP credentials are in EnvSMTPUsername/Password.
	Auth bool `json:"auth,omitempty"`
	// DKIMDomain and DKIMSelector name the DKIM key (in EnvDKIMKey) the
	// runner signs with; RelaySigns says the relay signs instead.
	DKIMDomain   string `json:"dkimDomain,omitempty"`
	DKIMSelector string `json:"dkimSelector,omitempty"`
	RelaySigns   bool   `json:"relaySigns,omitempty"`
	// UnsubscribeMailto is the mailto address of List-Unsubscribe.
	UnsubscribeMailto string `json:"unsubscribeMailto,omitempty"`
	// RatePerSecond and Burst limit the whole channel (0: no limit).
	RatePerSecond int32 `json:"ratePerSecond,omitempty"`
	Burst         int32 `json:"burst,omitempty"`
	// MaxAttempts and Backoff bound retries.
	MaxAttempts int32         `json:"maxAttempts,omitempty"`
	Backoff     time.Duration `json:"backoff,omitempty"`
}

// Environment variables of an outreach Job's pods. The store URL comes
// from the operator's store Secret; the rest from the per-run Secret the
// operator writes beside the Job. JOB_COMPLETION_INDEX (the shard) is set
// by Kubernetes for Indexed Jobs.
const (
	EnvStore        = "RETENTION_STORE"
	EnvSigningKey   = "RETENTION_WEBHOOK_SIGNING_KEY"
	EnvSMTPUsername = "RETENTION_SMTP_USERNAME"
	EnvSMTPPassword = "RETENTION_SMTP_PASSWORD"
	EnvSlackURL     = "RETENTION_SLACK_WEBHOOK_URL"
	EnvDKIMKey      = "RETENTION_DKIM_PRIVATE_KEY"
	// EnvUnsubscribeKey is the operator's unsubscribe-token key, base64
	// (standard encoding): the key is random bytes, which an environment
	// variable cannot always carry.
	EnvUnsubscribeKey = "RETENTION_UNSUBSCRIBE_KEY"
)
