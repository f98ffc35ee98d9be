package webhook

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/outreach/channel"
)

// jsonString is what encoding/json writes for s without HTML escaping.
func jsonString(t testing.TB, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

var stringCases = []string{
	"",
	"plain ascii",
	`quote " and backslash \`,
	"controls \x00\x01\x07\b\f\n\r\t\x1f\x7f",
	"html <b>&amp;</b> stays",
	"سارا — Persian, emoji 🎉, CJK 漢字",
	"line\u2028and paragraph\u2029separators",
	"invalid \xff utf-8 \xc3 and truncated \xe2\x82",
	"surrogate half \xed\xa0\x80",
	strings.Repeat("long/ish ", 200),
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range stringCases {
		got := appendString(nil, s)
		if want := jsonString(t, s); !bytes.Equal(got, want) {
			t.Errorf("appendString(%q) = %s, encoding/json writes %s", s, got, want)
		}
		// And it round-trips to what encoding/json round-trips to (the
		// string itself when it is valid UTF-8).
		var back, wantBack string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("appendString(%q) = %s: not JSON: %v", s, got, err)
		}
		_ = json.Unmarshal(jsonString(t, s), &wantBack)
		if back != wantBack {
			t.Errorf("appendString(%q) decodes to %q, want %q", s, back, wantBack)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range stringCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := appendString(nil, s), jsonString(t, s); !bytes.Equal(got, want) {
			t.Errorf("appendString(%q) = %s, encoding/json writes %s", s, got, want)
		}
	})
}

// payloadOf is the Payload that appendPayload encodes, built the slow way.
func payloadOf(m *channel.Message, at time.Time) Payload {
	fields := m.Fields
	if fields == nil {
		fields = map[string]any{}
	}
	return Payload{
		Type:      PayloadType,
		Timestamp: time.Unix(at.Unix(), 0).UTC(),
		Data: PayloadData{
			Run:      m.RunID,
			Campaign: m.Campaign,
			Variant:  m.Variant,
			Customer: PayloadCustomer{
				ID:       m.CustomerID,
				Email:    m.Address,
				Locale:   m.Locale,
				TimeZone: m.TimeZone,
				Fields:   fields,
			},
			Message: PayloadMessage{
				Subject: m.Subject,
				Text:    m.Text,
				HTML:    m.HTML,
			},
			UnsubscribeURL: m.UnsubscribeURL,
		},
	}
}

func fullMessage() *channel.Message {
	id := "ana maria/سارا\n#1"
	return &channel.Message{
		Key:        channel.Key("run-uid-1", id),
		RunID:      "run-uid-1",
		Campaign:   "shop/winback",
		Variant:    "b",
		CustomerID: id,
		Address:    "ana@example.com",
		Locale:     "fa-IR",
		TimeZone:   "Asia/Tehran",
		Fields: map[string]any{
			"plan":    "pro <gold>",
			"spend":   42.5,
			"orders":  float64(3),
			"vip":     true,
			"since":   "2024-02-29T12:00:00Z",
			"tags":    []any{"a", "b"},
			"address": map[string]any{"city": "Tehran"},
			"note":    nil,
		},
		Subject:        "We miss you, \"Ana\"",
		Text:           "Come back!\nLine two\t\u2028",
		HTML:           "<p>Come back &amp; save</p>",
		UnsubscribeURL: "https://shop.example/u?t=abc&x=1",
	}
}

func TestAppendPayloadMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2025, 3, 1, 13, 0, 0, 123456789, time.FixedZone("IRST", 12600))
	minimal := &channel.Message{Key: "r/c", RunID: "r", Campaign: "ns/c", CustomerID: "c", Text: "hi"}
	full := fullMessage()
	noFields := fullMessage()
	noFields.Fields = map[string]any{}
	for name, m := range map[string]*channel.Message{"minimal": minimal, "full": full, "empty fields": noFields} {
		t.Run(name, func(t *testing.T) {
			s := &Sender{}
			got, err := appendPayload(nil, m, s.stampAt(at).rfc3339, newFieldsEncoder().append)
			if err != nil {
				t.Fatal(err)
			}
			var want bytes.Buffer
			enc := json.NewEncoder(&want)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(payloadOf(m, at)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, bytes.TrimSuffix(want.Bytes(), []byte("\n"))) {
				t.Errorf("appendPayload:\n got %s\nwant %s", got, want.Bytes())
			}
			var back Payload
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatal(err)
			}
			if wantP := payloadOf(m, at); !reflect.DeepEqual(back, wantP) {
				t.Errorf("decoded %+v, want %+v", back, wantP)
			}
		})
	}
}

func TestAppendPayloadOmitsEmptyOptionals(t *testing.T) {
	m := &channel.Message{Key: "r/c", RunID: "r", Campaign: "ns/c", CustomerID: "c", Text: "hi"}
	got, err := appendPayload(nil, m, "2025-01-01T00:00:00Z", newFieldsEncoder().append)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(got, &raw); err != nil {
		t.Fatal(err)
	}
	data := raw["data"].(map[string]any)
	customer := data["customer"].(map[string]any)
	message := data["message"].(map[string]any)
	for _, c := range []struct {
		obj  map[string]any
		name string
		want bool
	}{
		{data, "variant", false},
		{data, "unsubscribeUrl", false},
		{customer, "email", false},
		{message, "html", false},
		{customer, "locale", true},
		{customer, "timeZone", true},
		{customer, "fields", true},
	} {
		if _, ok := c.obj[c.name]; ok != c.want {
			t.Errorf("member %q present = %v, want %v in %s", c.name, ok, c.want, got)
		}
	}
	if f, ok := customer["fields"].(map[string]any); !ok || len(f) != 0 {
		t.Errorf(`"fields" = %#v, want {}`, customer["fields"])
	}
}

func TestAppendPayloadUnencodableFields(t *testing.T) {
	m := &channel.Message{Key: "r/c", Text: "hi", Fields: map[string]any{"x": math.NaN()}}
	if _, err := appendPayload(nil, m, "2025-01-01T00:00:00Z", newFieldsEncoder().append); err == nil {
		t.Fatal("NaN field encoded without error")
	}
}
