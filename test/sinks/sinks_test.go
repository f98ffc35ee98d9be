package sinks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/smtp"
	"reflect"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

const (
	keyA = "whsec_c2lua3MtdGVzdC1rZXktQQ==" // "sinks-test-key-A"
	keyB = "whsec_c2lua3MtdGVzdC1rZXktQg==" // "sinks-test-key-B"
)

// body is a payload as the operator sends it, with members the sink
// ignores (locale, fields, html) to check it tolerates them.
func body(variant string) []byte {
	return fmt.Appendf(nil, `{"type":"retention.message","timestamp":"2025-03-01T09:30:00Z","data":{`+
		`"run":"run-1","campaign":"shop/winback","variant":%q,`+
		`"customer":{"id":"c-1042","email":"ana@example.com","locale":"pt-BR","timeZone":"","fields":{"plan":"pro"}},`+
		`"message":{"subject":"We miss you","text":"Come back","html":"<p>Come back</p>"},`+
		`"unsubscribeUrl":"https://x.example/u/abc"}}`, variant)
}

// request is one POST to the sink: signed with signKey ("" for unsigned)
// under webhook-id id.
type request struct {
	signKey, id string
	body        []byte
}

// send POSTs r to url as the operator would and returns the status.
func send(t *testing.T, url string, r request) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/hook", bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "idem-"+r.id)
	if r.signKey != "" {
		signer, err := standardwebhooks.NewWebhook(r.signKey)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		sig, err := signer.Sign(r.id, now, r.body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(standardwebhooks.HeaderWebhookID, r.id)
		req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, fmt.Sprint(now.Unix()))
		req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// getJSON decodes the JSON answer to GET url into v.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func TestWebhook(t *testing.T) {
	for _, tc := range []struct {
		name       string
		sinkKey    string
		respond    func(*WebhookMessage) int
		reqs       []request
		wantStatus []int
		wantValid  []bool
		want       WebhookStats
	}{{
		name:       "signed",
		sinkKey:    keyA,
		reqs:       []request{{keyA, "m1", body("a")}},
		wantStatus: []int{204},
		wantValid:  []bool{true},
		want:       WebhookStats{Received: 1, Unique: 1, ByVariant: map[string]int{"a": 1}},
	}, {
		name:       "wrong key",
		sinkKey:    keyA,
		reqs:       []request{{keyB, "m1", body("a")}, {"", "m2", body("a")}},
		wantStatus: []int{401, 401},
		wantValid:  []bool{false, false},
		want:       WebhookStats{BadSignatures: 2, ByVariant: map[string]int{}},
	}, {
		name:       "rotation accepts either key",
		sinkKey:    keyA + " " + keyB,
		reqs:       []request{{keyA, "m1", body("a")}, {keyB, "m2", body("b")}},
		wantStatus: []int{204, 204},
		wantValid:  []bool{true, true},
		want:       WebhookStats{Received: 2, Unique: 2, ByVariant: map[string]int{"a": 1, "b": 1}},
	}, {
		name:       "no key accepts unsigned",
		reqs:       []request{{"", "m1", body("")}},
		wantStatus: []int{204},
		wantValid:  []bool{true},
		want:       WebhookStats{Received: 1, Unique: 1, ByVariant: map[string]int{"": 1}},
	}, {
		name:       "duplicate counts once",
		sinkKey:    keyA,
		reqs:       []request{{keyA, "m1", body("a")}, {keyA, "m1", body("a")}, {keyA, "m2", body("a")}},
		wantStatus: []int{204, 204, 204},
		wantValid:  []bool{true, true, true},
		want:       WebhookStats{Received: 3, Unique: 2, ByVariant: map[string]int{"a": 2}},
	}, {
		name:    "failed attempt is not delivered",
		sinkKey: keyA,
		respond: func(m *WebhookMessage) int {
			if m.Key == "fail" {
				return http.StatusInternalServerError
			}
			return 0
		},
		reqs:       []request{{keyA, "fail", body("a")}, {keyA, "ok", body("b")}},
		wantStatus: []int{500, 204},
		wantValid:  []bool{true, true},
		want:       WebhookStats{Received: 2, Unique: 1, ByVariant: map[string]int{"b": 1}},
	}, {
		name:       "malformed body",
		sinkKey:    keyA,
		reqs:       []request{{keyA, "m1", []byte(`{"data":`)}},
		wantStatus: []int{400},
		wantValid:  []bool{true},
		want:       WebhookStats{Received: 1, ByVariant: map[string]int{}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			hook, err := NewWebhook(tc.sinkKey)
			if err != nil {
				t.Fatal(err)
			}
			hook.Respond = tc.respond
			srv := httptest.NewServer(hook)
			defer srv.Close()
			for i, r := range tc.reqs {
				if got := send(t, srv.URL, r); got != tc.wantStatus[i] {
					t.Errorf("request %d: status %d, want %d", i, got, tc.wantStatus[i])
				}
			}
			msgs := hook.Messages()
			if len(msgs) != len(tc.reqs) {
				t.Fatalf("%d messages, want %d", len(msgs), len(tc.reqs))
			}
			for i, m := range msgs {
				if m.SignatureValid != tc.wantValid[i] || m.Status != tc.wantStatus[i] {
					t.Errorf("message %d: valid %v status %d, want %v %d", i, m.SignatureValid, m.Status, tc.wantValid[i], tc.wantStatus[i])
				}
			}
			if got := hook.Stats(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Stats() = %+v, want %+v", got, tc.want)
			}
			var served WebhookStats
			getJSON(t, srv.URL+"/stats", &served)
			if !reflect.DeepEqual(served, tc.want) {
				t.Errorf("GET /stats = %+v, want %+v", served, tc.want)
			}
		})
	}
}

func TestWebhookFields(t *testing.T) {
	hook, err := NewWebhook(keyA)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	before := time.Now()
	send(t, srv.URL, request{keyA, "msg_1", body("b")})

	var served []WebhookMessage
	getJSON(t, srv.URL+"/messages", &served)
	msgs := hook.Messages()
	if len(msgs) != 1 || len(served) != 1 {
		t.Fatalf("Messages() has %d, GET /messages %d, want 1 each", len(msgs), len(served))
	}
	got := msgs[0]
	if got.Received.Before(before) || time.Since(got.Received) > time.Minute {
		t.Errorf("Received = %v, want about %v", got.Received, before)
	}
	if !served[0].Received.Equal(got.Received) {
		t.Errorf("GET /messages Received = %v, want %v", served[0].Received, got.Received)
	}
	want := WebhookMessage{Key: "msg_1", IdempotencyKey: "idem-msg_1", Run: "run-1", Campaign: "shop/winback",
		Variant: "b", CustomerID: "c-1042", Email: "ana@example.com", Subject: "We miss you", Text: "Come back",
		UnsubscribeURL: "https://x.example/u/abc", SignatureValid: true, Status: 204}
	got.Received, served[0].Received = time.Time{}, time.Time{}
	if got != want {
		t.Errorf("Messages()[0] = %+v\nwant %+v", got, want)
	}
	if served[0] != want {
		t.Errorf("GET /messages [0] = %+v\nwant %+v", served[0], want)
	}
}

func TestNewWebhookBadKey(t *testing.T) {
	if _, err := NewWebhook("whsec_%%%"); err == nil {
		t.Error("NewWebhook accepted a key that is not base64")
	}
}

// mailMsg is a message as the operator's SMTP channel writes it, with an
// RFC 2047 subject.
func mailMsg(key string) []byte {
	return []byte(strings.ReplaceAll(`From: Shop <hello@shop.test>
To: ana@example.com, bo@example.com
Subject: =?utf-8?q?Sentimos_sua_falta=2C_Ana_=E2=9C=93?=
Message-ID: <`+key+`@shop.test>
X-Retention-Idempotency-Key: `+key+`
List-Unsubscribe: <https://x.example/u/abc>, <mailto:u@x.example>
List-Unsubscribe-Post: List-Unsubscribe=One-Click
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Come back.
`, "\n", "\r\n"))
}

func TestSMTP(t *testing.T) {
	sink, err := StartSMTP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := sink.Close(); err != nil {
			t.Error(err)
		}
	}()
	if want := fmt.Sprintf("%s:%d", sink.Host(), sink.Port()); sink.Addr() != want || sink.Host() != "127.0.0.1" {
		t.Errorf("Addr() = %q, Host() = %q, want %q on 127.0.0.1", sink.Addr(), sink.Host(), want)
	}
	rcpts := []string{"ana@example.com", "bo@example.com"}
	for _, tc := range []struct {
		name  string
		key   string
		want  SMTPStats
		mails int
	}{
		{"first", "k-1", SMTPStats{Received: 2, Unique: 1}, 2},
		{"resend", "k-1", SMTPStats{Received: 4, Unique: 1}, 4},
		{"another", "k-2", SMTPStats{Received: 6, Unique: 2}, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := mailMsg(tc.key)
			if err := smtp.SendMail(sink.Addr(), nil, "bounce@shop.test", rcpts, raw); err != nil {
				t.Fatalf("SendMail: %v", err)
			}
			mails := sink.Messages()
			if len(mails) != tc.mails {
				t.Fatalf("%d mails, want %d", len(mails), tc.mails)
			}
			for i, m := range mails[tc.mails-2:] {
				if m.From != "bounce@shop.test" || m.To != rcpts[i] {
					t.Errorf("envelope %q -> %q, want bounce@shop.test -> %q", m.From, m.To, rcpts[i])
				}
				if m.IdempotencyKey != tc.key || m.MessageID != "<"+tc.key+"@shop.test>" {
					t.Errorf("key %q, Message-ID %q, want %q", m.IdempotencyKey, m.MessageID, tc.key)
				}
				if want := "Sentimos sua falta, Ana ✓"; m.Subject != want {
					t.Errorf("Subject = %q, want %q", m.Subject, want)
				}
				if want := "https://x.example/u/abc"; m.ListUnsubscribe != want {
					t.Errorf("ListUnsubscribe = %q, want %q", m.ListUnsubscribe, want)
				}
				if got := m.Header.Get("List-Unsubscribe-Post"); got != "List-Unsubscribe=One-Click" {
					t.Errorf("List-Unsubscribe-Post = %q", got)
				}
				if !bytes.Contains(m.Raw, []byte("Come back.")) || m.Received.IsZero() {
					t.Errorf("Raw %q, Received %v: want the body and a time", m.Raw, m.Received)
				}
			}
			if got := sink.Stats(); got != tc.want {
				t.Errorf("Stats() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestFirstHTTPURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"<https://x.example/u/abc>, <mailto:u@x.example>", "https://x.example/u/abc"},
		{"<mailto:u@x.example>, <HTTP://x.example/u>", "HTTP://x.example/u"},
		{"<mailto:u@x.example>", ""},
		{"https://x.example/not-bracketed", ""},
		{"", ""},
	} {
		if got := firstHTTPURL(tc.in); got != tc.want {
			t.Errorf("firstHTTPURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
