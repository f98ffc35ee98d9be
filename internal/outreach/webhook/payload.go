package webhook

import (
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/retention-dev/retention-operator/internal/outreach/channel"
)

// PayloadType is the "type" of every request body.
const PayloadType = "retention.message"

// Payload is the JSON body of every webhook request: the envelope that
// Standard Webhooks recommends (type, timestamp, data) around one rendered
// message to one customer.
//
//	{
//	  "type": "retention.message",
//	  "timestamp": "2025-03-01T09:30:00Z",
//	  "data": {
//	    "run": "6f0c…",                       // the run's UID
//	    "campaign": "shop/winback",           // "<namespace>/<name>"
//	    "variant": "b",                       // omitted without variants
//	    "customer": {
//	      "id": "c-1042",
//	      "email": "ana@example.com",         // omitted when unknown
//	      "locale": "pt-BR",                  // "" when unknown
//	      "timeZone": "America/Sao_Paulo",    // "" when unknown
//	      "fields": {"plan": "pro", "spend": 42.5}  // always an object
//	    },
//	    "message": {
//	      "subject": "We miss you",
//	      "text": "…",                        // never empty
//	      "html": "<p>…</p>"                  // omitted without an HTML body
//	    },
//	    "unsubscribeUrl": "https://…"         // omitted without one
//	  }
//	}
//
// "timestamp" is the same second as the webhook-timestamp header, in UTC.
// It is the time of this attempt, not of the first one: a retried message
// has the same webhook-id (and Idempotency-Key) but a newer timestamp, so
// receivers deduplicate on the id. "fields" holds the customer fields the
// campaign's templates use, as JSON values (numbers, strings, booleans;
// times as RFC 3339 strings). Receivers should ignore members they do not
// know: members may be added, never renamed or retyped.
type Payload struct {
	Type      string      `json:"type"`
	Timestamp time.Time   `json:"timestamp"`
	Data      PayloadData `json:"data"`
}

// PayloadData is the "data" member of a Payload.
type PayloadData struct {
	Run            string          `json:"run"`
	Campaign       string          `json:"campaign"`
	Variant        string          `json:"variant,omitempty"`
	Customer       PayloadCustomer `json:"customer"`
	Message        PayloadMessage  `json:"message"`
	UnsubscribeURL string          `json:"unsubscribeUrl,omitempty"`
}

// PayloadCustomer is the "customer" member of PayloadData.
type PayloadCustomer struct {
	ID       string         `json:"id"`
	Email    string         `json:"email,omitempty"`
	Locale   string         `json:"locale"`
	TimeZone string         `json:"timeZone"`
	Fields   map[string]any `json:"fields"`
}

// PayloadMessage is the "message" member of PayloadData.
type PayloadMessage struct {
	Subject string `json:"subject"`
	Text    string `json:"text"`
	HTML    string `json:"html,omitempty"`
}

// appendPayload appends the JSON of the Payload for m sent at the instant
// whose RFC 3339 form is stamp. It writes the same bytes as encoding/json
// with SetEscapeHTML(false) would for that Payload (the tests hold it to
// that), without the reflection and the intermediate struct, because this
// runs once per message on the hot path. fields encodes the Fields map,
// the one part left to encoding/json.
func appendPayload(b []byte, m *channel.Message, stamp string, fields func([]byte, map[string]any) ([]byte, error)) ([]byte, error) {
	b = append(b, `{"type":"`+PayloadType+`","timestamp":"`...)
	b = append(b, stamp...) // RFC 3339 needs no escaping
	b = append(b, `","data":{"run":`...)
	b = appendString(b, m.RunID)
	b = append(b, `,"campaign":`...)
	b = appendString(b, m.Campaign)
	if m.Variant != "" {
		b = append(b, `,"variant":`...)
		b = appendString(b, m.Variant)
	}
	b = append(b, `,"customer":{"id":`...)
	b = appendString(b, m.CustomerID)
	if m.Address != "" {
		b = append(b, `,"email":`...)
		b = appendString(b, m.Address)
	}
	b = append(b, `,"locale":`...)
	b = appendString(b, m.Locale)
	b = append(b, `,"timeZone":`...)
	b = appendString(b, m.TimeZone)
	b = append(b, `,"fields":`...)
	if len(m.Fields) == 0 {
		// Always an object, so receivers need not handle null.
		b = append(b, '{', '}')
	} else {
		var err error
		if b, err = fields(b, m.Fields); err != nil {
			return b, err
		}
	}
	b = append(b, `},"message":{"subject":`...)
	b = appendString(b, m.Subject)
	b = append(b, `,"text":`...)
	b = appendString(b, m.Text)
	if m.HTML != "" {
		b = append(b, `,"html":`...)
		b = appendString(b, m.HTML)
	}
	b = append(b, '}')
	if m.UnsubscribeURL != "" {
		b = append(b, `,"unsubscribeUrl":`...)
		b = appendString(b, m.UnsubscribeURL)
	}
	return append(b, '}', '}'), nil
}

// byteBuf lets a json.Encoder append to a reused slice.
type byteBuf []byte

func (b *byteBuf) Write(p []byte) (int, error) {
	*b = append(*b, p...)
	return len(p), nil
}

// fieldsEncoder encodes Fields maps with one json.Encoder per pooled
// request, so the encoder itself is not allocated per message.
type fieldsEncoder struct {
	buf byteBuf
	enc *json.Encoder
}

func newFieldsEncoder() *fieldsEncoder {
	e := &fieldsEncoder{}
	e.enc = json.NewEncoder(&e.buf)
	// HTML escaping would only make the bytes differ from appendString's
	// for the same string; the body is never embedded in HTML.
	e.enc.SetEscapeHTML(false)
	return e
}

func (e *fieldsEncoder) append(b []byte, fields map[string]any) ([]byte, error) {
	e.buf = e.buf[:0]
	if err := e.enc.Encode(fields); err != nil {
		return b, err
	}
	// Encode ends every value with a newline; the body has none.
	return append(b, e.buf[:len(e.buf)-1]...), nil
}

const hexDigits = "0123456789abcdef"

// jsonSafe[c] is true for the ASCII bytes that appear unescaped in a JSON
// string as encoding/json writes it without HTML escaping.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendString appends s as a JSON string exactly as encoding/json does
// with SetEscapeHTML(false): short escapes for \b \f \n \r \t, \u00XX for
// other control bytes, U+FFFD for invalid UTF-8, and \u2028 \u2029
// escaped (they break JavaScript that evaluates JSON).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
