package email

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// serverTLS is how the test server offers TLS.
type serverTLS uint8

const (
	serverPlain    serverTLS = iota // no TLS at all
	serverStartTLS                  // STARTTLS offered
	serverImplicit                  // TLS from the first byte
)

// serverOptions configure a test SMTP server; the zero value accepts all
// mail over plain TCP without authentication.
type serverOptions struct {
	tls serverTLS
	// username and password, when set, are required (AUTH PLAIN) before
	// MAIL.
	username, password string
	// allowInsecureAuth offers AUTH without TLS.
	allowInsecureAuth bool
	// rcpt, if set, answers RCPT TO (nil accepts).
	rcpt func(to string) error
	// data, if set, runs after the message is read and answers it (nil
	// accepts); it may block or close the connection.
	data func(c *smtp.Conn, to string) error
	// mail, if set, answers MAIL FROM (nil accepts).
	mail func(from string) error
	// readTimeout closes connections idle that long (go-smtp answers 421
	// first).
	readTimeout time.Duration
	// discard drops messages instead of keeping them (benchmarks).
	discard bool
	// smtputf8 offers SMTPUTF8.
	smtputf8 bool
}

// received is a message the test server accepted.
type received struct {
	from, to string
	data     []byte
	tls      bool   // delivered over TLS
	user     string // authenticated as, "" if not
	helo     string
}

// testServer is a real go-smtp server on 127.0.0.1 that records what it
// accepts and counts connections.
type testServer struct {
	host string
	port int
	opts serverOptions
	// release is closed when the test ends, unblocking data hooks that
	// hang.
	release chan struct{}
	conns   atomic.Int64

	mu       sync.Mutex
	messages []received
}

func startServer(t testing.TB, opts serverOptions) *testServer {
	t.Helper()
	ts := &testServer{opts: opts, release: make(chan struct{})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().(*net.TCPAddr)
	ts.host, ts.port = addr.IP.String(), addr.Port

	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &testSession{ts: ts, conn: c}, nil
	}))
	srv.Domain = "mx.test"
	srv.AllowInsecureAuth = opts.allowInsecureAuth
	srv.ReadTimeout = opts.readTimeout
	srv.EnableSMTPUTF8 = opts.smtputf8
	srv.ErrorLog = log.New(io.Discard, "", 0)
	var listener net.Listener = &countingListener{Listener: l, n: &ts.conns}
	if opts.tls != serverPlain {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{testCert.cert}}
		if opts.tls == serverImplicit {
			listener = tls.NewListener(listener, srv.TLSConfig)
		}
	}
	go srv.Serve(listener)
	t.Cleanup(func() { srv.Close() })
	// Cleanups run last-in first-out: release hung sessions before
	// closing.
	t.Cleanup(func() { close(ts.release) })
	return ts
}

// config returns a sender configuration for this server: its TLS mode,
// trusting the test CA, relay signing.
func (ts *testServer) config() Config {
	cfg := Config{
		Host:       ts.host,
		Port:       ts.port,
		TLSMode:    TLSModeNone,
		From:       "Shop <hello@shop.example>",
		RelaySigns: true,
		Timeout:    5 * time.Second,
		TLSConfig:  &tls.Config{RootCAs: testCert.pool},
		Hostname:   "sender.test",
	}
	switch ts.opts.tls {
	case serverStartTLS:
		cfg.TLSMode = TLSModeStartTLS
	case serverImplicit:
		cfg.TLSMode = TLSModeTLS
	}
	return cfg
}

func (ts *testServer) addr() string { return net.JoinHostPort(ts.host, strconv.Itoa(ts.port)) }

func (ts *testServer) received() []received {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]received(nil), ts.messages...)
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

type testSession struct {
	ts   *testServer
	conn *smtp.Conn
	user string
	from string
	to   []string
}

// AuthMechanisms offers AUTH PLAIN only when the server requires it.
func (s *testSession) AuthMechanisms() []string {
	if s.ts.opts.username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *testSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != s.ts.opts.username || password != s.ts.opts.password {
			return smtp.ErrAuthFailed
		}
		s.user = username
		return nil
	}), nil
}

func (s *testSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.ts.opts.username != "" && s.user == "" {
		return smtp.ErrAuthRequired
	}
	if s.ts.opts.mail != nil {
		if err := s.ts.opts.mail(from); err != nil {
			return err
		}
	}
	s.from = from
	return nil
}

func (s *testSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.ts.opts.rcpt != nil {
		if err := s.ts.opts.rcpt(to); err != nil {
			return err
		}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *testSession) Data(r io.Reader) error {
	if len(s.to) != 1 {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "want one recipient"}
	}
	var data []byte
	var err error
	if s.ts.opts.discard {
		_, err = io.Copy(io.Discard, r)
	} else {
		data, err = io.ReadAll(r)
	}
	if err != nil {
		return err
	}
	if s.ts.opts.data != nil {
		if err := s.ts.opts.data(s.conn, s.to[0]); err != nil {
			return err
		}
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.ts.mu.Lock()
	s.ts.messages = append(s.ts.messages, received{
		from: s.from, to: s.to[0], data: data, tls: isTLS, user: s.user, helo: s.conn.Hostname(),
	})
	s.ts.mu.Unlock()
	return nil
}

func (s *testSession) Reset() { s.from, s.to = "", nil }

func (s *testSession) Logout() error { return nil }

// testCert is a self-signed certificate for 127.0.0.1 and localhost, and a
// pool that trusts it.
var testCert = func() (c struct {
	cert tls.Certificate
	pool *x509.CertPool
}) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "smtp test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	c.cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	c.pool = x509.NewCertPool()
	c.pool.AddCert(leaf)
	return c
}()

// smtpErr is a server reply for the hooks.
func smtpErr(code int, class, subject, detail int) error {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{class, subject, detail}, Message: "no <victim@example.com> here"}
}
