// Package email is the SMTP outreach channel: it renders a channel.Message
// as a MIME email (text, or text and HTML alternatives), signs it with DKIM
// unless the relay does, and delivers it over a small pool of kept-alive
// SMTP connections.
//
// Each Send is one SMTP transaction (MAIL, RCPT, DATA) on a pooled
// connection. A reply that rejects the message (4xx, 5xx) leaves the
// connection in step with the server, so it is reset (RSET) and kept; any
// other failure drops the connection and the next Send dials a new one.
// Send never retries a message by itself (the runner does), with one
// exception that cannot duplicate anything: when a pooled connection turns
// out to have been closed by the server while idle (the MAIL command fails
// before the server accepted anything), Send dials once more and sends on
// the new connection.
//
// Outcomes and their reasons, none of which carries personal data (the
// server's reply text is left out because it often echoes the address):
//
//   - accepted: Sent.
//   - a 4xx reply to MAIL, RCPT or DATA: Retry "smtp 451 4.3.0" (reply
//     code and enhanced code); a 5xx reply: Fail "smtp 550 5.1.1". The
//     same goes for replies while connecting (a wrong password is Fail
//     "smtp 535 5.7.8").
//   - dial, connection and protocol errors: Retry "connection error";
//     Timeout passed: Retry "timeout"; ctx cancelled: Retry "cancelled".
//   - configuration problems, which fail every message alike: Fail "tls"
//     (certificate does not verify, server does not speak TLS), "starttls
//     unsupported", "auth unsupported", "smtputf8 unsupported" (a UTF-8
//     address and a server without SMTPUTF8).
//   - messages that cannot be sent: Fail "invalid address", "invalid
//     subject" (CR or LF: header injection), "invalid key", "invalid
//     unsubscribe url" (not https, or not header-safe).
//
// Every message carries a Message-ID derived only from the idempotency key
// and the From domain, so a resend after a crash has the same Message-ID and
// receivers that deduplicate on it show the message once.
package email

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	netmail "net/mail"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/retention-dev/retention-operator/internal/outreach/channel"
)

// TLSMode is how the connection to the SMTP server is secured; the values
// are those of the Channel resource's tlsMode.
type TLSMode string

const (
	// TLSModeNone sends in clear text. Meant for a relay on the same host
	// or pod (a sidecar); credentials are only sent to a loopback host.
	TLSModeNone TLSMode = "None"
	// TLSModeStartTLS connects in clear text and upgrades with STARTTLS
	// (usually port 587). STARTTLS is required, not opportunistic: a
	// server that does not offer it fails every message with reason
	// "starttls unsupported".
	TLSModeStartTLS TLSMode = "StartTLS"
	// TLSModeTLS speaks TLS from the first byte (implicit TLS, usually
	// port 465).
	TLSModeTLS TLSMode = "TLS"
)

// Defaults of Config.
const (
	DefaultPort     = 587
	DefaultTLSPort  = 465
	DefaultTimeout  = 30 * time.Second
	DefaultMaxConns = 4
	DefaultHostname = "localhost"
)

// Config configures a Sender.
type Config struct {
	// Host is the SMTP server's host name or IP address.
	Host string
	// Port is the SMTP server's port; DefaultPort (587) if 0, or
	// DefaultTLSPort (465) with TLSModeTLS.
	Port int
	// TLSMode secures the connection; TLSModeStartTLS if empty.
	TLSMode TLSMode
	// From is the sender, an RFC 5322 address such as
	// "Shop <hello@shop.example>". Its address is also the envelope
	// sender (MAIL FROM), and its domain, which must be ASCII (IDNA
	// domains in their xn-- form), is the right-hand side of every
	// Message-ID.
	From string
	// Username and Password authenticate with AUTH PLAIN when Username is
	// set. Credentials are only ever sent over TLS, except with
	// TLSModeNone to a loopback Host ("localhost", 127.0.0.0/8, ::1),
	// where nothing leaves the machine; New rejects any other plaintext
	// configuration with credentials.
	Username string
	Password string
	// TLSConfig, if set, is the client TLS configuration (e.g. RootCAs for
	// a private CA). It is cloned; its ServerName defaults to Host. A
	// certificate that does not verify fails every message with reason
	// "tls" (a configuration problem, not worth retrying).
	TLSConfig *tls.Config
	// Timeout bounds each Send: waiting for a pooled connection, dialling
	// and the whole transaction; DefaultTimeout (30s) if 0.
	Timeout time.Duration
	// MaxConns is the size of the connection pool, which is also
	// Concurrency(); DefaultMaxConns (4) if 0.
	MaxConns int
	// DKIM, if set, signs every message (relaxed/relaxed, SHA-256).
	// Exactly one of DKIM and RelaySigns must be set: RFC 8058 one-click
	// unsubscribe only counts when List-Unsubscribe is signed, and large
	// receivers reject unsigned bulk mail.
	DKIM *DKIMConfig
	// RelaySigns declares that the SMTP relay signs outgoing mail with
	// DKIM (as most email service providers do) so this sender does not;
	// the relay must then sign List-Unsubscribe and List-Unsubscribe-Post.
	// DKIM must be nil when it is set.
	RelaySigns bool
	// UnsubscribeMailto, if set, is an address (e.g.
	// "unsubscribe@shop.example", with or without "mailto:") added to
	// List-Unsubscribe after the message's https URL.
	UnsubscribeMailto string
	// Now returns the time for the Date header; time.Now if nil.
	Now func() time.Time
	// Hostname is the name this client gives in EHLO; DefaultHostname if
	// empty. With TLSModeStartTLS the EHLO before STARTTLS always says
	// "localhost" (go-smtp offers no way to set it before the upgrade);
	// the EHLO after the upgrade, which is the one that counts, says
	// Hostname.
	Hostname string
}

// DKIMConfig is the key messages are signed with.
type DKIMConfig struct {
	// Domain is the signing domain (d=); for DMARC alignment it should
	// be From's domain or its organizational domain.
	Domain string
	// Selector is the key's selector (s=): the public key is published
	// at <Selector>._domainkey.<Domain>.
	Selector string
	// PrivateKeyPEM is the private key, PEM-encoded: an RSA key (at
	// least 1024 bits, 2048 recommended) as PKCS#1 ("RSA PRIVATE KEY") or
	// PKCS#8 ("PRIVATE KEY"), or an Ed25519 key as PKCS#8.
	PrivateKeyPEM []byte
}

// Sender sends messages over SMTP. It implements channel.Sender.
type Sender struct {
	addr          string
	tlsMode       TLSMode
	tlsConfig     *tls.Config
	hostname      string
	username      string
	password      string
	plaintextAuth bool // credentials may go over a plaintext connection
	timeout       time.Duration
	now           func() time.Time

	envelopeFrom string // MAIL FROM address
	fromHeader   string // From header value
	fromDomain   string // Message-ID right-hand side
	mailto       string // List-Unsubscribe mailto address, "" if none
	dkim         *dkim.SignOptions

	// permits bounds the sends on the wire, and with them the
	// connections: a send holds a permit while it uses a connection, and
	// dials only when no idle connection is left, so there are never more
	// than cap(permits) connections.
	permits chan struct{}
	mu      sync.Mutex // guards idle and closed
	// idle are the connections no send is using, most recently used last:
	// sends take from the end, so the pool reuses warm connections and
	// dials more only when sends overlap.
	idle   []*conn
	closed bool
}

var _ channel.Sender = (*Sender)(nil)

// New checks cfg and returns a Sender. It does not connect: connections are
// dialled by the first sends that need them.
func New(cfg Config) (*Sender, error) {
	host := cfg.Host
	if host == "" || strings.ContainsAny(host, " \t\r\n/") {
		return nil, fmt.Errorf("email: invalid host %q", host)
	}
	mode := cfg.TLSMode
	if mode == "" {
		mode = TLSModeStartTLS
	}
	port := cfg.Port
	switch {
	case port == 0 && mode == TLSModeTLS:
		port = DefaultTLSPort
	case port == 0:
		port = DefaultPort
	case port < 0 || port > 65535:
		return nil, fmt.Errorf("email: invalid port %d", port)
	}
	switch mode {
	case TLSModeNone, TLSModeStartTLS, TLSModeTLS:
	default:
		return nil, fmt.Errorf("email: invalid TLS mode %q (want None, StartTLS or TLS)", mode)
	}
	s := &Sender{
		addr:     net.JoinHostPort(host, strconv.Itoa(port)),
		tlsMode:  mode,
		hostname: cfg.Hostname,
		username: cfg.Username,
		password: cfg.Password,
		timeout:  cfg.Timeout,
		now:      cfg.Now,
	}
	if s.hostname == "" {
		s.hostname = DefaultHostname
	}
	if strings.ContainsAny(s.hostname, " \t\r\n") {
		return nil, fmt.Errorf("email: invalid hostname %q", s.hostname)
	}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	} else if s.timeout < 0 {
		return nil, fmt.Errorf("email: negative timeout %v", s.timeout)
	}
	if s.now == nil {
		s.now = time.Now
	}
	maxConns := cfg.MaxConns
	if maxConns == 0 {
		maxConns = DefaultMaxConns
	} else if maxConns < 0 {
		return nil, fmt.Errorf("email: negative MaxConns %d", maxConns)
	}

	if cfg.Password != "" && cfg.Username == "" {
		return nil, errors.New("email: Password set without Username")
	}
	if cfg.Username != "" && mode == TLSModeNone {
		if !isLoopback(host) {
			return nil, fmt.Errorf("email: refusing to send credentials in clear text to %s: use StartTLS or TLS (TLS mode None allows credentials only to a loopback host)", host)
		}
		s.plaintextAuth = true
	}
	if mode != TLSModeNone {
		if cfg.TLSConfig != nil {
			s.tlsConfig = cfg.TLSConfig.Clone()
		} else {
			s.tlsConfig = &tls.Config{}
		}
		if s.tlsConfig.ServerName == "" {
			s.tlsConfig.ServerName = host
		}
		if s.tlsConfig.MinVersion == 0 {
			s.tlsConfig.MinVersion = tls.VersionTLS12
		}
	}

	from, err := netmail.ParseAddress(cfg.From)
	if err != nil || strings.ContainsAny(cfg.From, "\r\n") {
		return nil, fmt.Errorf("email: invalid From %q", cfg.From)
	}
	domain, ok := asciiAddrSpec(from.Address)
	if !ok {
		return nil, fmt.Errorf("email: invalid From address %q (want an ASCII dot-atom address such as hello@shop.example)", from.Address)
	}
	s.envelopeFrom = from.Address
	s.fromHeader = from.String()
	s.fromDomain = domain

	if cfg.UnsubscribeMailto != "" {
		mailto := strings.TrimPrefix(cfg.UnsubscribeMailto, "mailto:")
		if _, ok := asciiAddrSpec(mailto); !ok {
			return nil, fmt.Errorf("email: invalid UnsubscribeMailto %q (want an ASCII address such as unsubscribe@shop.example)", cfg.UnsubscribeMailto)
		}
		s.mailto = mailto
	}

	switch {
	case cfg.DKIM != nil && cfg.RelaySigns:
		return nil, errors.New("email: DKIM and RelaySigns are exclusive: either this sender signs or the relay does")
	case cfg.DKIM == nil && !cfg.RelaySigns:
		return nil, errors.New("email: set DKIM, or RelaySigns if the relay signs: unsigned mail breaks one-click unsubscribe (RFC 8058) and is rejected by large receivers")
	case cfg.DKIM != nil:
		s.dkim, err = newSignOptions(cfg.DKIM)
		if err != nil {
			return nil, err
		}
	}

	s.permits = make(chan struct{}, maxConns)
	s.idle = make([]*conn, 0, maxConns)
	return s, nil
}

// Concurrency is the connection pool's size (Config.MaxConns).
func (s *Sender) Concurrency() int { return cap(s.permits) }

// Send delivers one message; the package comment lists its results.
func (s *Sender) Send(ctx context.Context, m *channel.Message) channel.Result {
	if ctx.Err() != nil {
		return ctxResult(ctx)
	}
	// Rendering and signing come before taking a connection: they cost CPU
	// (an RSA signature most of all) and need no connection.
	out, res := s.compose(m)
	if out == nil {
		return res
	}
	defer out.free()

	sendCtx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	select {
	case s.permits <- struct{}{}:
	case <-sendCtx.Done():
		return ctxResult(ctx)
	}
	c, closed := s.takeIdle()
	if closed {
		<-s.permits
		return retry("sender closed")
	}
	// The loop runs twice at most (see lostWhileIdle); every return puts
	// the connection back (nil when dropped) and with it the permit.
	reused := c != nil
	for {
		if c == nil {
			var err error
			if c, err = s.dial(sendCtx); err != nil {
				s.putBack(nil)
				return classifyError(ctx, sendCtx, err)
			}
		}
		if out.utf8 && !c.utf8 {
			s.putBack(c)
			return failResult("smtputf8 unsupported")
		}
		st, err := c.deliver(sendCtx, s.envelopeFrom, out)
		if err == nil {
			if c.broken {
				c.close()
				c = nil
			}
			s.putBack(c)
			return channel.Result{Outcome: channel.Sent}
		}
		if reused && st == stageMail && sendCtx.Err() == nil && lostWhileIdle(err) {
			// The server closed this connection while it sat in the pool
			// (idle timeout, restart). Nothing was accepted, so one more
			// try on a new connection cannot duplicate the message.
			c.close()
			c, reused = nil, false
			continue
		}
		res := classifyError(ctx, sendCtx, err)
		if c.broken || !keepsConn(err) || c.reset(sendCtx) != nil {
			c.close()
			c = nil
		}
		s.putBack(c)
		return res
	}
}

// Close closes the idle connections (politely, with QUIT) and makes later
// sends return Retry "sender closed". Connections in use by sends still
// running are closed when those sends end.
func (s *Sender) Close() error {
	s.mu.Lock()
	s.closed = true
	idle := s.idle
	s.idle = nil
	s.mu.Unlock()

	var wg sync.WaitGroup
	for _, c := range idle {
		wg.Go(c.quit)
	}
	wg.Wait()
	return nil
}

// takeIdle returns the most recently used idle connection, nil if there is
// none, and whether the sender is closed. The caller holds a permit.
func (s *Sender) takeIdle() (c *conn, closed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.idle); n > 0 {
		c = s.idle[n-1]
		s.idle = s.idle[:n-1]
	}
	return c, s.closed
}

// putBack makes c (if not nil) idle, or closes it when the sender has been
// closed meanwhile, and gives up the caller's permit.
func (s *Sender) putBack(c *conn) {
	if c != nil {
		s.mu.Lock()
		closed := s.closed
		if !closed {
			s.idle = append(s.idle, c)
		}
		s.mu.Unlock()
		if closed {
			c.close()
		}
	}
	<-s.permits
}

func newSignOptions(cfg *DKIMConfig) (*dkim.SignOptions, error) {
	if !isASCIIDomain(cfg.Domain) {
		return nil, fmt.Errorf("email: invalid DKIM domain %q", cfg.Domain)
	}
	if !isASCIIDomain(cfg.Selector) {
		return nil, fmt.Errorf("email: invalid DKIM selector %q", cfg.Selector)
	}
	key, err := parsePrivateKey(cfg.PrivateKeyPEM)
	if err != nil {
		return nil, err
	}
	return &dkim.SignOptions{
		Domain:   cfg.Domain,
		Selector: cfg.Selector,
		Signer:   key,
		// relaxed survives relays that refold headers or trim trailing
		// whitespace; simple breaks on either.
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             signedHeaders,
	}, nil
}

// signedHeaders are the header fields the DKIM signature covers. Fields
// named twice are oversigned: a field of that name added on the way (a
// second From, Subject or List-Unsubscribe) breaks the signature. Fields
// absent from a message (List-Unsubscribe without an unsubscribe URL) are
// signed as absent, so they cannot be added either. RFC 8058 requires
// List-Unsubscribe and List-Unsubscribe-Post to be signed.
var signedHeaders = []string{
	"From", "From",
	"To",
	"Subject", "Subject",
	"Date",
	"Message-ID",
	"MIME-Version",
	"Content-Type",
	"Content-Transfer-Encoding",
	"List-Unsubscribe", "List-Unsubscribe",
	"List-Unsubscribe-Post", "List-Unsubscribe-Post",
}

func parsePrivateKey(pemBytes []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("email: DKIM private key: no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("email: DKIM private key: unsupported PEM type %q (want RSA PRIVATE KEY or PRIVATE KEY)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("email: DKIM private key: %w", err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		// RFC 8301: verifiers must not accept signatures from shorter keys.
		if k.N.BitLen() < 1024 {
			return nil, fmt.Errorf("email: DKIM RSA key has %d bits, want at least 1024 (2048 recommended)", k.N.BitLen())
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("email: DKIM private key: unsupported key type %T (want RSA or Ed25519)", key)
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
