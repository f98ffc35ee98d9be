package email

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// conn is one SMTP connection, greeted (and authenticated) and ready for a
// transaction.
type conn struct {
	raw    net.Conn // the TCP connection, closed to abort any blocked I/O
	client *smtp.Client
	utf8   bool // the server offers SMTPUTF8
	// broken is set when the connection was closed under a transaction
	// (its context ended), so it must not go back to the pool.
	broken bool
}

// stage is the command a transaction failed at.
type stage uint8

const (
	stageMail stage = iota
	stageRcpt
	stageData
)

// quitTimeout bounds the QUIT exchange when the sender is closed.
const quitTimeout = 2 * time.Second

// dial connects, secures the connection as configured, greets, and
// authenticates. ctx bounds all of it.
func (s *Sender) dial(ctx context.Context) (*conn, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, err
	}
	// go-smtp sets its own deadlines per command (and clears them after),
	// so a deadline set here would not hold; closing the socket when ctx
	// ends unblocks whatever is waiting on it instead.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	c, err := s.handshake(ctx, raw)
	if !stop() {
		// ctx ended: raw is closed, whatever handshake returned.
		if c != nil {
			c.client.Close()
		}
		return nil, ctx.Err()
	}
	if err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

func (s *Sender) handshake(ctx context.Context, raw net.Conn) (*conn, error) {
	var nc net.Conn = raw
	if s.tlsMode == TLSModeTLS {
		tc := tls.Client(raw, s.tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, err
		}
		nc = tc
	}
	var client *smtp.Client
	if s.tlsMode == TLSModeStartTLS {
		var err error
		// Greets, EHLO, STARTTLS; the TLS handshake itself happens on the
		// next command (Hello below), so certificate errors surface there.
		if client, err = smtp.NewClientStartTLS(nc, s.tlsConfig); err != nil {
			// go-smtp has no sentinel for a server without STARTTLS.
			if strings.Contains(err.Error(), "support STARTTLS") {
				return nil, fail("starttls unsupported")
			}
			return nil, err
		}
	} else {
		client = smtp.NewClient(nc)
	}
	client.CommandTimeout = s.timeout
	client.SubmissionTimeout = s.timeout
	c := &conn{raw: raw, client: client}
	if err := client.Hello(s.hostname); err != nil {
		return c, err
	}
	if s.username != "" {
		// Belt and braces over New's check: credentials never go over a
		// plaintext connection unless configured for a loopback relay.
		if _, isTLS := client.TLSConnectionState(); !isTLS && !s.plaintextAuth {
			return c, fail("auth requires tls")
		}
		if ok, _ := client.Extension("AUTH"); !ok {
			return c, fail("auth unsupported")
		}
		if err := client.Auth(sasl.NewPlainClient("", s.username, s.password)); err != nil {
			return c, err
		}
	}
	c.utf8, _ = client.Extension("SMTPUTF8")
	return c, nil
}

// deliver runs one transaction for out. It returns the stage it failed at
// and the error; the connection is still in a transaction then (reset or
// close it).
func (c *conn) deliver(ctx context.Context, from string, out *outgoing) (stage, error) {
	stop := context.AfterFunc(ctx, func() { c.raw.Close() })
	defer func() {
		if !stop() {
			c.broken = true
		}
	}()

	var opts *smtp.MailOptions
	if out.utf8 {
		opts = &smtp.MailOptions{UTF8: true}
	}
	if err := c.client.Mail(from, opts); err != nil {
		return stageMail, err
	}
	if err := c.client.Rcpt(out.rcpt, nil); err != nil {
		return stageRcpt, err
	}
	w, err := c.client.Data()
	if err != nil {
		return stageData, err
	}
	if out.sig != "" {
		if _, err := io.WriteString(w, out.sig); err != nil {
			return stageData, err
		}
	}
	if _, err := w.Write(out.data.Bytes()); err != nil {
		return stageData, err
	}
	return stageData, w.Close()
}

// reset ends a failed transaction (RSET) so the connection can carry the
// next one.
func (c *conn) reset(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { c.raw.Close() })
	err := c.client.Reset()
	if !stop() {
		c.broken = true
		return ctx.Err()
	}
	return err
}

// quit says goodbye and closes; a server that does not answer in
// quitTimeout is not waited for.
func (c *conn) quit() {
	c.client.CommandTimeout = quitTimeout
	if c.client.Quit() != nil {
		c.client.Close()
	}
}

func (c *conn) close() { c.client.Close() }
