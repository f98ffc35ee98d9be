package email

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/outreach/channel"
)

// Hostile SMTP servers (issue #19), on a raw TCP listener speaking SMTP
// lines, for what go-smtp's server cannot imitate: a DATA command refused
// before the message, a connection dropped right after the greeting or
// halfway through the message, a reply that never comes.

// Special replies of a scripted server.
const (
	// hangUp closes the server's sending direction (the sender reads EOF)
	// and waits for the sender to close its end.
	hangUp = "<hang up>"
	// stall answers nothing and waits for the sender to close.
	stall = "<stall>"
)

// smtpEvent is one thing a scripted server answers.
type smtpEvent struct {
	// verb is GREET (a new connection), a command (EHLO, MAIL, RCPT,
	// DATA, RSET, QUIT, …), HEADERS (the message's header section has
	// arrived, its body not yet: mid-DATA) or "." (the whole message).
	verb string
	// rcpt is the recipient of the transaction under way, if any.
	rcpt string
	// n counts this verb's events on the server so far, this one
	// included.
	n int
}

// scriptedSMTP is an SMTP server whose every reply comes from answer ("",
// the usual positive reply). Every connection ends with the server
// reading until the sender closes it, so closedBySender counts the
// connections the sender did not leak.
type scriptedSMTP struct {
	addr   *net.TCPAddr
	answer func(smtpEvent) string

	accepted       atomic.Int64
	closedBySender atomic.Int64
	ended          context.Context
	wg             sync.WaitGroup

	mu     sync.Mutex
	counts map[string]int
	rcpts  []string // every RCPT TO address, in order
	data   [][]byte // every message, or as much of it as the server read
}

func startScriptedSMTP(t *testing.T, answer func(smtpEvent) string) *scriptedSMTP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ended, end := context.WithCancel(context.Background())
	ss := &scriptedSMTP{addr: ln.Addr().(*net.TCPAddr), answer: answer, ended: ended, counts: map[string]int{}}
	ss.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ss.accepted.Add(1)
			ss.wg.Go(func() { ss.serve(c) })
		}
	})
	t.Cleanup(func() {
		end()
		ln.Close()
		ss.wg.Wait()
	})
	return ss
}

func (ss *scriptedSMTP) config() Config {
	return Config{
		Host: ss.addr.IP.String(), Port: ss.addr.Port, TLSMode: TLSModeNone,
		From: "Shop <hello@shop.example>", RelaySigns: true, Hostname: "sender.test",
	}
}

// reply is answer's reply to ev, or def when answer has none.
func (ss *scriptedSMTP) reply(ev smtpEvent, def string) string {
	ss.mu.Lock()
	ss.counts[ev.verb]++
	ev.n = ss.counts[ev.verb]
	ss.mu.Unlock()
	if r := ss.answer(ev); r != "" {
		return r
	}
	return def
}

func (ss *scriptedSMTP) count(verb string) int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.counts[verb]
}

func (ss *scriptedSMTP) rcptsTo(addr string) int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	n := 0
	for _, r := range ss.rcpts {
		if r == addr {
			n++
		}
	}
	return n
}

func (ss *scriptedSMTP) messages() [][]byte {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return append([][]byte(nil), ss.data...)
}

func (ss *scriptedSMTP) serve(c net.Conn) {
	stop := context.AfterFunc(ss.ended, func() { c.Close() })
	defer stop()
	defer c.Close()
	br := bufio.NewReader(c)
	// send writes a reply; false means the conversation is over (the
	// server hung up or stalls), and the rest waits for the sender to
	// close.
	send := func(r string) bool {
		switch r {
		case hangUp:
			c.(*net.TCPConn).CloseWrite()
			return false
		case stall:
			return false
		}
		_, err := io.WriteString(c, strings.ReplaceAll(r, "\n", "\r\n")+"\r\n")
		return err == nil
	}
	defer func() {
		// Whatever else the sender writes is discarded; EOF means it
		// closed.
		_, err := io.Copy(io.Discard, br)
		if ss.ended.Err() == nil && (err == nil || errors.Is(err, syscall.ECONNRESET)) {
			ss.closedBySender.Add(1)
		}
	}()

	if !send(ss.reply(smtpEvent{verb: "GREET"}, "220 mx.test ESMTP")) {
		return
	}
	var rcpt string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		verb = strings.ToUpper(verb)
		ev := smtpEvent{verb: verb, rcpt: rcpt}
		var r string
		switch verb {
		case "EHLO", "HELO":
			r = ss.reply(ev, "250-mx.test\n250 8BITMIME")
		case "MAIL":
			r = ss.reply(ev, "250 2.1.0 ok")
		case "RCPT":
			addr := arg // TO:<addr>
			if i, j := strings.IndexByte(arg, '<'), strings.IndexByte(arg, '>'); 0 <= i && i < j {
				addr = arg[i+1 : j]
			}
			ss.mu.Lock()
			ss.rcpts = append(ss.rcpts, addr)
			ss.mu.Unlock()
			ev.rcpt = addr
			if r = ss.reply(ev, "250 2.1.5 ok"); strings.HasPrefix(r, "250") {
				rcpt = addr
			}
		case "DATA":
			if r = ss.reply(ev, "354 go ahead"); strings.HasPrefix(r, "354") {
				if !send(r) {
					return
				}
				var ok bool
				if r, ok = ss.readMessage(br, rcpt, send); !ok {
					return
				}
			}
		case "RSET":
			rcpt = ""
			r = ss.reply(ev, "250 2.0.0 ok")
		case "QUIT":
			send(ss.reply(ev, "221 2.0.0 bye"))
			return
		default:
			r = ss.reply(ev, "502 5.5.2 not implemented")
		}
		if !send(r) {
			return
		}
	}
}

// readMessage reads DATA's message up to the lone dot and returns the
// reply to it; false when the server hung up or stalls meanwhile.
func (ss *scriptedSMTP) readMessage(br *bufio.Reader, rcpt string, send func(string) bool) (string, bool) {
	var msg bytes.Buffer
	keep := func() {
		ss.mu.Lock()
		ss.data = append(ss.data, msg.Bytes())
		ss.mu.Unlock()
	}
	inHeader := true
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			keep()
			return "", false
		}
		if line == ".\r\n" {
			keep()
			return ss.reply(smtpEvent{verb: ".", rcpt: rcpt}, "250 2.0.0 queued"), true
		}
		msg.WriteString(line)
		if inHeader && line == "\r\n" {
			inHeader = false
			if r := ss.reply(smtpEvent{verb: "HEADERS", rcpt: rcpt}, ""); r != "" {
				keep()
				return "", send(r)
			}
		}
	}
}

// TestHostileSMTP sends the same message (one idempotency key) twice, as
// the runner's retries would, to servers that refuse or drop it, then
// another customer's message, and checks what the runner relies on: each
// Send returns, bounded by Timeout and before the caller's deadline; the
// outcome and reason (no address, though every refusal here quotes it);
// how many connections and recipients the server saw; the same
// Message-ID and idempotency key on every copy of the message the server
// read; and no connection left open once the sender is closed.
func TestHostileSMTP(t *testing.T) {
	const (
		victim = "victim@customer.example"
		other  = "bob@customer.example"
		sends  = 2
	)
	// forVictim answers r to the victim's transaction only.
	forVictim := func(verb, r string) func(smtpEvent) string {
		return func(ev smtpEvent) string {
			if ev.verb == verb && ev.rcpt == victim {
				return r
			}
			return ""
		}
	}
	// always answers r to every verb event.
	always := func(verb, r string) func(smtpEvent) string {
		return func(ev smtpEvent) string {
			if ev.verb == verb {
				return r
			}
			return ""
		}
	}
	fail := func(reason string) channel.Result { return channel.Result{Outcome: channel.Fail, Reason: reason} }
	retry := func(reason string) channel.Result { return channel.Result{Outcome: channel.Retry, Reason: reason} }

	tests := []struct {
		name   string
		answer func(smtpEvent) string
		// timeout is the sender's Timeout (5 s if 0).
		timeout time.Duration
		want    channel.Result
		// otherSent: the other customer's message, sent last, is
		// delivered (else it is not tried: the server fails everything).
		otherSent bool
		// conns is how many connections the sends opened; rcpts how many
		// RCPT TO the victim's address got; data how many copies of the
		// victim's message (whole or cut) the server read.
		conns, rcpts, data int
	}{
		// Recipient refused: the connection stays in step (RSET) and
		// carries the next message.
		{name: "RCPT 550 permanent", answer: forVictim("RCPT", "550 5.1.1 <"+victim+">: no such user"),
			want: fail("smtp 550 5.1.1"), otherSent: true, conns: 1, rcpts: sends},
		{name: "RCPT 450 temporary", answer: forVictim("RCPT", "450 4.2.0 <"+victim+">: greylisted, try later"),
			want: retry("smtp 450 4.2.0"), otherSent: true, conns: 1, rcpts: sends},
		{name: "RCPT 421 closing the connection", answer: forVictim("RCPT", "421 4.7.0 <"+victim+"> too many errors, closing"),
			// 421 means the server closes: the sender drops the connection.
			want: retry("smtp 421 4.7.0"), otherSent: true, conns: sends + 1, rcpts: sends},

		// Refused at DATA: the DATA command itself, or the message.
		{name: "DATA command 554 permanent", answer: forVictim("DATA", "554 5.5.1 no valid recipients for <"+victim+">"),
			want: fail("smtp 554 5.5.1"), otherSent: true, conns: 1, rcpts: sends},
		{name: "DATA command 451 temporary", answer: forVictim("DATA", "451 4.3.0 queue full"),
			want: retry("smtp 451 4.3.0"), otherSent: true, conns: 1, rcpts: sends},
		{name: "message 550 permanent", answer: forVictim(".", "550 5.7.1 message to <"+victim+"> refused as spam"),
			want: fail("smtp 550 5.7.1"), otherSent: true, conns: 1, rcpts: sends, data: sends},
		{name: "message 451 temporary", answer: forVictim(".", "451 4.7.1 <"+victim+"> try again later"),
			want: retry("smtp 451 4.7.1"), otherSent: true, conns: 1, rcpts: sends, data: sends},

		// Drops the connection.
		{name: "hangs up after the greeting", answer: always("EHLO", hangUp),
			want: retry("connection error"), conns: sends},
		{name: "hangs up instead of greeting", answer: always("GREET", hangUp),
			want: retry("connection error"), conns: sends},
		{name: "hangs up at MAIL", answer: always("MAIL", hangUp),
			// A new connection each: one that fails at MAIL is redialled
			// only when it came from the pool (see lostWhileIdle).
			want: retry("connection error"), conns: sends},
		{name: "hangs up mid-DATA", answer: forVictim("HEADERS", hangUp),
			want: retry("connection error"), otherSent: true, conns: sends + 1, rcpts: sends, data: sends},
		{name: "hangs up after the message, before the reply", answer: forVictim(".", hangUp),
			// The server may have taken it: the resend carries the same
			// Message-ID for the receiver to drop.
			want: retry("connection error"), otherSent: true, conns: sends + 1, rcpts: sends, data: sends},

		// Never answers: Timeout ends the send and the connection.
		{name: "stalls at RCPT", answer: forVictim("RCPT", stall), timeout: 300 * time.Millisecond,
			want: retry("timeout"), otherSent: true, conns: sends + 1, rcpts: sends},
		{name: "stalls mid-DATA", answer: forVictim("HEADERS", stall), timeout: 300 * time.Millisecond,
			want: retry("timeout"), otherSent: true, conns: sends + 1, rcpts: sends, data: sends},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := startScriptedSMTP(t, tt.answer)
			cfg := ss.config()
			cfg.Timeout = tt.timeout
			if cfg.Timeout == 0 {
				cfg.Timeout = 5 * time.Second
			}
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()

			m := testMessage(channel.Key("run-7", "c-1"), victim)
			m.Text = "Your code is SECRET-BODY-42.\n"
			for i := range sends {
				ctx, cancel := context.WithTimeout(t.Context(), cfg.Timeout+10*time.Second)
				got := s.Send(ctx, m)
				if ctx.Err() != nil {
					t.Errorf("send %d returned after the caller's deadline", i+1)
				}
				cancel()
				if got != tt.want {
					t.Errorf("send %d: Send = %+v, want %+v", i+1, got, tt.want)
				}
				if strings.Contains(got.Reason, "@") || strings.Contains(got.Reason, "victim") || strings.Contains(got.Reason, "SECRET") {
					t.Errorf("reason %q carries personal data", got.Reason)
				}
			}
			if tt.otherSent {
				if got := s.Send(t.Context(), testMessage(channel.Key("run-7", "c-2"), other)); got.Outcome != channel.Sent {
					t.Errorf("other customer's Send = %+v, want sent", got)
				}
			}

			if n := ss.accepted.Load(); n != int64(tt.conns) {
				t.Errorf("%d connections, want %d", n, tt.conns)
			}
			if victimRcpts := ss.rcptsTo(victim); victimRcpts != tt.rcpts {
				t.Errorf("server got RCPT TO the victim %d times, want %d", victimRcpts, tt.rcpts)
			}
			var copies int
			for _, data := range ss.messages() {
				msg, err := mail.ReadMessage(bytes.NewReader(data))
				if err != nil {
					t.Fatalf("message header: %v\n%s", err, data)
				}
				if msg.Header.Get("X-Retention-Idempotency-Key") != m.Key {
					continue // the other customer's
				}
				copies++
				if id, want := msg.Header.Get("Message-Id"), messageID(m.Key, "shop.example"); id != want {
					t.Errorf("copy %d: Message-ID %q, want %q on every resend", copies, id, want)
				}
			}
			if copies != tt.data {
				t.Errorf("server read %d copies of the message, want %d", copies, tt.data)
			}

			// Connections a failed send used are closed by it; the one
			// kept for reuse is closed (QUIT) by Close.
			s.Close()
			if !eventually(func() bool { return ss.closedBySender.Load() == ss.accepted.Load() }) {
				t.Errorf("sender closed %d of %d connections", ss.closedBySender.Load(), ss.accepted.Load())
			}
		})
	}
}

// TestIdleConnectionLost: the server hangs up at MAIL on a connection
// from the pool. That one send dials once more (nothing was accepted, so
// no duplicate), and no more than once.
func TestIdleConnectionLost(t *testing.T) {
	ss := startScriptedSMTP(t, func(ev smtpEvent) string {
		if ev.verb == "MAIL" && ev.n > 1 {
			return hangUp
		}
		return ""
	})
	s := newSender(t, ss.config())
	if got := s.Send(t.Context(), testMessage("run/c1", "ann@customer.example")); got.Outcome != channel.Sent {
		t.Fatalf("first Send = %+v", got)
	}
	want := channel.Result{Outcome: channel.Retry, Reason: "connection error"}
	if got := s.Send(t.Context(), testMessage("run/c2", "ann@customer.example")); got != want {
		t.Errorf("Send on the lost connection = %+v, want %+v", got, want)
	}
	// 1 (the kept one, lost) + 1 (dialled once more).
	if n, mails := ss.accepted.Load(), ss.count("MAIL"); n != 2 || mails != 3 {
		t.Errorf("%d connections and %d MAIL commands, want 2 and 3", n, mails)
	}
	s.Close()
	if !eventually(func() bool { return ss.closedBySender.Load() == ss.accepted.Load() }) {
		t.Errorf("sender closed %d of %d connections", ss.closedBySender.Load(), ss.accepted.Load())
	}
}

// TestCallerDeadline: the caller's deadline, shorter than Timeout, ends a
// send the server never answers; that is a timeout, not a cancellation,
// and the connection is closed.
func TestCallerDeadline(t *testing.T) {
	ss := startScriptedSMTP(t, func(ev smtpEvent) string {
		if ev.verb == "RCPT" {
			return stall
		}
		return ""
	})
	cfg := ss.config()
	cfg.Timeout = time.Minute
	s := newSender(t, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	want := channel.Result{Outcome: channel.Retry, Reason: "timeout"}
	if got := s.Send(ctx, testMessage("run/c1", "ann@customer.example")); got != want {
		t.Errorf("Send = %+v, want %+v", got, want)
	}
	if !eventually(func() bool { return ss.accepted.Load() == 1 && ss.closedBySender.Load() == 1 }) {
		t.Errorf("%d connections, %d closed by the sender, want 1 and 1", ss.accepted.Load(), ss.closedBySender.Load())
	}
}

// eventually polls cond for up to 5 s: the server sees a close a moment
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
