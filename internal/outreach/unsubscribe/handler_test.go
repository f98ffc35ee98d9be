package unsubscribe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/sqlite"
)

// logBuffer collects every log line, at every verbosity.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuffer) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.lines = append(b.lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 10})
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// optOutCounter records OnOptOut calls.
type optOutCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *optOutCounter) add(channel string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	c.counts[channel]++
}

func (c *optOutCounter) get(channel string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[channel]
}

type fixture struct {
	store   store.Store
	server  *httptest.Server
	logs    *logBuffer
	optOuts *optOutCounter
}

// newFixture serves Handler over a real SQLite store in a temp dir.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "store.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	f := &fixture{store: s, logs: &logBuffer{}, optOuts: &optOutCounter{}}
	f.server = httptest.NewServer(Handler(HandlerConfig{
		Key:      testKey,
		OptOuts:  s,
		OnOptOut: f.optOuts.add,
		Log:      f.logs.logger(),
	}))
	t.Cleanup(f.server.Close)
	return f
}

type response struct {
	status int
	header http.Header
	body   string
}

func (f *fixture) do(t *testing.T, method, path, contentType string, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(method, f.server.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := f.server.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (f *fixture) optedOut(t *testing.T, channel, id string) bool {
	t.Helper()
	got, err := f.store.OptOutFilter(context.Background(), channel, []string{id})
	if err != nil {
		t.Fatal(err)
	}
	return got[id]
}

// checkPage checks the headers every page has, and that the page shows
// neither the customer id nor the token.
func checkPage(t *testing.T, what string, r response, id, token string) {
	t.Helper()
	for header, want := range map[string]string{
		"Content-Type":           "text/html; charset=utf-8",
		"X-Content-Type-Options": "nosniff",
		"Cache-Control":          "no-store",
		"Referrer-Policy":        "no-referrer",
	} {
		if got := r.header.Get(header); got != want {
			t.Errorf("%s: %s %q, want %q", what, header, got, want)
		}
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'none'") {
		t.Errorf("%s: Content-Security-Policy %q", what, csp)
	}
	if id != "" && strings.Contains(r.body, id) {
		t.Errorf("%s: page shows the customer id", what)
	}
	if token != "" && strings.Contains(r.body, token) {
		t.Errorf("%s: page shows the token", what)
	}
}

func TestHandlerUnsubscribes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct {
		name, channel, id, contentType string
		body                           func() io.Reader
	}{{
		name: "RFC 8058 form", channel: "email", id: "c/42",
		contentType: "application/x-www-form-urlencoded",
		body:        func() io.Reader { return strings.NewReader("List-Unsubscribe=One-Click") },
	}, {
		name: "empty body", channel: "email", id: "مشتری ۷ با فاصله",
		body: func() io.Reader { return nil },
	}, {
		name: "multipart", channel: "slack", id: "line\nbreak",
		body: func() io.Reader { return strings.NewReader(multipartBody) },
		// The boundary matches multipartBody.
		contentType: "multipart/form-data; boundary=" + multipartBoundary,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			token := Token(testKey, tc.channel, tc.id)
			path := PathPrefix + token

			// GET shows the confirmation and changes nothing.
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				r := f.do(t, method, path, "", nil)
				if r.status != http.StatusOK {
					t.Fatalf("%s: status %d", method, r.status)
				}
				checkPage(t, method, r, tc.id, token)
				if f.optedOut(t, tc.channel, tc.id) {
					t.Fatalf("%s recorded an opt-out", method)
				}
			}
			r := f.do(t, http.MethodGet, path, "", nil)
			if !strings.Contains(r.body, `<form method="post">`) || strings.Contains(r.body, "action=") {
				t.Errorf("confirmation page has no form posting to itself:\n%s", r.body)
			}

			// POST records it; a second POST is fine.
			before := f.optOuts.get(tc.channel)
			for i := range 2 {
				r := f.do(t, http.MethodPost, path, tc.contentType, tc.body())
				if r.status != http.StatusOK || !strings.Contains(r.body, "You have been unsubscribed") {
					t.Fatalf("POST %d: status %d\n%s", i+1, r.status, r.body)
				}
				checkPage(t, "POST", r, tc.id, token)
				if !f.optedOut(t, tc.channel, tc.id) {
					t.Fatalf("POST %d: no opt-out recorded", i+1)
				}
			}
			if got := f.optOuts.get(tc.channel) - before; got != 2 {
				t.Errorf("OnOptOut called %d times for 2 POSTs", got)
			}
			// Only that channel.
			other := "sms"
			if f.optedOut(t, other, tc.id) {
				t.Errorf("opt-out recorded on %s too", other)
			}
		})
	}
	checkLogs(t, f.logs, "مشتری ۷ با فاصله")
}

const multipartBoundary = "xYzZY"

var multipartBody = func() string {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	_ = w.SetBoundary(multipartBoundary)
	_ = w.WriteField("List-Unsubscribe", "One-Click")
	_ = w.Close()
	return b.String()
}()

// checkLogs checks that no log line has a customer id or a token.
func checkLogs(t *testing.T, logs *logBuffer, ids ...string) {
	t.Helper()
	text := logs.String()
	if text == "" {
		t.Error("nothing logged")
	}
	for _, id := range append(ids, "c/42", "مشتری", "line\nbreak", "victim") {
		if strings.Contains(text, id) || strings.Contains(text, fmt.Sprintf("%q", id)) {
			t.Errorf("logs contain customer id %q:\n%s", id, text)
		}
		for _, ch := range []string{"email", "slack"} {
			if token := Token(testKey, ch, id); strings.Contains(text, token) {
				t.Errorf("logs contain a token:\n%s", text)
			}
		}
	}
}

func TestHandlerRefuses(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const id = "victim"
	valid := Token(testKey, "email", id)
	forged := Token(otherKey, "email", id)
	raw, _ := tokenEncoding.DecodeString(valid)
	raw[len(raw)-1] ^= 1
	altered := tokenEncoding.EncodeToString(raw)
	form := "application/x-www-form-urlencoded"
	oneClick := func() io.Reader { return strings.NewReader("List-Unsubscribe=One-Click") }
	for _, tc := range []struct {
		name, method, path string
		body               func() io.Reader
		want               int
		wantAllow          bool
	}{
		{"forged POST", http.MethodPost, PathPrefix + forged, oneClick, http.StatusForbidden, false},
		{"altered POST", http.MethodPost, PathPrefix + altered, oneClick, http.StatusForbidden, false},
		{"garbled POST", http.MethodPost, PathPrefix + valid[:len(valid)-3], oneClick, http.StatusBadRequest, false},
		{"garbage POST", http.MethodPost, PathPrefix + "%00%ff", oneClick, http.StatusBadRequest, false},
		{"forged GET", http.MethodGet, PathPrefix + forged, nil, http.StatusNotFound, false},
		{"garbled GET", http.MethodGet, PathPrefix + "abc", nil, http.StatusBadRequest, false},
		{"PUT", http.MethodPut, PathPrefix + valid, oneClick, http.StatusMethodNotAllowed, true},
		{"DELETE", http.MethodDelete, PathPrefix + valid, nil, http.StatusMethodNotAllowed, true},
		{"PATCH", http.MethodPatch, PathPrefix + valid, oneClick, http.StatusMethodNotAllowed, true},
		{"body too large", http.MethodPost, PathPrefix + valid, func() io.Reader {
			return strings.NewReader("List-Unsubscribe=One-Click&pad=" + strings.Repeat("x", maxBodyBytes))
		}, http.StatusRequestEntityTooLarge, false},
		{"no token", http.MethodPost, PathPrefix, oneClick, http.StatusNotFound, false},
		{"extra segment", http.MethodPost, PathPrefix + valid + "/x", oneClick, http.StatusNotFound, false},
		{"other path", http.MethodPost, "/optout/" + valid, oneClick, http.StatusNotFound, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != nil {
				body = tc.body()
			}
			r := f.do(t, tc.method, tc.path, form, body)
			if r.status != tc.want {
				t.Errorf("status %d, want %d\n%s", r.status, tc.want, r.body)
			}
			if allow := r.header.Get("Allow"); tc.wantAllow && (!strings.Contains(allow, "POST") || !strings.Contains(allow, "GET")) {
				t.Errorf("Allow %q, want GET and POST", allow)
			}
			if strings.Contains(r.body, "unsubscribed") {
				t.Errorf("refusal page says unsubscribed:\n%s", r.body)
			}
			checkPage(t, tc.name, r, id, valid)
			if f.optedOut(t, "email", id) {
				t.Fatal("opt-out recorded")
			}
		})
	}
	if n := f.optOuts.get("email"); n != 0 {
		t.Errorf("OnOptOut called %d times", n)
	}
	checkLogs(t, f.logs, id)
}

// fakeOptOuts records what reaches the store, and fails every write when
// err is set. The real store is used wherever a write must succeed.
type fakeOptOuts struct {
	err   error
	mu    sync.Mutex
	added []store.OptOutAddParams
}

func (f *fakeOptOuts) OptOutAdd(_ context.Context, p *store.OptOutAddParams) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.added = append(f.added, *p)
	return f.err
}

func (f *fakeOptOuts) calls() []store.OptOutAddParams {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]store.OptOutAddParams(nil), f.added...)
}

func TestHandlerStoreError(t *testing.T) {
	t.Parallel()
	fake := &fakeOptOuts{err: fmt.Errorf("record opt-out on email: %w", errors.New("database is locked"))}
	logs := &logBuffer{}
	called := false
	h := Handler(HandlerConfig{
		Key:      testKey,
		OptOuts:  fake,
		OnOptOut: func(string) { called = true },
		Log:      logs.logger(),
	})
	token := Token(testKey, "email", "c/42")
	req := httptest.NewRequest(http.MethodPost, PathPrefix+token, strings.NewReader("List-Unsubscribe=One-Click"))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	r := response{status: w.Code, header: w.Header(), body: w.Body.String()}
	if r.status != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", r.status)
	}
	if strings.Contains(r.body, "unsubscribed") {
		t.Errorf("page claims the opt-out:\n%s", r.body)
	}
	if n := len(fake.calls()); n != 1 || called {
		t.Errorf("store called %d times, OnOptOut called %v", n, called)
	}
	checkPage(t, "503", r, "c/42", token)
	checkLogs(t, logs, "c/42")
	if !strings.Contains(logs.String(), "store error") {
		t.Errorf("store error not logged:\n%s", logs.String())
	}
}

func TestHandlerPanicsOnBadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  HandlerConfig
	}{
		{"short key", HandlerConfig{Key: testKey[:10], OptOuts: &fakeOptOuts{}}},
		{"no store", HandlerConfig{Key: testKey}},
		{"negative rate", HandlerConfig{Key: testKey, OptOuts: &fakeOptOuts{}, RateLimit: -1}},
		{"negative burst", HandlerConfig{Key: testKey, OptOuts: &fakeOptOuts{}, Burst: -1}},
		{"negative client rate", HandlerConfig{Key: testKey, OptOuts: &fakeOptOuts{}, ClientRateLimit: -1}},
		{"negative client burst", HandlerConfig{Key: testKey, OptOuts: &fakeOptOuts{}, ClientBurst: -1}},
		{"negative max clients", HandlerConfig{Key: testKey, OptOuts: &fakeOptOuts{}, MaxClients: -1}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Handler did not panic", tc.name)
				}
			}()
			Handler(tc.cfg)
		}()
	}
}
