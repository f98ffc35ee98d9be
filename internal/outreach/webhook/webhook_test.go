package webhook

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/retention-dev/retention-operator/internal/outreach/channel"
)

// reasonRE is every Reason the sender may return: short, fixed words and
// status codes, so no personal data, URL or body can be in one.
var reasonRE = regexp.MustCompile(`^(|http [0-9]{3}|timeout|cancelled|closed|connection (closed|refused|reset|error)|tls|dns|no idempotency key|invalid idempotency key|fields not encodable as JSON)$`)

func newSigningKey(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return signingKeyPrefix + base64.StdEncoding.EncodeToString(b)
}

func newSender(t testing.TB, cfg Config) *Sender {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// quietServer is an httptest server that does not log to stderr (TLS
// handshake failures and hijacked connections are expected here).
func quietServer(t testing.TB, h http.Handler, tls bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv
}

func message(run, customer string) *channel.Message {
	return &channel.Message{
		Key:        channel.Key(run, customer),
		RunID:      run,
		Campaign:   "shop/winback",
		CustomerID: customer,
		Address:    customer + "@example.com",
		Subject:    "We miss you",
		Text:       "Come back",
		Fields:     map[string]any{"plan": "pro"},
	}
}

func checkReason(t *testing.T, res channel.Result) {
	t.Helper()
	if !reasonRE.MatchString(res.Reason) {
		t.Errorf("Reason %q is not one of the fixed reasons", res.Reason)
	}
}

// TestSignedDelivery checks every request against the Standard Webhooks
// reference library: signed with two keys (a rotation), each key alone
// verifies, a third does not; webhook-id and Idempotency-Key are the
// message key; the body decodes to the documented Payload.
func TestSignedDelivery(t *testing.T) {
	oldKey, newKey, otherKey := newSigningKey(t), newSigningKey(t), newSigningKey(t)
	verifier := func(k string) *standardwebhooks.Webhook {
		wh, err := standardwebhooks.NewWebhook(k)
		if err != nil {
			t.Fatal(err)
		}
		return wh
	}
	whOld, whNew, whOther := verifier(oldKey), verifier(newKey), verifier(otherKey)

	type received struct {
		header http.Header
		body   []byte
	}
	got := make(chan received, 10)
	srv := quietServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading body: %v", err)
		}
		got <- received{r.Header.Clone(), body}
		w.WriteHeader(http.StatusNoContent)
	}), false)

	secret := oldKey + "\n" + newKey + "\n"
	keys, err := ParseSigningKeys(secret)
	if err != nil {
		t.Fatal(err)
	}
	s := newSender(t, Config{
		URL:         srv.URL + "/hooks/retention?tenant=7",
		SigningKeys: keys,
		Headers:     map[string]string{"authorization": "Bearer t0ken", "X-Tenant": "7"},
	})

	full := fullMessage()
	for _, customer := range []string{"c-1", "ana maria/سارا\nline two", full.CustomerID} {
		t.Run(customer, func(t *testing.T) {
			m := fullMessage()
			m.CustomerID = customer
			m.Key = channel.Key(m.RunID, customer)
			before := time.Now().Unix()
			res := s.Send(context.Background(), m)
			if res.Outcome != channel.Sent || res.Reason != "" {
				t.Fatalf("Send = %+v, want sent", res)
			}
			r := <-got

			for name, wh := range map[string]*standardwebhooks.Webhook{"old key": whOld, "new key": whNew} {
				if err := wh.Verify(r.body, r.header); err != nil {
					t.Errorf("verify with the %s alone: %v", name, err)
				}
			}
			if err := whOther.Verify(r.body, r.header); err == nil {
				t.Error("a key the sender does not have verifies")
			}
			if sigs := strings.Fields(r.header.Get("webhook-signature")); len(sigs) != 2 ||
				!strings.HasPrefix(sigs[0], "v1,") || !strings.HasPrefix(sigs[1], "v1,") {
				t.Errorf("webhook-signature = %q, want two v1 entries", r.header.Get("webhook-signature"))
			}

			want := channel.Key(m.RunID, customer)
			if id, idem := r.header.Get("webhook-id"), r.header.Get("Idempotency-Key"); id != want || idem != want {
				t.Errorf("webhook-id %q, Idempotency-Key %q, want both %q", id, idem, want)
			}
			for name, want := range map[string]string{
				"Content-Type":  "application/json",
				"User-Agent":    DefaultUserAgent,
				"Authorization": "Bearer t0ken",
				"X-Tenant":      "7",
			} {
				if v := r.header.Get(name); v != want {
					t.Errorf("%s = %q, want %q", name, v, want)
				}
			}
			ts := r.header.Get("webhook-timestamp")
			var sec int64
			if _, err := fmt.Sscan(ts, &sec); err != nil || sec < before || sec > time.Now().Unix() {
				t.Errorf("webhook-timestamp %q, want the Unix second of the send", ts)
			}

			var p Payload
			dec := json.NewDecoder(strings.NewReader(string(r.body)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&p); err != nil {
				t.Fatalf("body does not decode to Payload: %v\n%s", err, r.body)
			}
			if wantP := payloadOf(m, time.Unix(sec, 0)); !reflect.DeepEqual(p, wantP) {
				t.Errorf("payload\n got %+v\nwant %+v", p, wantP)
			}
			if p.Data.Customer.ID != customer || p.Timestamp.Unix() != sec {
				t.Errorf("customer id %q at %v, want %q at %d", p.Data.Customer.ID, p.Timestamp, customer, sec)
			}
		})
	}
}

func TestUnsignedHasNoSignature(t *testing.T) {
	got := make(chan http.Header, 1)
	srv := quietServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
	}), false)
	s := newSender(t, Config{URL: srv.URL, UserAgent: "acme/1", Headers: map[string]string{"User-Agent": "override/2"}})
	if res := s.Send(context.Background(), message("run", "c")); res.Outcome != channel.Sent {
		t.Fatalf("Send = %+v", res)
	}
	h := <-got
	if v, ok := h["Webhook-Signature"]; ok {
		t.Errorf("unsigned sender sent webhook-signature %q", v)
	}
	if h.Get("webhook-id") != "run/c" || h.Get("webhook-timestamp") == "" {
		t.Errorf("webhook-id %q, webhook-timestamp %q", h.Get("webhook-id"), h.Get("webhook-timestamp"))
	}
	if ua := h.Get("User-Agent"); ua != "override/2" {
		t.Errorf("User-Agent %q, want the one in Headers", ua)
	}
}

func TestBasicAuthFromURL(t *testing.T) {
	got := make(chan string, 1)
	srv := quietServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		got <- u + ":" + p
	}), false)
	s := newSender(t, Config{URL: strings.Replace(srv.URL, "http://", "http://hook:s3cret@", 1)})
	if res := s.Send(context.Background(), message("run", "c")); res.Outcome != channel.Sent {
		t.Fatalf("Send = %+v", res)
	}
	if v := <-got; v != "hook:s3cret" {
		t.Errorf("basic auth %q", v)
	}
}

func TestClassification(t *testing.T) {
	// A fixed clock, so HTTP-date Retry-After values are exact.
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	status := func(code int, header ...string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			for i := 0; i < len(header); i += 2 {
				w.Header().Set(header[i], header[i+1])
			}
			w.WriteHeader(code)
		}
	}
	var redirectFollowed atomic.Bool
	redirect := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/elsewhere" {
				redirectFollowed.Store(true)
				return
			}
			http.Redirect(w, r, "/elsewhere", code)
		}
	}
	hijack := func(write string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			c, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			buf.WriteString(write)
			buf.Flush()
			c.Close()
		}
	}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // runs before the servers close
	hang := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // so the server notices the client leaving
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}
	const timeout = 300 * time.Millisecond

	cases := []struct {
		name       string
		handler    http.HandlerFunc
		want       channel.Outcome
		reason     string
		retryAfter time.Duration
	}{
		{"204", status(204), channel.Sent, "", 0},
		{"200 with a large body", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(strings.Repeat("x", 1<<20)))
		}, channel.Sent, "", 0},
		{"202 cut short after the status", hijack("HTTP/1.1 202 Accepted\r\nContent-Length: 100\r\n\r\nshort"), channel.Sent, "", 0},
		{"500", status(500), channel.Retry, "http 500", 0},
		{"503 Retry-After 7", status(503, "Retry-After", "7"), channel.Retry, "http 503", 7 * time.Second},
		{"429 Retry-After 7", status(429, "Retry-After", "7"), channel.Retry, "http 429", 7 * time.Second},
		{"429 Retry-After date", status(429, "Retry-After", now.Add(90*time.Second).Format(http.TimeFormat)), channel.Retry, "http 429", 90 * time.Second},
		{"429 Retry-After RFC 850 date", status(429, "Retry-After", now.Add(2*time.Minute).Format(time.RFC850)), channel.Retry, "http 429", 2 * time.Minute},
		{"429 Retry-After past date", status(429, "Retry-After", now.Add(-time.Minute).Format(http.TimeFormat)), channel.Retry, "http 429", 0},
		{"429 Retry-After a day", status(429, "Retry-After", "86400"), channel.Retry, "http 429", time.Hour},
		{"429 Retry-After a day as a date", status(429, "Retry-After", now.Add(24*time.Hour).Format(http.TimeFormat)), channel.Retry, "http 429", time.Hour},
		{"429 Retry-After overflow", status(429, "Retry-After", "99999999999999999999999"), channel.Retry, "http 429", time.Hour},
		{"429 Retry-After garbage", status(429, "Retry-After", "soon"), channel.Retry, "http 429", 0},
		{"429 Retry-After negative", status(429, "Retry-After", "-5"), channel.Retry, "http 429", 0},
		{"408", status(408), channel.Retry, "http 408", 0},
		{"400", status(400), channel.Fail, "http 400", 0},
		{"401", status(401), channel.Fail, "http 401", 0},
		{"404", status(404), channel.Fail, "http 404", 0},
		{"302 not followed", redirect(302), channel.Fail, "http 302", 0},
		{"307 not followed", redirect(307), channel.Fail, "http 307", 0},
		{"hangs past the timeout", hang, channel.Retry, "timeout", 0},
		{"closes without answering", hijack(""), channel.Retry, "connection closed", 0},
		{"closes mid status line", hijack("HTTP/1.1 200 O"), channel.Retry, "connection closed", 0},
		{"answers garbage", hijack("SMTP ready\r\n\r\n"), channel.Retry, "connection error", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := quietServer(t, c.handler, false)
			s := newSender(t, Config{URL: srv.URL + "/customers/c-1", Timeout: timeout, Now: clock, SigningKeys: []string{newSigningKey(t)}})
			// Twice: the second send also shows the connection (or its
			// loss) left nothing behind.
			for range 2 {
				start := time.Now()
				res := s.Send(context.Background(), message("run", "ana@example.com"))
				elapsed := time.Since(start)
				if res.Outcome != c.want || res.Reason != c.reason || res.RetryAfter != c.retryAfter {
					t.Errorf("Send = {%v %q %v}, want {%v %q %v}", res.Outcome, res.Reason, res.RetryAfter, c.want, c.reason, c.retryAfter)
				}
				checkReason(t, res)
				if elapsed > timeout+time.Second {
					t.Errorf("Send took %v, timeout is %v", elapsed, timeout)
				}
				if c.reason == "timeout" && elapsed < timeout {
					t.Errorf("timed out after %v, before the timeout %v", elapsed, timeout)
				}
			}
		})
	}
	if redirectFollowed.Load() {
		t.Error("a redirect was followed")
	}
}

func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := newSender(t, Config{URL: "http://" + addr + "/"})
	res := s.Send(context.Background(), message("run", "c"))
	if res.Outcome != channel.Retry || res.Reason != "connection refused" {
		t.Errorf("Send = %+v, want retry \"connection refused\"", res)
	}
}

func TestCallerCancel(t *testing.T) {
	release := make(chan struct{})
	srv := quietServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}), false)
	t.Cleanup(func() { close(release) })
	s := newSender(t, Config{URL: srv.URL, Timeout: 30 * time.Second})

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	res := s.Send(ctx, message("run", "c"))
	if res.Outcome != channel.Retry || res.Reason != "cancelled" {
		t.Errorf("Send = %+v, want retry \"cancelled\"", res)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancelled Send returned after %v", d)
	}

	// Already cancelled: nothing is sent.
	res = s.Send(ctx, message("run", "c2"))
	if res.Outcome != channel.Retry || res.Reason != "cancelled" {
		t.Errorf("Send on a done ctx = %+v, want retry \"cancelled\"", res)
	}
}

func TestMessagesNotSent(t *testing.T) {
	var hits atomic.Int32
	srv := quietServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }), false)
	s := newSender(t, Config{URL: srv.URL})
	nan := message("run", "c")
	nan.Fields = map[string]any{"score": math.NaN()}
	noKey := message("run", "c")
	noKey.Key = ""
	badKey := message("run", "c")
	badKey.Key = "run/c\r\nX-Injected: 1"
	for name, c := range map[string]struct {
		m      *channel.Message
		reason string
	}{
		"NaN field":        {nan, "fields not encodable as JSON"},
		"no key":           {noKey, "no idempotency key"},
		"key with newline": {badKey, "invalid idempotency key"},
	} {
		if res := s.Send(context.Background(), c.m); res.Outcome != channel.Fail || res.Reason != c.reason {
			t.Errorf("%s: Send = %+v, want fail %q", name, res, c.reason)
		}
	}
	s.Close()
	if res := s.Send(context.Background(), message("run", "c")); res.Outcome != channel.Retry || res.Reason != "closed" {
		t.Errorf("Send after Close = %+v, want retry \"closed\"", res)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("%d requests reached the receiver", n)
	}
}

func TestTLS(t *testing.T) {
	srv := quietServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}), true)
	// Every httptest server has the same certificate: make another.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "other CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	otherDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	otherCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: otherDER})
	srvCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	for _, c := range []struct {
		name   string
		ca     []byte
		want   channel.Outcome
		reason string
	}{
		{"trusted via CABundle", srvCA, channel.Sent, ""},
		{"trusted among others", append(append([]byte("# a comment\n"), otherCA...), srvCA...), channel.Sent, ""},
		{"system roots only", nil, channel.Fail, "tls"},
		{"another CA", otherCA, channel.Fail, "tls"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSender(t, Config{URL: srv.URL, CABundle: c.ca})
			res := s.Send(context.Background(), message("run", "c"))
			if res.Outcome != c.want || res.Reason != c.reason {
				t.Errorf("Send = %+v, want {%v %q}", res, c.want, c.reason)
			}
		})
	}
}

// TestKeepAlive: 1,000 sends from 8 goroutines over MaxConns 4 open at
// most 4 connections.
func TestKeepAlive(t *testing.T) {
	var opened atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	s := newSender(t, Config{URL: srv.URL, MaxConns: 4})
	if s.Concurrency() != 4 {
		t.Fatalf("Concurrency() = %d, want 4", s.Concurrency())
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 125 {
				if res := s.Send(context.Background(), message("run", fmt.Sprintf("c-%d-%d", g, i))); res.Outcome != channel.Sent {
					t.Errorf("Send = %+v", res)
				}
			}
		})
	}
	wg.Wait()
	if n := opened.Load(); n < 1 || n > 4 {
		t.Errorf("%d connections opened, want 1 to 4", n)
	}
}

// TestConcurrentSends: 16 goroutines × 500 sends, each key seen exactly
// once, every signature valid. Run with -race, it also checks that pooled
// buffers are not reused while the Transport may still read them.
func TestConcurrentSends(t *testing.T) {
	const goroutines, perGoroutine = 16, 500
	key := newSigningKey(t)
	wh, err := standardwebhooks.NewWebhook(key)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := make(map[string]int)
	srv := quietServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := wh.Verify(body, r.Header); err != nil {
			t.Errorf("verify: %v", err)
		}
		var p Payload
		if err := json.Unmarshal(body, &p); err != nil {
			t.Errorf("body: %v", err)
		}
		if want := channel.Key(p.Data.Run, p.Data.Customer.ID); r.Header.Get("webhook-id") != want {
			t.Errorf("webhook-id %q for a body of %q", r.Header.Get("webhook-id"), want)
		}
		mu.Lock()
		seen[r.Header.Get("Idempotency-Key")]++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}), false)
	s := newSender(t, Config{URL: srv.URL, SigningKeys: []string{key}})
	if s.Concurrency() != DefaultMaxConns {
		t.Fatalf("Concurrency() = %d, want %d", s.Concurrency(), DefaultMaxConns)
	}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				m := message("run-1", fmt.Sprintf("customer %d/%d", g, i))
				// Differing sizes, so a reused buffer with stale bytes
				// would show as a bad signature or body.
				m.Text = strings.Repeat("x", (g*perGoroutine+i)%700)
				if res := s.Send(context.Background(), m); res.Outcome != channel.Sent {
					t.Errorf("Send = %+v", res)
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != goroutines*perGoroutine {
		t.Errorf("%d distinct keys, want %d", len(seen), goroutines*perGoroutine)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("key %q seen %d times", k, n)
		}
	}
}

func TestNewDefaults(t *testing.T) {
	s := newSender(t, Config{URL: "https://hooks.example/x"})
	if s.timeout != DefaultTimeout || s.Concurrency() != DefaultMaxConns || s.now == nil {
		t.Errorf("timeout %v, concurrency %d, want %v, %d", s.timeout, s.Concurrency(), DefaultTimeout, DefaultMaxConns)
	}
	tr := s.transport
	if tr.MaxIdleConnsPerHost != DefaultMaxConns || tr.MaxConnsPerHost != DefaultMaxConns {
		t.Errorf("transport idle/max per host %d/%d", tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost)
	}
}

func TestNewRejects(t *testing.T) {
	good := newSigningKey(t)
	const secretKey = "whsec_!!!not-base64!!!"
	const secretValue = "Bearer sup3rsecret"
	for _, c := range []struct {
		name    string
		cfg     Config
		mention string // the error must say this
	}{
		{"no URL", Config{}, "scheme"},
		{"ftp URL", Config{URL: "ftp://files.example/x"}, "scheme"},
		{"no host", Config{URL: "https:///path"}, "host"},
		{"unparsable URL", Config{URL: "http://[::1/x?token=sup3rsecret"}, "parse"},
		{"negative timeout", Config{URL: "http://h/", Timeout: -time.Second}, "negative"},
		{"timeout over 60s", Config{URL: "http://h/", Timeout: 61 * time.Second}, "maximum"},
		{"negative MaxConns", Config{URL: "http://h/", MaxConns: -1}, "MaxConns"},
		{"key without prefix", Config{URL: "http://h/", SigningKeys: []string{good, "dGVzdA=="}}, "signing key 2"},
		{"key not base64", Config{URL: "http://h/", SigningKeys: []string{secretKey}}, "signing key 1"},
		{"key empty", Config{URL: "http://h/", SigningKeys: []string{good, good, "whsec_"}}, "signing key 3"},
		{"CA not PEM", Config{URL: "https://h/", CABundle: []byte("not a certificate")}, "no PEM"},
		{"CA corrupt", Config{URL: "https://h/", CABundle: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("garbage")})}, "certificate 1"},
		{"CA is a key", Config{URL: "https://h/", CABundle: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("sup3rsecret")})}, "PRIVATE KEY"},
		{"reserved header", Config{URL: "http://h/", Headers: map[string]string{"webhook-id": "x"}}, "Webhook-Id"},
		{"reserved header Content-Type", Config{URL: "http://h/", Headers: map[string]string{"content-type": "text/plain"}}, "Content-Type"},
		{"header name with space", Config{URL: "http://h/", Headers: map[string]string{"X Bad": "1"}}, "X Bad"},
		{"header value with newline", Config{URL: "http://h/", Headers: map[string]string{"Authorization": secretValue + "\r\nX: y"}}, "Authorization"},
		{"header twice", Config{URL: "http://h/", Headers: map[string]string{"x-a": "1", "X-A": "2"}}, "twice"},
		{"auth twice", Config{URL: "http://u:p@h/", Headers: map[string]string{"Authorization": secretValue}}, "Authorization"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(c.cfg)
			if err == nil {
				s.Close()
				t.Fatal("New accepted it")
			}
			msg := err.Error()
			if !strings.Contains(msg, c.mention) {
				t.Errorf("error %q does not mention %q", msg, c.mention)
			}
			for _, secret := range []string{"sup3rsecret", "not-base64", "dGVzdA", good[len(signingKeyPrefix):]} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q reveals a secret", msg)
				}
			}
		})
	}
}

func TestParseSigningKeys(t *testing.T) {
	k1, k2, k3 := newSigningKey(t), newSigningKey(t), newSigningKey(t)
	for _, c := range []struct {
		name    string
		secret  string
		want    []string
		mention string
	}{
		{"one", k1, []string{k1}, ""},
		{"one with newline", k1 + "\n", []string{k1}, ""},
		{"rotation", k1 + " " + k2, []string{k1, k2}, ""},
		{"mixed whitespace", "\n\t" + k1 + "\r\n" + k2 + "  " + k3 + "\n", []string{k1, k2, k3}, ""},
		{"empty", "", nil, "no signing key"},
		{"blank", " \n ", nil, "no signing key"},
		{"second bad", k1 + " whsec_%%%", nil, "signing key 2"},
		{"comma separated", k1 + "," + k2, nil, "signing key 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseSigningKeys(c.secret)
			if c.mention != "" {
				if err == nil || !strings.Contains(err.Error(), c.mention) {
					t.Fatalf("error %v, want one mentioning %q", err, c.mention)
				}
				if strings.Contains(err.Error(), k1[len(signingKeyPrefix):]) {
					t.Errorf("error %q reveals a key", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Errorf("got %q, want %q", got, c.want)
			}
			if _, err := New(Config{URL: "http://h/", SigningKeys: got}); err != nil {
				t.Errorf("New rejects what ParseSigningKeys accepted: %v", err)
			}
		})
	}
}
