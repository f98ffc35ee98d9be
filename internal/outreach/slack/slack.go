// Package slack sends outreach messages to a Slack channel through an
// incoming webhook (https://api.slack.com/messaging/webhooks), as Block Kit
// messages with a plain-text fallback.
//
// Incoming webhooks cannot deduplicate. The message's idempotency key goes
// only into an X-Retention-Idempotency-Key header, which Slack ignores, so
// after a crash the runner's resend of its last claimed batch can post
// those messages to Slack a second time; duplicates are bounded by one
// claim batch. A send that times out may also have been posted, and its
// retry posts it again.
//
// The webhook URL is a credential (anyone holding it can post to the
// channel): it never appears in an error, a Result reason or String.
package slack

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/retention-dev/retention-operator/internal/outreach/channel"
)

// Defaults of Config.
const (
	DefaultTimeout  = 10 * time.Second
	DefaultMaxConns = 4
	// MaxRetryAfter caps the wait a Retry-After header can ask for, so a
	// misbehaving receiver cannot park a target for days.
	MaxRetryAfter = channel.MaxRetryAfter
)

// IdempotencyKeyHeader carries channel.Message.Key. Slack ignores it; it is
// there for proxies and test receivers that can deduplicate.
const IdempotencyKeyHeader = "X-Retention-Idempotency-Key"

const (
	// errorBodyLimit is how much of an error response is read to find
	// Slack's error code; the codes are short ASCII words.
	errorBodyLimit = 256
	// drainLimit is how much of a response body is read before closing it
	// so the connection goes back to the pool; a longer body costs the
	// connection rather than an unbounded read.
	drainLimit = 64 << 10
)

// slackErrorCodes are the short error codes Slack documents as the body of
// a failed incoming-webhook post. Only these are copied into a Result
// reason: anything else in a body could carry message content.
var slackErrorCodes = map[string]bool{
	"invalid_payload":                   true,
	"user_not_found":                    true,
	"channel_not_found":                 true,
	"channel_is_archived":               true,
	"no_service":                        true,
	"no_text":                           true,
	"action_prohibited":                 true,
	"posting_to_general_channel_denied": true,
	"too_many_attachments":              true,
	"invalid_token":                     true,
	"no_active_hooks":                   true,
	"rollup_error":                      true,
}

// Config configures a Sender.
type Config struct {
	// WebhookURL is the incoming webhook's URL, from a Secret. It must be
	// https; plain http is accepted only for 127.0.0.1, ::1 and localhost,
	// which is what tests with httptest servers need and never reaches
	// Slack.
	WebhookURL string
	// Timeout bounds one send, from dialling to reading the response
	// (DefaultTimeout if 0).
	Timeout time.Duration
	// MaxConns is the connection pool size and the Sender's Concurrency
	// (DefaultMaxConns if 0).
	MaxConns int
	// Now is the clock that turns a Retry-After date into a wait
	// (time.Now if nil).
	Now func() time.Time
}

// Sender posts messages to one Slack incoming webhook. It implements
// channel.Sender.
type Sender struct {
	// webhookURL is a credential: keep it out of every error and log.
	webhookURL string
	client     *http.Client
	transport  *http.Transport
	maxConns   int
	now        func() time.Time
}

var _ channel.Sender = (*Sender)(nil)

// New checks cfg and returns a Sender. Its errors never contain the
// webhook URL.
func New(cfg Config) (*Sender, error) {
	if err := checkWebhookURL(cfg.WebhookURL); err != nil {
		return nil, err
	}
	if cfg.Timeout < 0 {
		return nil, errors.New("slack: timeout is negative")
	}
	if cfg.MaxConns < 0 {
		return nil, errors.New("slack: max conns is negative")
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	maxConns := cfg.MaxConns
	if maxConns == 0 {
		maxConns = DefaultMaxConns
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	// Keep DefaultTransport's proxy, dial and TLS handshake settings, but
	// size the pool to the senders: MaxConnsPerHost makes extra senders
	// wait for a connection instead of opening more, and as many idle
	// connections are kept so every send reuses one.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxConnsPerHost = maxConns
	transport.MaxIdleConnsPerHost = maxConns
	transport.MaxIdleConns = maxConns
	if transport.TLSClientConfig == nil {
		transport.TLSClientConfig = &tls.Config{}
	}
	transport.TLSClientConfig.MinVersion = tls.VersionTLS12
	return &Sender{
		webhookURL: cfg.WebhookURL,
		client: &http.Client{
			Transport: transport,
			Timeout:   timeout,
			// A webhook that redirects is misconfigured (or not Slack);
			// following it would resend the message body elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		transport: transport,
		maxConns:  maxConns,
		now:       now,
	}, nil
}

// checkWebhookURL accepts https URLs, and http ones for loopback hosts.
func checkWebhookURL(raw string) error {
	if raw == "" {
		return errors.New("slack: webhook URL is empty")
	}
	// url.Parse's error quotes the URL: report only that it failed.
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("slack: webhook URL does not parse")
	}
	if u.Host == "" {
		return errors.New("slack: webhook URL has no host")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		switch u.Hostname() {
		case "127.0.0.1", "::1", "localhost":
			return nil
		}
		return errors.New("slack: webhook URL must be https (http only for 127.0.0.1, ::1 or localhost)")
	default:
		return errors.New("slack: webhook URL must be https")
	}
}

// String names the sender without its webhook URL, so printing a Sender
// does not leak the credential.
func (s *Sender) String() string { return "slack incoming webhook" }

// Concurrency implements channel.Sender: the connection pool size.
func (s *Sender) Concurrency() int { return s.maxConns }

// Close implements channel.Sender: it closes idle connections.
func (s *Sender) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}

// Send implements channel.Sender: one POST to the webhook.
func (s *Sender) Send(ctx context.Context, m *channel.Message) channel.Result {
	if m.Subject == "" && m.Text == "" {
		return channel.Result{Outcome: channel.Fail, Reason: "empty message"}
	}
	if !validHeaderValue(m.Key) {
		// net/http would refuse the request with an error that looks like
		// a connection failure and so would be retried forever.
		return channel.Result{Outcome: channel.Fail, Reason: "invalid idempotency key"}
	}
	body, err := encodePayload(m)
	if err != nil {
		return channel.Result{Outcome: channel.Fail, Reason: "encode payload"}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.webhookURL, bytes.NewReader(body))
	if err != nil {
		// The error quotes the URL; New has checked it, so this is rare.
		return channel.Result{Outcome: channel.Fail, Reason: "build request"}
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "retention-operator")
	if m.Key != "" {
		req.Header.Set(IdempotencyKeyHeader, m.Key)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		// The message may or may not have been posted; a retry is the
		// at-least-once side of that doubt.
		return channel.Result{Outcome: channel.Retry, Reason: transportReason(err)}
	}
	defer drainAndClose(resp.Body)
	return s.classify(resp)
}

// classify turns a webhook response into a Result.
func (s *Sender) classify(resp *http.Response) channel.Result {
	code := resp.StatusCode
	switch {
	case code >= 200 && code <= 299:
		return channel.Result{Outcome: channel.Sent}
	case code >= 300 && code <= 399:
		return channel.Result{Outcome: channel.Fail, Reason: fmt.Sprintf("http %d redirect", code)}
	}
	reason := "http " + strconv.Itoa(code)
	if slackCode := readSlackErrorCode(resp.Body); slackCode != "" {
		reason += " " + slackCode
	}
	switch {
	case code == http.StatusTooManyRequests || code >= 500 && code <= 599:
		return channel.Result{
			Outcome:    channel.Retry,
			Reason:     reason,
			RetryAfter: channel.RetryAfter(resp.Header.Get("Retry-After"), s.now()),
		}
	case code == http.StatusRequestTimeout:
		// The receiver gave up waiting for our request: transient.
		return channel.Result{Outcome: channel.Retry, Reason: reason}
	default:
		// 400 invalid_payload, 403 action_prohibited, 404
		// channel_not_found, 410 channel_is_archived and any other status:
		// sending the same message again gets the same answer.
		return channel.Result{Outcome: channel.Fail, Reason: reason}
	}
}

// readSlackErrorCode returns the body if it is one of Slack's documented
// error codes, "" otherwise.
func readSlackErrorCode(body io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(body, errorBodyLimit))
	code := strings.TrimSpace(string(b))
	if slackErrorCodes[code] {
		return code
	}
	return ""
}

// drainAndClose reads what is left of a body (up to drainLimit) so the
// connection can be reused, then closes it.
func drainAndClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, drainLimit))
	_ = body.Close()
}

// transportReason names a failed exchange without quoting the error,
// which (a *url.Error) contains the webhook URL.
func transportReason(err error) string {
	var (
		netErr  net.Error
		dnsErr  *net.DNSError
		certErr *tls.CertificateVerificationError
		recErr  tls.RecordHeaderError
	)
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.As(err, &dnsErr):
		if dnsErr.IsTimeout {
			return "timeout"
		}
		return "dns error"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.As(err, &certErr), errors.As(err, &recErr):
		return "tls error"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	default:
		return "connection error"
	}
}

// validHeaderValue reports whether net/http accepts v as a header value:
// no control characters other than tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
