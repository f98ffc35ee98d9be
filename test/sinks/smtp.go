package sinks

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net"
	"net/mail"
	"regexp"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Mail is one message the SMTP sink accepted for one recipient.
type Mail struct {
	// From and To are the envelope (MAIL FROM, RCPT TO), not the headers.
	From string `json:"from"`
	To   string `json:"to"`
	// IdempotencyKey is the X-Retention-Idempotency-Key header.
	IdempotencyKey string `json:"idempotencyKey"`
	MessageID      string `json:"messageId"`
	// Subject is decoded from RFC 2047 encoded-words.
	Subject string `json:"subject"`
	// ListUnsubscribe is the first http(s) URL of the List-Unsubscribe
	// header, "" if it has none.
	ListUnsubscribe string `json:"listUnsubscribe"`
	// Header and Raw are shared by every recipient of one DATA and by
	// every copy Messages returns: read them, do not modify them.
	Header   mail.Header `json:"header"`
	Raw      []byte      `json:"-"`
	Received time.Time   `json:"received"`
}

// SMTPStats summarizes what an SMTP sink accepted.
type SMTPStats struct {
	// Received counts Mails: one per recipient per DATA.
	Received int `json:"received"`
	// Unique counts distinct idempotency keys (Message-ID for a mail
	// without one); a mail with neither counts on its own.
	Unique int `json:"unique"`
}

// SMTP is a real SMTP server over plain TCP that accepts every sender,
// recipient and well-formed message without authentication, and records
// them. It is safe for concurrent use.
type SMTP struct {
	srv *smtp.Server
	ln  net.Listener

	mu    sync.Mutex
	mails []Mail
}

// StartSMTP listens on addr (such as "127.0.0.1:0") and serves SMTP
// until Close.
func StartSMTP(addr string) (*SMTP, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("smtp sink: %w", err)
	}
	s := &SMTP{ln: ln}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &smtpSession{sink: s}, nil
	}))
	s.srv.Domain = "localhost"
	// Raw bytes are stored as sent, so UTF-8 addresses need no support;
	// advertising it lets the operator behave as with a real relay.
	s.srv.EnableSMTPUTF8 = true
	s.srv.MaxMessageBytes = maxBody
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	go func() { _ = s.srv.Serve(ln) }() // returns once Close closes ln
	return s, nil
}

// Addr is the listening address, "host:port".
func (s *SMTP) Addr() string { return s.ln.Addr().String() }

// Host is the listening IP address.
func (s *SMTP) Host() string { return s.ln.Addr().(*net.TCPAddr).IP.String() }

// Port is the listening port.
func (s *SMTP) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Close stops listening and closes open connections.
func (s *SMTP) Close() error {
	if err := s.srv.Close(); err != nil {
		return fmt.Errorf("closing smtp sink: %w", err)
	}
	return nil
}

// Messages returns a copy of every Mail accepted, in arrival order.
func (s *SMTP) Messages() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append(make([]Mail, 0, len(s.mails)), s.mails...)
}

// Stats counts the Mails accepted so far.
func (s *SMTP) Stats() SMTPStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := SMTPStats{Received: len(s.mails)}
	seen := map[string]bool{}
	for _, m := range s.mails {
		key := "key " + m.IdempotencyKey // prefixed: never equal to a Message-ID
		switch {
		case m.IdempotencyKey == "" && m.MessageID == "":
			st.Unique++
			continue
		case m.IdempotencyKey == "":
			key = "id " + m.MessageID
		}
		if !seen[key] {
			seen[key] = true
			st.Unique++
		}
	}
	return st
}

// smtpSession collects one connection's envelope.
type smtpSession struct {
	sink *SMTP
	from string
	to   []string
}

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

// Data parses the message and records it once per recipient; a message
// net/mail cannot parse is rejected, so the sender sees its bug.
func (s *smtpSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("reading message: %w", err)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
			Message: "malformed message: " + err.Error()}
	}
	h := msg.Header
	subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	if err != nil {
		subject = h.Get("Subject") // an unknown charset: keep it as sent
	}
	m := Mail{
		From:            s.from,
		IdempotencyKey:  h.Get("X-Retention-Idempotency-Key"),
		MessageID:       h.Get("Message-ID"),
		Subject:         subject,
		ListUnsubscribe: firstHTTPURL(h.Get("List-Unsubscribe")),
		Header:          h,
		Raw:             raw,
		Received:        time.Now(),
	}
	s.sink.mu.Lock()
	defer s.sink.mu.Unlock()
	for _, to := range s.to {
		m.To = to
		s.sink.mails = append(s.sink.mails, m)
	}
	return nil
}

func (s *smtpSession) Reset() { s.from, s.to = "", nil }

func (s *smtpSession) Logout() error { return nil }

// bracketedHTTP matches one <http(s)://…> of a List-Unsubscribe header
// (RFC 2369), which lists URLs in angle brackets, mailto: ones included.
var bracketedHTTP = regexp.MustCompile(`(?i)<\s*(https?://[^>\s]*)\s*>`)

// firstHTTPURL returns the first bracketed http(s) URL in v, or "".
func firstHTTPURL(v string) string {
	if m := bracketedHTTP.FindStringSubmatch(v); m != nil {
		return m[1]
	}
	return ""
}
