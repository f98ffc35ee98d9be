// Package webhook is the webhook channel: it POSTs each message as JSON
// to one HTTP endpoint, signed as Standard Webhooks
// (https://www.standardwebhooks.com/) specify, so a receiver can verify it
// with any Standard Webhooks library.
//
// Every request carries webhook-id and Idempotency-Key, both the
// message's idempotency key, so a receiver that deduplicates on either sees
// each message once although the runner delivers at least once.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/retention-dev/retention-operator/internal/outreach/channel"
)

const (
	// DefaultTimeout is Config.Timeout when unset.
	DefaultTimeout = 10 * time.Second
	// MaxTimeout is the longest Config.Timeout accepted: a receiver slower
	// than this holds a connection, and a claimed batch, for too long.
	MaxTimeout = 60 * time.Second
	// DefaultMaxConns is Config.MaxConns when unset.
	DefaultMaxConns = 16
	// DefaultUserAgent is Config.UserAgent when unset.
	DefaultUserAgent = "retention-operator"

	// maxRetryAfter caps Result.RetryAfter so that a receiver cannot park
	// messages for days with one header.
	maxRetryAfter = channel.MaxRetryAfter
	// maxDrain is how much of a response body is read so that its
	// connection can be reused; a longer body costs a new connection
	// rather than an unbounded read of what we discard anyway.
	maxDrain = 64 << 10
	// maxPooledBody keeps a rare huge message from pinning its buffer in
	// the pool for good.
	maxPooledBody = 1 << 20

	signingKeyPrefix = "whsec_"
)

// Config configures a Sender.
type Config struct {
	// URL is the endpoint, http or https. Credentials in it
	// (https://user:pass@host/…) are sent as HTTP basic authentication.
	URL string

	// Headers are extra headers sent on every request, e.g. Authorization.
	// They may not set the headers the sender owns (Content-Type,
	// Content-Length, Host, Connection, Transfer-Encoding, webhook-*,
	// Idempotency-Key); a User-Agent here replaces UserAgent.
	Headers map[string]string

	// Timeout bounds each request, from dialling to the end of the
	// response. Zero means DefaultTimeout (10s); negative or more than
	// MaxTimeout (60s) is an error.
	Timeout time.Duration

	// SigningKeys are zero or more Standard Webhooks keys, each
	// "whsec_" followed by the standard base64 of the key bytes. Each
	// request carries one signature per key, so during a rotation both the
	// old and the new key are listed and receivers holding either verify.
	// No keys means requests are not signed.
	SigningKeys []string

	// CABundle, when set, is PEM certificates that are then the only
	// roots trusted for https: for endpoints with a private CA. Empty
	// means the system roots.
	CABundle []byte

	// MaxConns is the number of keep-alive connections to the endpoint,
	// which is also Concurrency. Zero means DefaultMaxConns (16).
	MaxConns int

	// Now is the clock for webhook-timestamp and Retry-After dates; nil
	// means time.Now. For tests.
	Now func() time.Time

	// UserAgent is the User-Agent header. Empty means DefaultUserAgent.
	UserAgent string
}

// Sender sends messages to one webhook endpoint. It implements
// channel.Sender.
type Sender struct {
	transport *http.Transport
	url       *url.URL
	timeout   time.Duration
	maxConns  int
	now       func() time.Time
	keys      [][]byte
	// staticHeader is the headers that are the same on every request;
	// the slices in it are shared, read-only, by all requests.
	staticHeader http.Header
	requests     sync.Pool
	stamp        atomic.Pointer[stamp]
	closed       atomic.Bool
}

var _ channel.Sender = (*Sender)(nil)

// New checks cfg and returns a Sender. Errors never contain a signing
// key, a header value or the URL, which may all hold credentials.
func New(cfg Config) (*Sender, error) {
	s := &Sender{
		timeout:  cfg.Timeout,
		maxConns: cfg.MaxConns,
		now:      cfg.Now,
	}
	switch {
	case s.timeout == 0:
		s.timeout = DefaultTimeout
	case s.timeout < 0:
		return nil, errors.New("webhook: timeout is negative")
	case s.timeout > MaxTimeout:
		return nil, fmt.Errorf("webhook: timeout %v is over the maximum of %v", s.timeout, MaxTimeout)
	}
	switch {
	case s.maxConns == 0:
		s.maxConns = DefaultMaxConns
	case s.maxConns < 0:
		return nil, errors.New("webhook: MaxConns is negative")
	}
	if s.now == nil {
		s.now = time.Now
	}

	u, basicAuth, err := parseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	s.url = u

	for i, k := range cfg.SigningKeys {
		key, err := decodeSigningKey(k, i)
		if err != nil {
			return nil, err
		}
		s.keys = append(s.keys, key)
	}

	if s.staticHeader, err = staticHeader(cfg, basicAuth); err != nil {
		return nil, err
	}

	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(cfg.CABundle) > 0 {
		if tlsConfig.RootCAs, err = parseCABundle(cfg.CABundle); err != nil {
			return nil, err
		}
	}
	// HTTP/1.1 only: each of the MaxConns connections carries one request
	// at a time, so Concurrency means the same thing on every endpoint,
	// and a dead connection fails one request rather than a multiplexed
	// hundred.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	s.transport = &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   s.timeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: s.timeout,
		Protocols:           &protocols,
		MaxIdleConns:        s.maxConns,
		MaxIdleConnsPerHost: s.maxConns,
		MaxConnsPerHost:     s.maxConns,
		IdleConnTimeout:     90 * time.Second,
		// Responses are discarded: asking for gzip would only cost CPU.
		DisableCompression:     true,
		MaxResponseHeaderBytes: 1 << 20,
	}
	s.requests.New = s.newRequest
	return s, nil
}

// ParseSigningKeys splits a Secret value holding one or more signing keys
// separated by whitespace (spaces or newlines), so that keys rotate
// without a gap: the old and the new key are listed together until every
// receiver has the new one. Each key is checked as New checks it; an error
// names the key's position (1-based), never its value.
func ParseSigningKeys(s string) ([]string, error) {
	keys := strings.Fields(s)
	if len(keys) == 0 {
		return nil, errors.New("webhook: no signing key in the secret")
	}
	for i, k := range keys {
		if _, err := decodeSigningKey(k, i); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// decodeSigningKey decodes the i-th (0-based) key. It accepts exactly what
// the Standard Webhooks libraries accept (standard base64 with padding),
// plus the required prefix, so a key that passes here verifies there.
func decodeSigningKey(k string, i int) ([]byte, error) {
	b64, ok := strings.CutPrefix(k, signingKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("webhook: signing key %d does not start with %q", i+1, signingKeyPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		// The decoder's error holds only an offset, but say nothing of
		// the key beyond its position anyway.
		return nil, fmt.Errorf("webhook: signing key %d is not %s followed by standard base64", i+1, signingKeyPrefix)
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("webhook: signing key %d is empty", i+1)
	}
	return key, nil
}

func parseURL(raw string) (u *url.URL, basicAuth string, err error) {
	u, err = url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the URL, which may hold a token.
		return nil, "", errors.New("webhook: URL does not parse")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, "", errors.New("webhook: URL scheme is not http or https")
	}
	if u.Host == "" {
		return nil, "", errors.New("webhook: URL has no host")
	}
	// The Transport, unlike http.Client, ignores credentials in the URL.
	if u.User != nil {
		pass, _ := u.User.Password()
		basicAuth = "Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pass))
		u.User = nil
	}
	u.Fragment, u.RawFragment = "", "" // never sent
	return u, basicAuth, nil
}

// reservedHeaders are set by the sender or by net/http; letting Headers
// set them would break signing, deduplication or framing.
var reservedHeaders = map[string]bool{
	"Content-Type":      true,
	"Content-Length":    true,
	"Transfer-Encoding": true,
	"Connection":        true,
	"Host":              true,
	"Idempotency-Key":   true,
	"Webhook-Id":        true,
	"Webhook-Timestamp": true,
	"Webhook-Signature": true,
}

func staticHeader(cfg Config, basicAuth string) (http.Header, error) {
	h := http.Header{
		"Content-Type": {"application/json"},
		"User-Agent":   {DefaultUserAgent},
	}
	if cfg.UserAgent != "" {
		if !validHeaderValue(cfg.UserAgent) {
			return nil, errors.New("webhook: UserAgent has a control character")
		}
		h["User-Agent"] = []string{cfg.UserAgent}
	}
	if basicAuth != "" {
		h["Authorization"] = []string{basicAuth}
	}
	seen := make(map[string]bool, len(cfg.Headers))
	for name, value := range cfg.Headers {
		if !validHeaderName(name) {
			// Names are not secret; a bad one is worth seeing.
			return nil, fmt.Errorf("webhook: header name %q is not a valid HTTP token", name)
		}
		canonical := textproto.CanonicalMIMEHeaderKey(name)
		if reservedHeaders[canonical] {
			return nil, fmt.Errorf("webhook: header %s is set by the sender", canonical)
		}
		if seen[canonical] {
			return nil, fmt.Errorf("webhook: header %s is given twice", canonical)
		}
		seen[canonical] = true
		if canonical == "Authorization" && basicAuth != "" {
			return nil, errors.New("webhook: Authorization is both in the URL and in Headers")
		}
		if !validHeaderValue(value) {
			return nil, fmt.Errorf("webhook: header %s has a control character in its value", canonical)
		}
		h[canonical] = []string{value}
	}
	return h, nil
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue reports whether v can be sent as a header value as
// net/http accepts it: no control bytes other than tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// parseCABundle is stricter than x509.CertPool.AppendCertsFromPEM, which
// skips blocks it cannot parse: a bundle with a broken certificate would
// otherwise fail only at the first send, as an unknown authority.
func parseCABundle(bundle []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := bundle; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		n++
		if block.Type != "CERTIFICATE" {
			// The type only: the block might be a private key.
			return nil, fmt.Errorf("webhook: CABundle block %d is a %s, not a CERTIFICATE", n, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("webhook: CABundle certificate %d: %w", n, err)
		}
		pool.AddCert(cert)
	}
	if n == 0 {
		return nil, errors.New("webhook: CABundle holds no PEM certificate")
	}
	return pool, nil
}

// Concurrency is MaxConns: more concurrent sends would only wait for a
// connection.
func (s *Sender) Concurrency() int { return s.maxConns }

// Close closes idle connections; sends still under way finish. A Send
// after Close returns Retry "closed".
func (s *Sender) Close() error {
	s.closed.Store(true)
	s.transport.CloseIdleConnections()
	return nil
}

// stamp is one second's timestamp in both forms; it changes once a
// second, so it is formatted once a second rather than per message.
type stamp struct {
	unix    int64
	header  string // webhook-timestamp: decimal Unix seconds
	rfc3339 string // body "timestamp", UTC
}

func (s *Sender) stampAt(now time.Time) *stamp {
	sec := now.Unix()
	if st := s.stamp.Load(); st != nil && st.unix == sec {
		return st
	}
	st := &stamp{
		unix:    sec,
		header:  strconv.FormatInt(sec, 10),
		rfc3339: time.Unix(sec, 0).UTC().Format(time.RFC3339),
	}
	s.stamp.Store(st)
	return st
}

// request is what one send builds its message with, pooled: the body and
// header values are built here, then copied into the http.Request's own
// header and body (see Send), so the pool never shares memory with a
// request the Transport may still be writing.
type request struct {
	s      *Sender
	body   []byte
	header http.Header
	// id, ts and sig are the header value slices, reused.
	id, ts, sig []string
	tmpl        http.Request
	fields      *fieldsEncoder
	macs        []hash.Hash
	prefix      []byte // "<id>.<timestamp>."
	sigBuf      []byte
	sum         []byte
	drain       limitedReader
}

func (s *Sender) newRequest() any {
	r := &request{s: s, fields: newFieldsEncoder()}
	r.id, r.ts = make([]string, 1), make([]string, 1)
	r.header = make(http.Header, len(s.staticHeader)+5)
	for k, v := range s.staticHeader {
		r.header[k] = v
	}
	r.header["Webhook-Id"] = r.id
	r.header["Idempotency-Key"] = r.id
	r.header["Webhook-Timestamp"] = r.ts
	if len(s.keys) > 0 {
		r.sig = make([]string, 1)
		r.header["Webhook-Signature"] = r.sig
		for _, k := range s.keys {
			r.macs = append(r.macs, hmac.New(sha256.New, k))
		}
	}
	r.tmpl = http.Request{
		Method:     http.MethodPost,
		URL:        s.url,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     r.header,
		Host:       s.url.Host,
	}
	return r
}

// ownHeader is a copy of the request's header map for one request.
func (r *request) ownHeader() http.Header {
	h := make(http.Header, len(r.header))
	for k, v := range r.header {
		h[k] = []string{v[0]}
	}
	return h
}

// release returns r to the pool.
func (r *request) release() {
	// Keep no message data reachable from the pool.
	r.id[0], r.ts[0] = "", ""
	if r.sig != nil {
		r.sig[0] = ""
	}
	if cap(r.body) > maxPooledBody {
		return
	}
	r.s.requests.Put(r)
}

// sign sets the webhook-signature value: "v1,<base64 HMAC-SHA256>" of
// "<id>.<timestamp>.<body>" per key, space-separated.
func (r *request) sign(id, ts string) {
	r.prefix = append(append(append(append(r.prefix[:0], id...), '.'), ts...), '.')
	r.sigBuf = r.sigBuf[:0]
	for i, mac := range r.macs {
		mac.Reset()
		mac.Write(r.prefix)
		mac.Write(r.body)
		r.sum = mac.Sum(r.sum[:0])
		if i > 0 {
			r.sigBuf = append(r.sigBuf, ' ')
		}
		r.sigBuf = append(r.sigBuf, "v1,"...)
		r.sigBuf = base64.StdEncoding.AppendEncode(r.sigBuf, r.sum)
	}
	r.sig[0] = string(r.sigBuf)
}

// Send POSTs m and classifies the answer; see the package tests for every
// case. Reasons never hold personal data, the URL or the body.
func (s *Sender) Send(ctx context.Context, m *channel.Message) channel.Result {
	if ctx.Err() != nil {
		return callerDone(ctx)
	}
	if s.closed.Load() {
		return retry("closed")
	}
	// The key is in headers and the signed content; channel.Key makes
	// valid ones, so anything else is a caller's bug, not worth a retry.
	if m.Key == "" {
		return fail("no idempotency key")
	}
	if !validHeaderValue(m.Key) {
		return fail("invalid idempotency key")
	}

	now := s.now()
	st := s.stampAt(now)
	r := s.requests.Get().(*request)
	var err error
	r.body, err = appendPayload(r.body[:0], m, st.rfc3339, r.fields.append)
	if err != nil {
		r.release()
		// NaN, a channel, …: this message cannot be carried, ever.
		return fail("fields not encodable as JSON")
	}
	r.id[0], r.ts[0] = m.Key, st.header
	if r.macs != nil {
		r.sign(m.Key, st.header)
	}

	reqCtx, cancel := context.WithTimeout(ctx, s.timeout)
	req := r.tmpl.WithContext(reqCtx)
	// The Transport's writing goroutine may still read the request's
	// header and body after RoundTrip returns (a receiver may answer
	// before reading the request), so both are the request's own, not
	// pooled. The body is an in-memory reader net/http recognises, so it
	// writes the headers and the body in one system call instead of
	// flushing the headers first (a second write per message).
	body := bytes.Clone(r.body)
	req.Header = r.ownHeader()
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = replayOnce(body)
	req.ContentLength = int64(len(body))

	// The Transport, not an http.Client: no redirects are followed (one
	// could carry customer data to another host), and no per-request
	// client bookkeeping is paid for.
	resp, err := s.transport.RoundTrip(req)
	var res channel.Result
	if err != nil {
		res = classifyError(ctx, reqCtx, err)
	} else {
		res = classifyResponse(resp, now)
		// Read what is left (bounded) so the connection is reused. An
		// error here does not change the outcome: the receiver answered.
		if resp.Body != http.NoBody {
			r.drain.r, r.drain.n = resp.Body, maxDrain
			r.drain.discard()
			r.drain.r = nil
		}
		resp.Body.Close()
	}
	cancel()
	r.release()
	return res
}

// errDroppedTwice is what replayOnce's GetBody returns to stop the
// Transport from sending a request a third time.
var errDroppedTwice = errors.New("webhook: the receiver closed the connection without answering, twice")

// replayOnce is the request's GetBody: it lets net/http's Transport resend
// the request once, and refuses a second resend.
//
// The Transport resends a request on its own when a reused keep-alive
// connection is closed before any byte of an answer, if the request is
// idempotent, which the Idempotency-Key header declares it to be. It does
// so once per idle connection it finds, so a receiver that drops one
// particular request got it up to MaxConns+1 times in a single Send,
// immediately and unseen by the runner's attempt count and backoff. One
// resend is worth keeping: it rides out the common race of a receiver's
// idle timeout closing a connection just as a request goes out on it (it
// carries the same key, so a receiver that did get the first drops it). A
// second drop is the receiver's answer to this request; the runner retries
// it later ("connection closed").
func replayOnce(body []byte) func() (io.ReadCloser, error) {
	var replays atomic.Int32
	return func() (io.ReadCloser, error) {
		if replays.Add(1) > 1 {
			return nil, errDroppedTwice
		}
		return io.NopCloser(bytes.NewReader(body)), nil
	}
}

// callerDone is the result of a send whose caller's context ended:
// "cancelled" when it was cancelled, "timeout" when its deadline passed
// (as the email and Slack channels say), so a deadline is not reported
// as a cancellation.
func callerDone(ctx context.Context) channel.Result {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return retry("timeout")
	}
	return retry("cancelled")
}

func retry(reason string) channel.Result {
	return channel.Result{Outcome: channel.Retry, Reason: reason}
}

func fail(reason string) channel.Result {
	return channel.Result{Outcome: channel.Fail, Reason: reason}
}

// httpReasons[code] is "http <code>", built once so that classifying a
// status costs no allocation.
var httpReasons = func() (t [600]string) {
	for c := 100; c < len(t); c++ {
		t[c] = "http " + strconv.Itoa(c)
	}
	return t
}()

func httpReason(code int) string {
	if code >= 100 && code < len(httpReasons) {
		return httpReasons[code]
	}
	return "http " + strconv.Itoa(code)
}

// classifyResponse: 2xx Sent; 429 and 5xx Retry, with Retry-After; 408
// Retry (the receiver timed out reading us; RFC 9110 lets the client
// repeat); every other status, 3xx included, Fail: a redirect is not
// followed, and it would fail the same way again.
func classifyResponse(resp *http.Response, now time.Time) channel.Result {
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return channel.Result{Outcome: channel.Sent}
	case code == http.StatusTooManyRequests || code >= 500:
		return channel.Result{
			Outcome:    channel.Retry,
			Reason:     httpReason(code),
			RetryAfter: channel.RetryAfter(resp.Header.Get("Retry-After"), now),
		}
	case code == http.StatusRequestTimeout:
		return retry(httpReason(code))
	default:
		return fail(httpReason(code))
	}
}

// classifyError turns a RoundTrip error into Retry with a generic reason,
// except a certificate the receiver's TLS does not verify against: that
// is a configuration error (wrong CABundle, wrong host) that no retry
// fixes, so Fail "tls".
func classifyError(callerCtx, reqCtx context.Context, err error) channel.Result {
	if callerCtx.Err() != nil {
		return callerDone(callerCtx)
	}
	if reqCtx.Err() != nil {
		return retry("timeout")
	}
	if errors.Is(err, errDroppedTwice) {
		return retry("connection closed")
	}
	var verr *tls.CertificateVerificationError
	var unknownAuthority x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var hostname x509.HostnameError
	if errors.As(err, &verr) || errors.As(err, &unknownAuthority) ||
		errors.As(err, &invalid) || errors.As(err, &hostname) {
		return fail("tls")
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return retry("timeout")
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return retry("connection refused")
	case errors.Is(err, syscall.ECONNRESET):
		return retry("connection reset")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return retry("connection closed")
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return retry("dns")
	}
	return retry("connection error")
}
