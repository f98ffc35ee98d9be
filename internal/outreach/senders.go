package outreach

import (
	"encoding/base64"
	"fmt"
	"os"
	"strings"

	"github.com/retention-dev/retention-operator/internal/campaign"
	"github.com/retention-dev/retention-operator/internal/outreach/channel"
	"github.com/retention-dev/retention-operator/internal/outreach/email"
	"github.com/retention-dev/retention-operator/internal/outreach/slack"
	"github.com/retention-dev/retention-operator/internal/outreach/unsubscribe"
	"github.com/retention-dev/retention-operator/internal/outreach/webhook"
)

// Getenv reads the runner's environment (os.Getenv outside tests).
type Getenv func(string) string

// NewSender builds the sender of a run's channel from its frozen
// non-secret settings and the credentials in the environment (the
// per-run Secret). Every error is a configuration error (ErrConfig).
func NewSender(s campaign.ChannelSettings, getenv Getenv) (channel.Sender, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var (
		snd channel.Sender
		err error
	)
	switch s.Type {
	case campaign.ChannelWebhook:
		cfg := webhook.Config{URL: s.URL, Headers: s.Headers, Timeout: s.Timeout, CABundle: s.CABundle}
		if s.Signed {
			if cfg.SigningKeys, err = webhook.ParseSigningKeys(getenv(campaign.EnvSigningKey)); err != nil {
				return nil, fmt.Errorf("%w: webhook signing keys (%s): %v", ErrConfig, campaign.EnvSigningKey, err)
			}
			if len(cfg.SigningKeys) == 0 {
				return nil, fmt.Errorf("%w: the channel signs but %s is empty", ErrConfig, campaign.EnvSigningKey)
			}
		}
		snd, err = webhook.New(cfg)
	case campaign.ChannelSMTP:
		cfg := email.Config{Host: s.Host, Port: int(s.Port), TLSMode: email.TLSMode(s.TLSMode), From: s.From,
			Timeout: s.Timeout, RelaySigns: s.RelaySigns, UnsubscribeMailto: s.UnsubscribeMailto}
		if s.Auth {
			cfg.Username, cfg.Password = getenv(campaign.EnvSMTPUsername), getenv(campaign.EnvSMTPPassword)
		}
		if s.DKIMDomain != "" {
			key := getenv(campaign.EnvDKIMKey)
			if key == "" {
				return nil, fmt.Errorf("%w: DKIM is configured but %s is empty", ErrConfig, campaign.EnvDKIMKey)
			}
			cfg.DKIM = &email.DKIMConfig{Domain: s.DKIMDomain, Selector: s.DKIMSelector, PrivateKeyPEM: []byte(key)}
		}
		snd, err = email.New(cfg)
	case campaign.ChannelSlack:
		u := strings.TrimSpace(getenv(campaign.EnvSlackURL))
		if u == "" {
			return nil, fmt.Errorf("%w: %s is empty", ErrConfig, campaign.EnvSlackURL)
		}
		snd, err = slack.New(slack.Config{WebhookURL: u, Timeout: s.Timeout})
	default:
		return nil, fmt.Errorf("%w: unknown channel type %q", ErrConfig, s.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s channel: %v", ErrConfig, s.Type, err)
	}
	return snd, nil
}

// UnsubscribeLinks returns the builder of one-click unsubscribe URLs for
// a run's channel, or nil when the run has no unsubscribe base URL.
func UnsubscribeLinks(settings campaign.RunSettings, channelKey string, getenv Getenv) (func(customerID string) string, error) {
	if settings.UnsubscribeBaseURL == "" {
		return nil, nil
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	key, err := base64.StdEncoding.DecodeString(getenv(campaign.EnvUnsubscribeKey))
	if err != nil {
		return nil, fmt.Errorf("%w: unsubscribe key (%s) is not base64", ErrConfig, campaign.EnvUnsubscribeKey)
	}
	if err := unsubscribe.ValidateKey(key); err != nil {
		return nil, fmt.Errorf("%w: unsubscribe key (%s): %v", ErrConfig, campaign.EnvUnsubscribeKey, err)
	}
	links, err := unsubscribe.URLFunc(settings.UnsubscribeBaseURL, key, channelKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return links, nil
}
