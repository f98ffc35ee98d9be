package unsubscribe

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// fakeClock is the rate limits' clock in tests: it moves only when told,
// so no test sleeps or depends on the machine's speed.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// scopeCounter records OnRateLimited calls.
type scopeCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *scopeCounter) add(scope string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	c.counts[scope]++
}

func (c *scopeCounter) get(scope string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[scope]
}

// limitFixture is a handler over fakeOptOuts on a fake clock.
type limitFixture struct {
	h       *handler
	clock   *fakeClock
	optOuts *fakeOptOuts
	limited *scopeCounter
	logs    *logBuffer
}

func newLimitFixture(t *testing.T, cfg HandlerConfig) *limitFixture {
	t.Helper()
	f := &limitFixture{clock: newFakeClock(), optOuts: &fakeOptOuts{}, limited: &scopeCounter{}, logs: &logBuffer{}}
	cfg.Key, cfg.OptOuts, cfg.OnRateLimited, cfg.Log = testKey, f.optOuts, f.limited.add, f.logs.logger()
	h, err := newHandler(cfg, f.clock.now)
	if err != nil {
		t.Fatal(err)
	}
	f.h = h
	return f
}

// serve sends one request from remote straight to the handler; a POST
// carries RFC 8058's body.
func (f *limitFixture) serve(method, token, remote string) *httptest.ResponseRecorder {
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("List-Unsubscribe=One-Click")
	}
	req := httptest.NewRequest(method, PathPrefix+token, body)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.RemoteAddr = remote
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, req)
	return w
}

// refusedTokens are tokens an attacker can make without the key, for a
// customer with a token on ns/email.
func refusedTokens(t *testing.T) map[string]string {
	t.Helper()
	valid := Token(testKey, "ns/email", "victim")
	raw, err := tokenEncoding.DecodeString(valid)
	if err != nil {
		t.Fatal(err)
	}
	raw[3] ^= 0x20
	return map[string]string{
		"other key":      Token(otherKey, "ns/email", "victim"),
		"altered byte":   tokenEncoding.EncodeToString(raw),
		"cross-channel":  splice(t, valid, "ns/sms", "victim"),
		"other version":  sign(testKey, tokenVersion+1, "ns/email", "victim"),
		"truncated":      valid[:len(valid)-1],
		"extended":       valid + "A",
		"garbage":        "abc",
		"maximal length": strings.Repeat("A", maxTokenLen),
	}
}

// TestHandlerRefusedTokensNeverReachStore: a token Verify refuses is
// answered without calling the store, and takes nothing from the global
// write budget, so a flood of forgeries cannot keep a customer from
// unsubscribing.
func TestHandlerRefusedTokensNeverReachStore(t *testing.T) {
	t.Parallel()
	// One write allowed, and the clock never moves: a refusal that took
	// it would make the final valid POST fail.
	f := newLimitFixture(t, HandlerConfig{RateLimit: 0.001, Burst: 1})
	for name, token := range refusedTokens(t) {
		for _, method := range []string{http.MethodPost, http.MethodGet} {
			w := f.serve(method, token, "192.0.2.1:4000")
			if w.Code != http.StatusBadRequest && w.Code != http.StatusForbidden && w.Code != http.StatusNotFound {
				t.Errorf("%s %s: status %d, want 400, 403 or 404", method, name, w.Code)
			}
		}
	}
	if calls := f.optOuts.calls(); len(calls) != 0 {
		t.Fatalf("refused tokens reached the store %d times", len(calls))
	}
	if w := f.serve(http.MethodPost, Token(testKey, "ns/email", "victim"), "192.0.2.1:4000"); w.Code != http.StatusOK {
		t.Errorf("valid POST after the refusals: status %d, want 200", w.Code)
	}
	checkLogs(t, f.logs)
}

// TestHandlerCrossChannel: a token records an opt-out on its own channel
// only, and one whose channel was swapped is refused before the store.
func TestHandlerCrossChannel(t *testing.T) {
	t.Parallel()
	email := Token(testKey, "ns/email", "c/42")
	for _, tc := range []struct {
		name, token string
		want        int
		wantChannel string // of the store write, "" for none
	}{
		{"own channel", email, http.StatusOK, "ns/email"},
		{"email's tag on sms", splice(t, email, "ns/sms", "c/42"), http.StatusForbidden, ""},
		{"email's tag on another namespace", splice(t, email, "other/email", "c/42"), http.StatusForbidden, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newLimitFixture(t, HandlerConfig{})
			if w := f.serve(http.MethodPost, tc.token, "192.0.2.1:4000"); w.Code != tc.want {
				t.Fatalf("status %d, want %d", w.Code, tc.want)
			}
			calls := f.optOuts.calls()
			switch {
			case tc.wantChannel == "" && len(calls) != 0:
				t.Errorf("store called with %+v, want no call", calls)
			case tc.wantChannel != "" && (len(calls) != 1 || calls[0].Channel != tc.wantChannel || calls[0].CustomerID != "c/42"):
				t.Errorf("store called with %+v, want one opt-out of c/42 on %s", calls, tc.wantChannel)
			}
		})
	}
}

// step is one request of a rate-limit scenario, after advancing the clock.
type step struct {
	advance      time.Duration
	method       string
	token        string
	remote       string
	want         int
	wantRetry    string // Retry-After of a 429
	wantRecorded int    // store writes so far
}

func (f *limitFixture) run(t *testing.T, steps []step) {
	t.Helper()
	for i, s := range steps {
		f.clock.advance(s.advance)
		w := f.serve(s.method, s.token, s.remote)
		if w.Code != s.want {
			t.Fatalf("step %d (%s from %s): status %d, want %d", i, s.method, s.remote, w.Code, s.want)
		}
		if got := w.Header().Get("Retry-After"); s.want == http.StatusTooManyRequests && got != s.wantRetry {
			t.Errorf("step %d: Retry-After %q, want %q", i, got, s.wantRetry)
		}
		if s.want == http.StatusTooManyRequests && strings.Contains(w.Body.String(), "unsubscribed") {
			t.Errorf("step %d: 429 page claims the opt-out:\n%s", i, w.Body)
		}
		if got := len(f.optOuts.calls()); got != s.wantRecorded {
			t.Errorf("step %d: %d store writes, want %d", i, got, s.wantRecorded)
		}
		checkPage(t, "rate limit step", response{status: w.Code, header: w.Header(), body: w.Body.String()}, "", s.token)
	}
}

// TestHandlerGlobalRateLimit: recorded opt-outs over all clients are held
// to RateLimit with bursts of Burst; over it, 429 with Retry-After and no
// store write, while GET pages and refused tokens are still answered.
func TestHandlerGlobalRateLimit(t *testing.T) {
	t.Parallel()
	f := newLimitFixture(t, HandlerConfig{RateLimit: 1, Burst: 2})
	tok := func(id string) string { return Token(testKey, "ns/email", id) }
	forged := Token(otherKey, "ns/email", "c/9")
	const post, get = http.MethodPost, http.MethodGet
	f.run(t, []step{
		{0, post, tok("c/1"), "192.0.2.1:1", http.StatusOK, "", 1},
		{0, post, tok("c/2"), "192.0.2.2:1", http.StatusOK, "", 2},
		{0, post, tok("c/3"), "192.0.2.3:1", http.StatusTooManyRequests, "1", 2},
		{0, get, tok("c/3"), "192.0.2.3:1", http.StatusOK, "", 2},
		{0, post, forged, "192.0.2.4:1", http.StatusForbidden, "", 2},
		{500 * time.Millisecond, post, tok("c/3"), "192.0.2.3:1", http.StatusTooManyRequests, "1", 2},
		{500 * time.Millisecond, post, tok("c/3"), "192.0.2.3:1", http.StatusOK, "", 3},
		{0, post, tok("c/3"), "192.0.2.3:1", http.StatusTooManyRequests, "1", 3},
		{10 * time.Second, post, tok("c/4"), "192.0.2.5:1", http.StatusOK, "", 4},
		{0, post, tok("c/5"), "192.0.2.5:1", http.StatusOK, "", 5},
	})
	if n, c := f.limited.get(ScopeGlobal), f.limited.get(ScopeClient); n != 3 || c != 0 {
		t.Errorf("OnRateLimited: %d global, %d client; want 3, 0", n, c)
	}
	checkLogs(t, f.logs, "c/1", "c/3")
}

// TestHandlerClientRateLimit: with ClientRateLimit, each IPv4 address or
// IPv6 /64 has its own bucket over all its requests, refused ones
// included; other clients are not affected; addresses are not logged.
func TestHandlerClientRateLimit(t *testing.T) {
	t.Parallel()
	f := newLimitFixture(t, HandlerConfig{ClientRateLimit: 1, ClientBurst: 2})
	valid := Token(testKey, "ns/email", "c/1")
	const post, get = http.MethodPost, http.MethodGet
	const tooMany = http.StatusTooManyRequests
	f.run(t, []step{
		{0, get, "abc", "192.0.2.1:1000", http.StatusBadRequest, "", 0},
		{0, get, valid, "192.0.2.1:1001", http.StatusOK, "", 0},
		{0, post, valid, "192.0.2.1:1002", tooMany, "1", 0},
		{0, post, valid, "[::ffff:192.0.2.1]:1003", tooMany, "1", 0},
		{0, post, valid, "192.0.2.2:1000", http.StatusOK, "", 1},
		{0, get, valid, "[2001:db8::1]:1", http.StatusOK, "", 1},
		{0, get, valid, "[2001:db8::2]:1", http.StatusOK, "", 1},
		{0, get, valid, "[2001:db8::ffff]:1", tooMany, "1", 1},
		{0, get, valid, "[2001:db8:0:1::1]:1", http.StatusOK, "", 1},
		{time.Second, post, valid, "192.0.2.1:1004", http.StatusOK, "", 2},
		{0, post, valid, "192.0.2.1:1005", tooMany, "1", 2},
	})
	if n, g := f.limited.get(ScopeClient), f.limited.get(ScopeGlobal); n != 4 || g != 0 {
		t.Errorf("OnRateLimited: %d client, %d global; want 4, 0", n, g)
	}
	for _, addr := range []string{"192.0.2", "2001:db8"} {
		if strings.Contains(f.logs.String(), addr) {
			t.Errorf("logs contain client address %s:\n%s", addr, f.logs)
		}
	}
	checkLogs(t, f.logs, "c/1")
}

// TestHandlerClientAddr: ClientAddr chooses the bucket, so behind a proxy
// the forwarded address counts, not the proxy's.
func TestHandlerClientAddr(t *testing.T) {
	t.Parallel()
	f := newLimitFixture(t, HandlerConfig{
		ClientRateLimit: 1, ClientBurst: 1,
		ClientAddr: func(r *http.Request) string { return r.Header.Get("X-Real-IP") },
	})
	valid := Token(testKey, "ns/email", "c/1")
	for _, tc := range []struct {
		realIP string
		want   int
	}{
		{"198.51.100.1", http.StatusOK},
		{"198.51.100.2", http.StatusOK},
		{"198.51.100.1", http.StatusTooManyRequests},
		{"not an address", http.StatusOK},
		// Unparsable addresses share one bucket, not one each.
		{"still not one", http.StatusTooManyRequests},
	} {
		req := httptest.NewRequest(http.MethodGet, PathPrefix+valid, nil)
		req.RemoteAddr = "10.0.0.1:5000" // the proxy
		req.Header.Set("X-Real-IP", tc.realIP)
		w := httptest.NewRecorder()
		f.h.ServeHTTP(w, req)
		if w.Code != tc.want {
			t.Errorf("from %q: status %d, want %d", tc.realIP, w.Code, tc.want)
		}
	}
}

func TestClientKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ addr, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"2001:db8::1", "2001:db8::/64"},
		{"2001:db8::ffff:ffff", "2001:db8::/64"},
		{"2001:db8:0:1::1", "2001:db8:0:1::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"192.0.2.1:80", unknownClient},
		{"", unknownClient},
		{"example.com", unknownClient},
	} {
		if got := clientKey(tc.addr); got != tc.want {
			t.Errorf("clientKey(%q) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

// TestClientBucketsBounded: the per-client buckets never exceed their
// bound, however many addresses come, and the least recently seen goes
// first.
func TestClientBucketsBounded(t *testing.T) {
	t.Parallel()
	c := newClientBuckets(1, 1, 3)
	a := c.get("a")
	c.get("b")
	c.get("c")
	if c.get("a") != a {
		t.Fatal("a's bucket was not kept")
	}
	c.get("d") // evicts b, the least recently seen
	if c.get("a") != a {
		t.Error("a's bucket, recently seen, was evicted")
	}
	if _, ok := c.byKey["b"]; ok {
		t.Error("b's bucket, least recently seen, was kept")
	}
	for i := range 10_000 {
		c.get(fmt.Sprint("client-", i))
		if c.len() > 3 || len(c.byKey) > 3 {
			t.Fatalf("%d buckets kept, bound 3", c.len())
		}
	}
}

func TestHandlerLimitDefaults(t *testing.T) {
	t.Parallel()
	h, err := newHandler(HandlerConfig{Key: testKey, OptOuts: &fakeOptOuts{}}, newFakeClock().now)
	if err != nil {
		t.Fatal(err)
	}
	if l, b := h.limits.writes.Limit(), h.limits.writes.Burst(); l != DefaultRateLimit || b != DefaultBurst {
		t.Errorf("global limit %v burst %d, want %v and %d", l, b, DefaultRateLimit, DefaultBurst)
	}
	if h.limits.clients != nil {
		t.Error("per-client limit on by default")
	}
	h, err = newHandler(HandlerConfig{Key: testKey, OptOuts: &fakeOptOuts{}, ClientRateLimit: 2}, newFakeClock().now)
	if err != nil {
		t.Fatal(err)
	}
	if c := h.limits.clients; c == nil || c.limit != 2 || c.burst != DefaultClientBurst || c.max != DefaultMaxClients {
		t.Errorf("per-client buckets %+v, want limit 2, burst %d, max %d", c, DefaultClientBurst, DefaultMaxClients)
	}
}

// TestTake: the wait take reports is the time until the bucket has a
// token, and Retry-After rounds it up to whole seconds, at least 1.
func TestTake(t *testing.T) {
	t.Parallel()
	now := newFakeClock().now()
	lim := rate.NewLimiter(0.1, 1) // a token every 10 s
	if _, ok := take(lim, now); !ok {
		t.Fatal("first take refused")
	}
	for _, tc := range []struct {
		after time.Duration
		want  string
	}{
		{0, "10"},
		{4 * time.Second, "6"},
		{9*time.Second + 500*time.Millisecond, "1"},
		{9*time.Second + 999*time.Millisecond, "1"},
	} {
		wait, ok := take(lim, now.Add(tc.after))
		if ok {
			t.Fatalf("after %v: take allowed", tc.after)
		}
		if got := retryAfter(wait); got != tc.want {
			t.Errorf("after %v: wait %v, Retry-After %q, want %q", tc.after, wait, got, tc.want)
		}
	}
	if _, ok := take(lim, now.Add(10*time.Second)); !ok {
		t.Error("take refused after 10 s")
	}
	for _, tc := range []struct {
		wait time.Duration
		want string
	}{{0, "1"}, {time.Nanosecond, "1"}, {time.Second, "1"}, {1200 * time.Millisecond, "2"}, {time.Minute, "60"}} {
		if got := retryAfter(tc.wait); got != tc.want {
			t.Errorf("retryAfter(%v) = %q, want %q", tc.wait, got, tc.want)
		}
	}
}
