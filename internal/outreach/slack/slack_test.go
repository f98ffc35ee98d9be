package slack

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/retention-dev/retention-operator/internal/outreach/channel"
)

// secretPath stands for the credential part of a webhook URL: no error or
// reason may contain it.
const secretPath = "/services/T0001/B0001/s3cr3tW3bh00kT0k3n"

func message() *channel.Message {
	return &channel.Message{
		Key:        channel.Key("run-1", "c/42"),
		RunID:      "run-1",
		Campaign:   "shop/winback",
		Variant:    "b",
		CustomerID: "c/42",
		Subject:    "We miss you",
		Text:       "Come back for 10% off",
	}
}

func newSender(t *testing.T, url string, cfg Config) *Sender {
	t.Helper()
	cfg.WebhookURL = url + secretPath
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func checkNoSecret(t *testing.T, what, s string) {
	t.Helper()
	if strings.Contains(s, "s3cr3t") || strings.Contains(s, "/services/") {
		t.Errorf("%s %q leaks the webhook URL", what, s)
	}
}

func utf16Len(s string) int { return len(utf16.Encode([]rune(s))) }

type received struct {
	header http.Header
	body   []byte
}

// decoded is the part of the payload the tests read.
type decoded struct {
	Text   string `json:"text"`
	Blocks []struct {
		Type string `json:"type"`
		Text *struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"text"`
		Elements []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"elements"`
	} `json:"blocks"`
}

// blockText returns the text of the first block of a type, and whether
// there is one.
func (d *decoded) blockText(typ string) (kind, text string, ok bool) {
	for _, b := range d.Blocks {
		if b.Type != typ {
			continue
		}
		switch {
		case b.Text != nil:
			return b.Text.Type, b.Text.Text, true
		case len(b.Elements) > 0:
			return b.Elements[0].Type, b.Elements[0].Text, true
		}
		return "", "", true
	}
	return "", "", false
}

func TestPayload(t *testing.T) {
	t.Parallel()
	persian := "سلام مریم، دلمان برایت تنگ شده! ۱۰٪ تخفیف برای بازگشت 🌷"
	longPersian := strings.Repeat("ی", 200)
	for _, tc := range []struct {
		name string
		edit func(m *channel.Message)
		// want* are exact expectations; "" skips the check.
		wantFallback, wantHeader, wantSection, wantContext string
		noHeader, noContext                                bool
		check                                              func(t *testing.T, d *decoded)
	}{{
		name:         "plain",
		edit:         func(*channel.Message) {},
		wantFallback: "We miss you\nCome back for 10% off",
		wantHeader:   "We miss you",
		wantSection:  "Come back for 10% off",
		wantContext:  "Campaign: shop/winback · Variant: b",
	}, {
		name: "escaping",
		edit: func(m *channel.Message) {
			m.Subject = "Tom & Jerry <3"
			m.Text = "a & b <!channel> <https://evil.example|click> > c &amp;"
			m.Campaign = "ns/<x>"
			m.Variant = "a&b"
		},
		wantFallback: "Tom &amp; Jerry &lt;3\na &amp; b &lt;!channel&gt; &lt;https://evil.example|click&gt; &gt; c &amp;amp;",
		// plain_text is shown as is: no escaping.
		wantHeader:  "Tom & Jerry <3",
		wantSection: "a &amp; b &lt;!channel&gt; &lt;https://evil.example|click&gt; &gt; c &amp;amp;",
		wantContext: "Campaign: ns/&lt;x&gt; · Variant: a&amp;b",
	}, {
		name: "persian",
		edit: func(m *channel.Message) {
			m.Subject = "بازگشت"
			m.Text = persian
		},
		wantFallback: "بازگشت\n" + persian,
		wantHeader:   "بازگشت",
		wantSection:  persian,
	}, {
		name: "no subject, no variant",
		edit: func(m *channel.Message) {
			m.Subject = ""
			m.Variant = ""
		},
		wantFallback: "Come back for 10% off",
		noHeader:     true,
		wantSection:  "Come back for 10% off",
		wantContext:  "Campaign: shop/winback",
	}, {
		name: "no campaign, no variant",
		edit: func(m *channel.Message) {
			m.Campaign = ""
			m.Variant = ""
		},
		noContext: true,
	}, {
		name: "header line breaks",
		edit: func(m *channel.Message) {
			m.Subject = "one\ntwo\r\nthree"
		},
		wantHeader: "one two  three",
	}, {
		name: "long text truncated",
		edit: func(m *channel.Message) {
			m.Subject = longPersian
			m.Text = strings.Repeat("x", 5000)
		},
		wantHeader:  strings.Repeat("ی", 149) + "…",
		wantSection: strings.Repeat("x", 2999) + "…",
		check: func(t *testing.T, d *decoded) {
			if n := utf16Len(d.Text); n != maxFallbackLen {
				t.Errorf("fallback length %d, want %d", n, maxFallbackLen)
			}
		},
	}, {
		name: "truncation keeps escapes whole",
		edit: func(m *channel.Message) {
			m.Text = "ab" + strings.Repeat("&", 1000)
		},
		check: func(t *testing.T, d *decoded) {
			_, text, _ := d.blockText("section")
			if n := utf16Len(text); n > maxSectionLen {
				t.Fatalf("section length %d > %d", n, maxSectionLen)
			}
			body, ok := strings.CutSuffix(text, "…")
			if !ok {
				t.Fatalf("truncated section does not end in an ellipsis: ...%q", text[len(text)-10:])
			}
			rest := strings.ReplaceAll(strings.TrimPrefix(body, "ab"), "&amp;", "")
			if rest != "" {
				t.Errorf("section has a broken escape: %q left after removing &amp;", rest)
			}
			// 2 + 5*599 = 2997 fits with the ellipsis; one more does not.
			if n := strings.Count(body, "&amp;"); n != 599 {
				t.Errorf("%d escapes kept, want 599", n)
			}
		},
	}, {
		name: "astral characters counted as two",
		edit: func(m *channel.Message) {
			m.Subject = strings.Repeat("🌷", 100)
		},
		check: func(t *testing.T, d *decoded) {
			_, header, _ := d.blockText("header")
			if n := utf16Len(header); n > maxHeaderLen {
				t.Errorf("header length %d > %d", n, maxHeaderLen)
			}
			if want := strings.Repeat("🌷", 74) + "…"; header != want {
				t.Errorf("header %q, want %q", header, want)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := make(chan received, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				got <- received{header: r.Header.Clone(), body: body}
				_, _ = io.WriteString(w, "ok")
			}))
			defer srv.Close()
			s := newSender(t, srv.URL, Config{})
			m := message()
			tc.edit(m)
			if res := s.Send(context.Background(), m); res.Outcome != channel.Sent {
				t.Fatalf("Send = %+v, want sent", res)
			}
			rec := <-got
			if ct := rec.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			if key := rec.header.Get(IdempotencyKeyHeader); key != m.Key {
				t.Errorf("idempotency key %q, want %q", key, m.Key)
			}
			var d decoded
			if err := json.Unmarshal(rec.body, &d); err != nil {
				t.Fatalf("payload is not JSON: %v\n%s", err, rec.body)
			}
			if tc.wantFallback != "" && d.Text != tc.wantFallback {
				t.Errorf("fallback text %q, want %q", d.Text, tc.wantFallback)
			}
			kind, header, ok := d.blockText("header")
			switch {
			case tc.noHeader && ok:
				t.Errorf("header block %q, want none", header)
			case !tc.noHeader && (!ok || kind != "plain_text"):
				t.Errorf("header block %v of type %q, want plain_text", ok, kind)
			case tc.wantHeader != "" && header != tc.wantHeader:
				t.Errorf("header %q, want %q", header, tc.wantHeader)
			}
			kind, section, ok := d.blockText("section")
			if !ok || kind != "mrkdwn" {
				t.Errorf("section block %v of type %q, want mrkdwn", ok, kind)
			}
			if tc.wantSection != "" && section != tc.wantSection {
				t.Errorf("section %q, want %q", section, tc.wantSection)
			}
			_, context, ok := d.blockText("context")
			switch {
			case tc.noContext && ok:
				t.Errorf("context block %q, want none", context)
			case !tc.noContext && !ok:
				t.Error("no context block")
			case tc.wantContext != "" && context != tc.wantContext:
				t.Errorf("context %q, want %q", context, tc.wantContext)
			}
			if tc.check != nil {
				tc.check(t, &d)
			}
		})
	}
}

func TestStatuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status     int
		body       string
		header     map[string]string
		want       channel.Outcome
		wantReason string
		wantAfter  time.Duration
	}{
		{status: 200, body: "ok", want: channel.Sent},
		{status: 204, want: channel.Sent},
		{status: 400, body: "invalid_payload", want: channel.Fail, wantReason: "http 400 invalid_payload"},
		{status: 400, body: "no_text\n", want: channel.Fail, wantReason: "http 400 no_text"},
		{status: 403, body: "action_prohibited", want: channel.Fail, wantReason: "http 403 action_prohibited"},
		{status: 404, body: "channel_not_found", want: channel.Fail, wantReason: "http 404 channel_not_found"},
		{status: 404, body: "no_service", want: channel.Fail, wantReason: "http 404 no_service"},
		{status: 410, body: "channel_is_archived", want: channel.Fail, wantReason: "http 410 channel_is_archived"},
		// A body that is not a documented code could be anything (an HTML
		// page echoing the message): it is not copied.
		{status: 404, body: "customer c/42 not found", want: channel.Fail, wantReason: "http 404"},
		{status: 401, want: channel.Fail, wantReason: "http 401"},
		{status: 408, want: channel.Retry, wantReason: "http 408"},
		{status: 429, header: map[string]string{"Retry-After": "30"}, want: channel.Retry, wantReason: "http 429", wantAfter: 30 * time.Second},
		{status: 429, want: channel.Retry, wantReason: "http 429"},
		{status: 500, body: "rollup_error", want: channel.Retry, wantReason: "http 500 rollup_error"},
		{status: 502, body: "<html>bad gateway</html>", want: channel.Retry, wantReason: "http 502"},
		{status: 503, header: map[string]string{"Retry-After": "7"}, want: channel.Retry, wantReason: "http 503", wantAfter: 7 * time.Second},
	} {
		t.Run(strings.ReplaceAll(tc.wantReason+" "+tc.body, "/", "_"), func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			res := newSender(t, srv.URL, Config{}).Send(context.Background(), message())
			if res.Outcome != tc.want || res.Reason != tc.wantReason || res.RetryAfter != tc.wantAfter {
				t.Errorf("status %d %q: got %+v, want %v %q %v", tc.status, tc.body, res, tc.want, tc.wantReason, tc.wantAfter)
			}
			checkNoSecret(t, "reason", res.Reason)
		})
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	var followed atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			followed.Store(true)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	res := newSender(t, srv.URL, Config{}).Send(context.Background(), message())
	if res.Outcome != channel.Fail || res.Reason != "http 307 redirect" {
		t.Errorf("got %+v, want fail %q", res, "http 307 redirect")
	}
	if followed.Load() {
		t.Error("redirect was followed")
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		value string
		want  time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"120", 2 * time.Minute},
		{" 5 ", 5 * time.Second},
		{"3600", time.Hour},
		{"86400", MaxRetryAfter},
		{"99999999999999999999999", MaxRetryAfter},
		{"-5", 0},
		{"1.5", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), MaxRetryAfter},
		{now.Add(time.Minute).Format(time.RFC850), time.Minute},
	} {
		if got := channel.RetryAfter(tc.value, now); got != tc.want {
			t.Errorf("RetryAfter(%q) = %v, want %v", tc.value, got, tc.want)
		}
	}
}

// TestRetryAfterDate goes through a server with the configured clock.
func TestRetryAfterDate(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", now.Add(10*time.Minute).Format(http.TimeFormat))
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	s := newSender(t, srv.URL, Config{Now: func() time.Time { return now }})
	res := s.Send(context.Background(), message())
	if res.Outcome != channel.Retry || res.RetryAfter != 10*time.Minute {
		t.Errorf("got %+v, want retry after 10m", res)
	}
}

func TestHangingServerTimesOut(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	const timeout = 300 * time.Millisecond
	s := newSender(t, srv.URL, Config{Timeout: timeout})
	start := time.Now()
	res := s.Send(context.Background(), message())
	elapsed := time.Since(start)
	if res.Outcome != channel.Retry || res.Reason != "timeout" {
		t.Errorf("got %+v, want retry %q", res, "timeout")
	}
	if elapsed < timeout || elapsed > timeout+2*time.Second {
		t.Errorf("returned after %v, want about %v", elapsed, timeout)
	}
}

func TestTransportErrors(t *testing.T) {
	t.Parallel()
	// A closed listener's address refuses connections.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	_ = ln.Close()

	// A server that hangs up without answering.
	hangup := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}))
	// Cleanup, not defer: the parallel subtests run after this returns.
	t.Cleanup(hangup.Close)

	canceled, cancel := context.WithCancel(context.Background())
	cancel()

	for _, tc := range []struct {
		name       string
		url        string
		ctx        context.Context
		wantReason string
	}{
		{"refused", refused, context.Background(), "connection refused"},
		{"hang up", hangup.URL, context.Background(), "connection closed"},
		{"canceled", hangup.URL, canceled, "canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := newSender(t, tc.url, Config{Timeout: 5 * time.Second}).Send(tc.ctx, message())
			if res.Outcome != channel.Retry || res.Reason != tc.wantReason {
				t.Errorf("got %+v, want retry %q", res, tc.wantReason)
			}
			checkNoSecret(t, "reason", res.Reason)
		})
	}
}

func TestUnsendableMessages(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	s := newSender(t, srv.URL, Config{})
	for _, tc := range []struct {
		name       string
		edit       func(m *channel.Message)
		wantReason string
	}{
		{"empty", func(m *channel.Message) { m.Subject, m.Text = "", "" }, "empty message"},
		{"bad key", func(m *channel.Message) { m.Key = "run/a\nb" }, "invalid idempotency key"},
	} {
		m := message()
		tc.edit(m)
		if res := s.Send(context.Background(), m); res.Outcome != channel.Fail || res.Reason != tc.wantReason {
			t.Errorf("%s: got %+v, want fail %q", tc.name, res, tc.wantReason)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("%d requests for unsendable messages", n)
	}
}

// TestKeepAlive: every send, whatever the answer and its body, goes back
// to the pool, so sequential sends share one connection and concurrent
// ones at most MaxConns.
func TestKeepAlive(t *testing.T) {
	t.Parallel()
	bigBody := strings.Repeat("x", 20<<10)
	for _, tc := range []struct {
		name     string
		maxConns int
		workers  int
		sends    int
		maxNew   int64
	}{
		{name: "sequential", maxConns: 4, workers: 1, sends: 40, maxNew: 1},
		{name: "concurrent", maxConns: 2, workers: 8, sends: 10, maxNew: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var newConns, requests atomic.Int64
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				switch requests.Add(1) % 5 {
				case 0:
					_, _ = io.WriteString(w, "ok")
				case 1:
					w.WriteHeader(http.StatusNotFound)
					_, _ = io.WriteString(w, "channel_not_found")
				case 2:
					w.WriteHeader(http.StatusInternalServerError)
					_, _ = io.WriteString(w, bigBody)
				case 3:
					w.Header().Set("Retry-After", "1")
					w.WriteHeader(http.StatusTooManyRequests)
				case 4:
					_, _ = io.WriteString(w, bigBody)
				}
			}))
			srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
				if state == http.StateNew {
					newConns.Add(1)
				}
			}
			srv.Start()
			defer srv.Close()
			s := newSender(t, srv.URL, Config{MaxConns: tc.maxConns})
			if got := s.Concurrency(); got != tc.maxConns {
				t.Errorf("Concurrency() = %d, want %d", got, tc.maxConns)
			}
			var wg sync.WaitGroup
			for range tc.workers {
				wg.Go(func() {
					for range tc.sends {
						s.Send(context.Background(), message())
					}
				})
			}
			wg.Wait()
			if got, want := requests.Load(), int64(tc.workers*tc.sends); got != want {
				t.Errorf("%d requests, want %d", got, want)
			}
			if n := newConns.Load(); n < 1 || n > tc.maxNew {
				t.Errorf("%d connections for %d sends, want 1..%d", n, tc.workers*tc.sends, tc.maxNew)
			}
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"https", Config{WebhookURL: "https://hooks.slack.com" + secretPath}, true},
		{"http loopback", Config{WebhookURL: "http://127.0.0.1:8080" + secretPath}, true},
		{"http localhost", Config{WebhookURL: "http://localhost" + secretPath}, true},
		{"http ipv6 loopback", Config{WebhookURL: "http://[::1]:9" + secretPath}, true},
		{"http remote", Config{WebhookURL: "http://hooks.slack.com" + secretPath}, false},
		{"http lookalike", Config{WebhookURL: "http://localhost.evil.example" + secretPath}, false},
		{"other scheme", Config{WebhookURL: "ftp://hooks.slack.com" + secretPath}, false},
		{"no host", Config{WebhookURL: "https://" + secretPath}, false},
		{"relative", Config{WebhookURL: secretPath}, false},
		{"garbage", Config{WebhookURL: "https://hooks.slack.com/%zz" + secretPath}, false},
		{"empty", Config{}, false},
		{"negative timeout", Config{WebhookURL: "https://hooks.slack.com" + secretPath, Timeout: -1}, false},
		{"negative conns", Config{WebhookURL: "https://hooks.slack.com" + secretPath, MaxConns: -1}, false},
	} {
		s, err := New(tc.cfg)
		if (err == nil) != tc.ok {
			t.Errorf("%s: New error %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil {
			checkNoSecret(t, tc.name+" error", err.Error())
			continue
		}
		if s.Concurrency() != DefaultMaxConns || s.client.Timeout != DefaultTimeout {
			t.Errorf("%s: defaults not applied: %d conns, %v timeout", tc.name, s.Concurrency(), s.client.Timeout)
		}
		checkNoSecret(t, tc.name+" String", s.String())
		_ = s.Close()
	}
}
