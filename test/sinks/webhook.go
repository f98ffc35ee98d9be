// Package sinks holds the message receivers that the end-to-end test and
// the demo point the operator at to check what it delivered: a Standard
// Webhooks endpoint (Webhook) and an SMTP server (SMTP). Both record every
// attempt and count unique messages by idempotency key, so a test can
// assert exactly-once delivery across retries and restarts.
//
// The package deliberately does not import the operator's code: it parses
// the wire formats (the webhook JSON payload, RFC 5322 mail) itself, so a
// change to the operator that breaks the wire contract fails the tests
// instead of being mirrored by them.
package sinks

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// maxBody bounds a request body; operator payloads are a few KiB, so
// anything near this is a bug worth a 413, not an allocation.
const maxBody = 4 << 20

// WebhookMessage is one request the Webhook received, as the operator
// sent it: the Standard Webhooks headers and the fields of the
// "retention.message" JSON payload that tests check.
type WebhookMessage struct {
	// Key is the webhook-id header: the same on every retry of a message.
	Key string `json:"key"`
	// IdempotencyKey is the Idempotency-Key header.
	IdempotencyKey string `json:"idempotencyKey"`
	Run            string `json:"run"`
	Campaign       string `json:"campaign"`
	Variant        string `json:"variant"`
	CustomerID     string `json:"customerId"`
	Email          string `json:"email"`
	Subject        string `json:"subject"`
	Text           string `json:"text"`
	UnsubscribeURL string `json:"unsubscribeUrl"`
	// SignatureValid is false when a signing key is configured and no key
	// verifies the request; it is true for every request without a key.
	SignatureValid bool `json:"signatureValid"`
	// Status is the HTTP status the sink answered.
	Status   int       `json:"status"`
	Received time.Time `json:"received"`
}

// delivered reports whether the operator may consider m delivered: it was
// authentic and the sink said so.
func (m *WebhookMessage) delivered() bool {
	return m.SignatureValid && m.Status >= 200 && m.Status < 300
}

// WebhookStats summarizes what a Webhook received. Its JSON shape is read
// by hack/demo.sh, so the tags must not change.
type WebhookStats struct {
	// Received counts requests with a valid signature (or all requests
	// without a key), every attempt including duplicates and failures.
	Received int `json:"received"`
	// Unique counts distinct Keys among messages delivered: validly
	// signed and answered 2xx.
	Unique int `json:"unique"`
	// BadSignatures counts requests answered 401.
	BadSignatures int `json:"badSignatures"`
	// ByVariant splits Unique by variant ("" without variants).
	ByVariant map[string]int `json:"byVariant"`
}

// payload is the part of the operator's JSON body that the sink reads;
// unknown members are ignored, as the payload contract asks of receivers.
type payload struct {
	Data struct {
		Run      string `json:"run"`
		Campaign string `json:"campaign"`
		Variant  string `json:"variant"`
		Customer struct {
			ID    string `json:"id"`
			Email string `json:"email"`
		} `json:"customer"`
		Message struct {
			Subject string `json:"subject"`
			Text    string `json:"text"`
		} `json:"message"`
		UnsubscribeURL string `json:"unsubscribeUrl"`
	} `json:"data"`
}

// Webhook is an http.Handler that receives the operator's webhook
// requests: POST to any path records a message, GET /stats answers
// Stats and GET /messages answers Messages, both as JSON. It is safe for
// concurrent use.
type Webhook struct {
	// Respond, if set, picks the status answered to each validly signed,
	// well-formed request, so a test can make deliveries fail (say 500 for
	// a first attempt) and watch the operator retry. 0 means 204. It is
	// called concurrently, must not modify the message, and must be set
	// before the first request.
	Respond func(*WebhookMessage) int

	verifiers []*standardwebhooks.Webhook

	mu   sync.Mutex
	msgs []WebhookMessage
}

// NewWebhook returns a Webhook that verifies requests with signingKey, a
// Standard Webhooks key "whsec_<base64>". Several whitespace-separated
// keys are accepted, any of which may verify, so a test can rotate the
// operator's key without losing messages; "" accepts unsigned requests.
func NewWebhook(signingKey string) (*Webhook, error) {
	w := &Webhook{}
	for _, k := range strings.Fields(signingKey) {
		v, err := standardwebhooks.NewWebhook(k)
		if err != nil {
			return nil, fmt.Errorf("signing key %d: %w", len(w.verifiers)+1, err)
		}
		w.verifiers = append(w.verifiers, v)
	}
	return w, nil
}

// ServeHTTP implements http.Handler.
func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/stats":
		writeJSON(rw, w.Stats())
	case r.Method == http.MethodGet && r.URL.Path == "/messages":
		writeJSON(rw, w.Messages())
	case r.Method == http.MethodPost:
		w.receive(rw, r)
	default:
		http.Error(rw, "POST a message, or GET /stats or /messages", http.StatusMethodNotAllowed)
	}
}

// receive records one request and answers it.
func (w *Webhook) receive(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, maxBody))
	if err != nil {
		status := http.StatusBadRequest
		if errors.As(err, new(*http.MaxBytesError)) {
			status = http.StatusRequestEntityTooLarge
		}
		http.Error(rw, fmt.Sprintf("reading body: %v", err), status)
		return
	}
	m := WebhookMessage{
		Key:            r.Header.Get(standardwebhooks.HeaderWebhookID),
		IdempotencyKey: r.Header.Get("Idempotency-Key"),
		SignatureValid: w.verify(body, r.Header),
		Received:       time.Now(),
	}
	var p payload
	parseErr := json.Unmarshal(body, &p)
	d := p.Data
	m.Run, m.Campaign, m.Variant = d.Run, d.Campaign, d.Variant
	m.CustomerID, m.Email = d.Customer.ID, d.Customer.Email
	m.Subject, m.Text, m.UnsubscribeURL = d.Message.Subject, d.Message.Text, d.UnsubscribeURL
	switch {
	case !m.SignatureValid:
		m.Status = http.StatusUnauthorized
	case parseErr != nil:
		// A body the sink cannot read would be a broken wire contract;
		// recording it as failed keeps it out of Unique and visible.
		m.Status = http.StatusBadRequest
	case w.Respond != nil:
		m.Status = w.Respond(&m)
	}
	if m.Status == 0 {
		m.Status = http.StatusNoContent
	}
	w.mu.Lock()
	w.msgs = append(w.msgs, m)
	w.mu.Unlock()
	rw.WriteHeader(m.Status)
}

// verify reports whether any configured key verifies the request, or
// true when there is none.
func (w *Webhook) verify(body []byte, h http.Header) bool {
	for _, v := range w.verifiers {
		if v.Verify(body, h) == nil {
			return true
		}
	}
	return len(w.verifiers) == 0
}

// Messages returns a copy of every request received, in arrival order,
// including duplicates, failures and bad signatures.
func (w *Webhook) Messages() []WebhookMessage {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append(make([]WebhookMessage, 0, len(w.msgs)), w.msgs...)
}

// Stats counts the messages received so far.
func (w *Webhook) Stats() WebhookStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := WebhookStats{ByVariant: map[string]int{}}
	seen := map[string]bool{}
	for i := range w.msgs {
		m := &w.msgs[i]
		if !m.SignatureValid {
			s.BadSignatures++
			continue
		}
		s.Received++
		if m.delivered() && !seen[m.Key] {
			seen[m.Key] = true
			s.Unique++
			s.ByVariant[m.Variant]++
		}
	}
	return s
}

// writeJSON answers v as JSON; an encoding error can only be a write
// error, which the client already sees as a broken response.
func writeJSON(rw http.ResponseWriter, v any) {
	rw.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(rw).Encode(v)
}
