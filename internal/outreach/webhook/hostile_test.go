package webhook

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/outreach/channel"
)

// Hostile sinks (issue #19): receivers that hang, fail forever, throttle,
// or drop the connection mid-response, on a raw TCP listener so that the
// test controls every byte and sees when the sender closes its end.

// sinkAction is what a hostile sink does after reading a request.
type sinkAction uint8

const (
	// answerKeepAlive: write the answer and read the next request.
	answerKeepAlive sinkAction = iota
	// answerThenStall: write the answer (a partial response) and then
	// neither write nor close: wait for the sender to give up.
	answerThenStall
	// answerThenHangUp: write the answer (a partial response) and close
	// the sending direction (FIN), then wait for the sender to close.
	answerThenHangUp
)

// sinkReply is a sink's answer to one request: raw bytes and an action.
type sinkReply struct {
	raw    string
	action sinkAction
}

// hostileSink is a webhook receiver on a raw listener. reply decides each
// answer from the request's 1-based number over all connections. Every
// connection, whatever the sink did on it, ends with the sink reading
// until the sender closes it, so closedBySender counts the connections
// the sender did not leak.
type hostileSink struct {
	ln net.Listener
	// silent sinks accept connections and never read or write.
	silent bool
	reply  func(n int) sinkReply

	accepted       atomic.Int32
	closedBySender atomic.Int32
	requests       atomic.Int32
	// ended is done when the test ends; it unblocks every connection.
	ended context.Context
	wg    sync.WaitGroup

	mu   sync.Mutex
	keys []string // Idempotency-Key of every request, in order
	ids  []string // webhook-id of every request, in order
}

func startHostileSink(t *testing.T, silent bool, reply func(n int) sinkReply) *hostileSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ended, end := context.WithCancel(context.Background())
	h := &hostileSink{ln: ln, silent: silent, reply: reply, ended: ended}
	h.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.accepted.Add(1)
			h.wg.Go(func() { h.serve(c) })
		}
	})
	t.Cleanup(func() {
		end()
		ln.Close()
		h.wg.Wait()
	})
	return h
}

func (h *hostileSink) url() string { return "http://" + h.ln.Addr().String() + "/hooks/c-1" }

func (h *hostileSink) serve(c net.Conn) {
	// Unblocks the reads below when the test ends.
	stop := context.AfterFunc(h.ended, func() { c.Close() })
	defer stop()
	defer c.Close()
	br := bufio.NewReader(c)
	if !h.silent {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				h.sawClose(err)
				return
			}
			io.Copy(io.Discard, req.Body)
			n := int(h.requests.Add(1))
			h.mu.Lock()
			h.keys = append(h.keys, req.Header.Get("Idempotency-Key"))
			h.ids = append(h.ids, req.Header.Get("Webhook-Id"))
			h.mu.Unlock()
			r := h.reply(n)
			if _, err := io.WriteString(c, r.raw); err != nil {
				return
			}
			if r.action == answerKeepAlive {
				continue
			}
			if r.action == answerThenHangUp {
				c.(*net.TCPConn).CloseWrite()
			}
			break
		}
	}
	// Whatever else the sender writes is discarded; EOF means it closed.
	_, err := io.Copy(io.Discard, br)
	h.sawClose(err)
}

// sawClose counts a connection the sender closed (a read ended with EOF
// or a reset), as opposed to one the test's end unblocked.
func (h *hostileSink) sawClose(err error) {
	if h.ended.Err() != nil {
		return
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		h.closedBySender.Add(1)
	}
}

func (h *hostileSink) seen() (keys, ids []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.keys...), append([]string(nil), h.ids...)
}

// eventually polls cond for up to 5 s: the sink sees a close a moment
// after the sender makes it.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); ; {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// transportGoroutines counts net/http's per-connection goroutines of
// client connections still open in this process.
func transportGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return strings.Count(string(buf), "net/http.(*persistConn)")
}

// head is a response's status line and header fields, without the blank
// line that ends them.
func head(code int, header ...string) string {
	var b strings.Builder
	b.WriteString("HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n")
	for i := 0; i < len(header); i += 2 {
		b.WriteString(header[i] + ": " + header[i+1] + "\r\n")
	}
	return b.String()
}

// TestHostileSinks sends the same message (one idempotency key) several
// times, as the runner's retries would, to receivers that misbehave, and
// checks what the runner relies on: each Send returns, bounded by the
// sender's Timeout (small here) and before the caller's deadline; the
// outcome, reason and Retry-After; how many requests the receiver saw; the
// same key on every one of them; no connection left open and no transport
// goroutine left once the sender is closed.
func TestHostileSinks(t *testing.T) {
	// A fixed clock, so HTTP-date Retry-After values are exact.
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	const (
		timeout = 300 * time.Millisecond
		sends   = 3
	)
	always := func(r sinkReply) func(int) sinkReply { return func(int) sinkReply { return r } }
	keepAlive := func(code int, header ...string) func(int) sinkReply {
		return always(sinkReply{head(code, append(header, "Content-Length", "0")...) + "\r\n", answerKeepAlive})
	}

	cases := []struct {
		name   string
		silent bool
		reply  func(n int) sinkReply
		want   channel.Result
		// requests is how many requests the sink reads for the sends; 0
		// for a silent sink.
		requests int
		// conns is how many connections the sender opens for the sends.
		conns int
	}{
		// Hangs.
		{name: "accepts and never reads nor answers", silent: true,
			want: channel.Result{Outcome: channel.Retry, Reason: "timeout"}, conns: sends},
		{name: "reads the request and never answers", reply: always(sinkReply{"", answerThenStall}),
			want: channel.Result{Outcome: channel.Retry, Reason: "timeout"}, requests: sends, conns: sends},
		{name: "200 headers then the body stalls",
			reply: always(sinkReply{head(200, "Content-Length", "100") + "\r\n{\"ok\":", answerThenStall}),
			// The receiver said 200: the message is delivered; the stalled
			// body costs Timeout and the connection, not a resend.
			want: channel.Result{Outcome: channel.Sent}, requests: sends, conns: sends},
		{name: "503 headers then the body stalls",
			reply: always(sinkReply{head(503, "Retry-After", "30", "Content-Length", "100") + "\r\nbusy", answerThenStall}),
			want:  channel.Result{Outcome: channel.Retry, Reason: "http 503", RetryAfter: 30 * time.Second}, requests: sends, conns: sends},
		{name: "status line then the headers stall",
			reply: always(sinkReply{"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n", answerThenStall}),
			want:  channel.Result{Outcome: channel.Retry, Reason: "timeout"}, requests: sends, conns: sends},

		{name: "102 Processing forever",
			reply: always(sinkReply{strings.Repeat("HTTP/1.1 102 Processing\r\n\r\n", 1000), answerThenStall}),
			want:  channel.Result{Outcome: channel.Retry, Reason: "timeout"}, requests: sends, conns: sends},

		// Fails forever: one request per send, on one kept-alive
		// connection.
		{name: "500 forever", reply: keepAlive(500),
			want: channel.Result{Outcome: channel.Retry, Reason: "http 500"}, requests: sends, conns: 1},
		{name: "503 forever without Retry-After", reply: keepAlive(503),
			want: channel.Result{Outcome: channel.Retry, Reason: "http 503"}, requests: sends, conns: 1},

		// Throttles: Retry-After is returned (the runner waits at least
		// that long), capped at channel.MaxRetryAfter.
		{name: "429 Retry-After seconds", reply: keepAlive(429, "Retry-After", "120"),
			want: channel.Result{Outcome: channel.Retry, Reason: "http 429", RetryAfter: 2 * time.Minute}, requests: sends, conns: 1},
		{name: "429 Retry-After HTTP-date", reply: keepAlive(429, "Retry-After", now.Add(90*time.Second).Format(http.TimeFormat)),
			want: channel.Result{Outcome: channel.Retry, Reason: "http 429", RetryAfter: 90 * time.Second}, requests: sends, conns: 1},
		{name: "429 Retry-After 1e9 seconds is capped", reply: keepAlive(429, "Retry-After", "1000000000"),
			want: channel.Result{Outcome: channel.Retry, Reason: "http 429", RetryAfter: channel.MaxRetryAfter}, requests: sends, conns: 1},
		{name: "429 Retry-After in year 9999 is capped", reply: keepAlive(429, "Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT"),
			want: channel.Result{Outcome: channel.Retry, Reason: "http 429", RetryAfter: channel.MaxRetryAfter}, requests: sends, conns: 1},
		{name: "429 Retry-After 1e9 in exponent form is not a delay", reply: keepAlive(429, "Retry-After", "1e9"),
			// RFC 9110 delay-seconds is digits only: ignored, so the
			// runner's own backoff applies.
			want: channel.Result{Outcome: channel.Retry, Reason: "http 429"}, requests: sends, conns: 1},
		{name: "503 Retry-After seconds", reply: keepAlive(503, "Retry-After", "7"),
			want: channel.Result{Outcome: channel.Retry, Reason: "http 503", RetryAfter: 7 * time.Second}, requests: sends, conns: 1},

		// Closes the connection mid-response.
		{name: "closes without answering", reply: always(sinkReply{"", answerThenHangUp}),
			want: channel.Result{Outcome: channel.Retry, Reason: "connection closed"}, requests: sends, conns: sends},
		{name: "closes mid status line", reply: always(sinkReply{"HTTP/1.1 50", answerThenHangUp}),
			// A truncated status line does not parse: a generic reason.
			want: channel.Result{Outcome: channel.Retry, Reason: "connection error"}, requests: sends, conns: sends},
		{name: "closes mid headers", reply: always(sinkReply{"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 60\r\n", answerThenHangUp}),
			// No complete response, so no Retry-After either.
			want: channel.Result{Outcome: channel.Retry, Reason: "connection closed"}, requests: sends, conns: sends},
		{name: "429 then closes mid body", reply: always(sinkReply{head(429, "Retry-After", "60", "Content-Length", "100") + "\r\nslow", answerThenHangUp}),
			want: channel.Result{Outcome: channel.Retry, Reason: "http 429", RetryAfter: time.Minute}, requests: sends, conns: sends},
		{name: "200 then closes mid body", reply: always(sinkReply{head(200, "Content-Length", "100") + "\r\n{\"ok\":", answerThenHangUp}),
			want: channel.Result{Outcome: channel.Sent}, requests: sends, conns: sends},
		{name: "closes mid chunked body", reply: always(sinkReply{head(500, "Transfer-Encoding", "chunked") + "\r\n5\r\nerr", answerThenHangUp}),
			want: channel.Result{Outcome: channel.Retry, Reason: "http 500"}, requests: sends, conns: sends},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sink := startHostileSink(t, c.silent, c.reply)
			s := newSender(t, Config{URL: sink.url(), Timeout: timeout, Now: func() time.Time { return now },
				SigningKeys: []string{newSigningKey(t)}, MaxConns: 2})
			m := message("run-7", "ana@example.com")
			for i := range sends {
				// The caller's deadline is far past Timeout: the sender's
				// own timeout must end every hang.
				ctx, cancel := context.WithTimeout(context.Background(), 20*timeout)
				res := s.Send(ctx, m)
				if ctx.Err() != nil {
					t.Errorf("send %d: returned after the caller's deadline", i+1)
				}
				cancel()
				if res != c.want {
					t.Errorf("send %d: Send = %+v, want %+v", i+1, res, c.want)
				}
				checkReason(t, res)
				if strings.Contains(res.Reason, "ana") || strings.Contains(res.Reason, "@") {
					t.Errorf("reason %q carries personal data", res.Reason)
				}
			}
			if n := int(sink.requests.Load()); n != c.requests {
				t.Errorf("sink read %d requests for %d sends, want %d", n, sends, c.requests)
			}
			if n := int(sink.accepted.Load()); n != c.conns {
				t.Errorf("sender opened %d connections for %d sends, want %d", n, sends, c.conns)
			}
			keys, ids := sink.seen()
			for i := range keys {
				if keys[i] != m.Key || ids[i] != m.Key {
					t.Errorf("request %d: Idempotency-Key %q, webhook-id %q, want both %q", i+1, keys[i], ids[i], m.Key)
				}
			}

			// A connection a failed send used is closed by that send; one
			// a receiver answered stays for reuse until Close.
			s.Close()
			if !eventually(func() bool { return sink.closedBySender.Load() == sink.accepted.Load() }) {
				t.Errorf("sender closed %d of %d connections", sink.closedBySender.Load(), sink.accepted.Load())
			}
			if !eventually(func() bool { return transportGoroutines() == 0 }) {
				t.Errorf("%d transport goroutines left after Close", transportGoroutines())
			}
		})
	}
}

// TestReceiverDropsRequest: a receiver that closes the connection without
// answering whenever it reads this message, after answering others on
// kept-alive connections. net/http's Transport resends such a request on
// its own (Idempotency-Key marks it idempotent), once per idle connection:
// before replayOnce, one Send here made 5 requests (4 idle connections and
// a new one). Now one Send makes at most 2 requests, with the same key,
// and the runner retries the rest later.
func TestReceiverDropsRequest(t *testing.T) {
	const conns = 4
	var primed sync.WaitGroup
	primed.Add(conns)
	sink := startHostileSink(t, false, func(n int) sinkReply {
		if n <= conns {
			// Hold each answer until all are read, so that every one
			// has its own connection, idle in the pool afterwards.
			primed.Done()
			primed.Wait()
			return sinkReply{head(204, "Content-Length", "0") + "\r\n", answerKeepAlive}
		}
		return sinkReply{"", answerThenHangUp}
	})
	s := newSender(t, Config{URL: sink.url(), Timeout: 2 * time.Second, MaxConns: conns})
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			if res := s.Send(context.Background(), message("run", "other-"+strconv.Itoa(i))); res.Outcome != channel.Sent {
				t.Errorf("priming Send = %+v", res)
			}
		})
	}
	wg.Wait()
	if n := sink.accepted.Load(); n != conns {
		t.Fatalf("%d connections after priming, want %d", n, conns)
	}

	m := message("run", "ana@example.com")
	for i := range 3 {
		before := sink.requests.Load()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res := s.Send(ctx, m)
		if ctx.Err() != nil {
			t.Errorf("send %d returned after the caller's deadline", i+1)
		}
		cancel()
		if want := (channel.Result{Outcome: channel.Retry, Reason: "connection closed"}); res != want {
			t.Errorf("send %d: Send = %+v, want %+v", i+1, res, want)
		}
		if n := sink.requests.Load() - before; n < 1 || n > 2 {
			t.Errorf("send %d: the receiver got the message %d times, want 1 or 2", i+1, n)
		}
	}
	keys, _ := sink.seen()
	for _, k := range keys[conns:] {
		if k != m.Key {
			t.Errorf("Idempotency-Key %q, want %q on every resend", k, m.Key)
		}
	}
	s.Close()
	if !eventually(func() bool { return sink.closedBySender.Load() == sink.accepted.Load() }) {
		t.Errorf("sender closed %d of %d connections", sink.closedBySender.Load(), sink.accepted.Load())
	}
}

// TestCallerDeadline: the caller's deadline, shorter than Timeout, ends a
// send to a receiver that never answers; that is a timeout, not a
// cancellation, and the connection is closed.
func TestCallerDeadline(t *testing.T) {
	sink := startHostileSink(t, false, func(int) sinkReply { return sinkReply{"", answerThenStall} })
	s := newSender(t, Config{URL: sink.url(), Timeout: MaxTimeout})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if res, want := s.Send(ctx, message("run", "c")), (channel.Result{Outcome: channel.Retry, Reason: "timeout"}); res != want {
		t.Errorf("Send = %+v, want %+v", res, want)
	}
	// A send that starts after the deadline does not connect.
	if res, want := s.Send(ctx, message("run", "c")), (channel.Result{Outcome: channel.Retry, Reason: "timeout"}); res != want {
		t.Errorf("Send after the deadline = %+v, want %+v", res, want)
	}
	if !eventually(func() bool { return sink.closedBySender.Load() == 1 && sink.accepted.Load() == 1 }) {
		t.Errorf("%d connections, %d closed by the sender, want 1 and 1", sink.accepted.Load(), sink.closedBySender.Load())
	}
}
