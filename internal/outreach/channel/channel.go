// Package channel is what every outreach channel (webhook, SMTP, Slack)
// implements: send one rendered message and say, without personal data,
// whether it was delivered, should be retried, or failed for good.
//
// Delivery semantics, the same on every channel: at-least-once to the
// channel with an idempotency key "<run-uid>/<customer-id>" on every
// message, so a receiver that honours the key sees each message once.
// Senders never retry on their own; the runner turns a Retry into a
// not-before time in the store, so no claimed batch waits on a sleep.
package channel

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Message is one rendered message to one customer.
type Message struct {
	// Key is the idempotency key (see Key); every channel carries it.
	Key string
	// RunID is the run's UID.
	RunID string
	// Campaign is the campaign as "<namespace>/<name>".
	Campaign string
	// Variant is the message variant's name, "" without variants.
	Variant string
	// CustomerID is the customer's id in the source data.
	CustomerID string
	// Address is where the message goes: an email address for SMTP; for
	// webhooks the customer's email, possibly empty.
	Address string
	// Locale and TimeZone are the customer's, possibly empty.
	Locale   string
	TimeZone string
	// Fields are the customer fields the message templates use (JSON
	// values: numbers are float64, times RFC 3339 strings).
	Fields map[string]any
	// Subject, Text and HTML are the rendered message. Text is never
	// empty; HTML is empty unless the campaign has an HTML body.
	Subject string
	Text    string
	HTML    string
	// UnsubscribeURL is the one-click unsubscribe URL (https, RFC 8058),
	// empty when the operator has no public unsubscribe endpoint.
	UnsubscribeURL string
}

// Key returns the idempotency key of a customer's message in a run. The
// customer id is path-escaped, so any id gives a key that is a valid HTTP
// header value and email Message-ID local part.
func Key(runID, customerID string) string {
	return runID + "/" + url.PathEscape(customerID)
}

// Outcome is what became of one send.
type Outcome uint8

const (
	// Sent: the receiver accepted the message.
	Sent Outcome = iota
	// Retry: a transient failure (HTTP 429 or 5xx, SMTP 4xx, a connection
	// error or timeout); the runner tries again later.
	Retry
	// Fail: a permanent failure (another HTTP 4xx, SMTP 5xx, a message the
	// channel cannot carry); the runner does not try again.
	Fail
)

// String returns "sent", "retry" or "fail".
func (o Outcome) String() string {
	switch o {
	case Sent:
		return "sent"
	case Retry:
		return "retry"
	default:
		return "fail"
	}
}

// Result is the outcome of one send.
type Result struct {
	Outcome Outcome
	// Reason is short and carries no personal data, no address and no
	// body: "http 400", "http 503", "smtp 550 5.1.1", "timeout",
	// "connection reset". Empty when sent.
	Reason string
	// RetryAfter is how long the receiver asked to wait (HTTP Retry-After,
	// seconds or a date), zero when it did not say.
	RetryAfter time.Duration
}

// Sender sends messages on one channel. Send is safe for concurrent use
// by up to Concurrency goroutines and never retries by itself; it returns
// when the receiver has answered, the channel's timeout has passed, or ctx
// is done.
type Sender interface {
	// Send delivers one message.
	Send(ctx context.Context, m *Message) Result
	// Concurrency is how many sends at once this sender is built for
	// (its connection pool size).
	Concurrency() int
	// Close releases connections.
	Close() error
}

// MaxRetryAfter caps the wait a receiver's Retry-After can ask for, so a
// receiver cannot park a target for days.
const MaxRetryAfter = time.Hour

// RetryAfter reads an HTTP Retry-After value, delay-seconds or an
// HTTP-date (RFC 9110 section 10.2.3), as a wait from now capped at
// MaxRetryAfter. A missing, malformed or past value is zero.
func RetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if v[0] >= '0' && v[0] <= '9' {
		secs, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			// Overflow is a very long wait; anything else is garbage.
			if errors.Is(err, strconv.ErrRange) {
				return MaxRetryAfter
			}
			return 0
		}
		// Compare before multiplying so a huge value cannot overflow.
		if secs >= uint64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		return time.Duration(secs) * time.Second
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	d := at.Sub(now)
	if d <= 0 {
		return 0
	}
	return min(d, MaxRetryAfter)
}
