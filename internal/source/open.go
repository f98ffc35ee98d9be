package source

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// Opener opens one input; it is called on every Read, so a refresh sees
// fresh data. The caller closes what it returns.
type Opener func(ctx context.Context) (io.ReadCloser, error)

// FromFile opens a local file (gzipped or not).
func FromFile(path string) Opener {
	return func(context.Context) (io.ReadCloser, error) { return OpenFile(path) }
}

// FromBytes reads bytes held in memory, e.g. from a ConfigMap or Secret.
func FromBytes(b []byte) Opener {
	return func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// FromURL downloads an http(s) URL with OpenURL.
func FromURL(rawURL string, auth Auth) Opener {
	return func(ctx context.Context) (io.ReadCloser, error) { return OpenURL(ctx, rawURL, auth) }
}

// OpenFile opens path for reading. Readers of this package detect gzip
// themselves (see Decompress).
func OpenFile(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	return f, nil
}

// Auth is how a request authenticates: a bearer token, or HTTP basic
// auth, or nothing. The values never appear in errors.
type Auth struct {
	BearerToken        string
	Username, Password string
}

func (a Auth) apply(req *http.Request) error {
	switch {
	case a.BearerToken != "" && (a.Username != "" || a.Password != ""):
		return errors.New("source: set either a bearer token or basic auth credentials, not both")
	case a.BearerToken != "":
		req.Header.Set("Authorization", "Bearer "+a.BearerToken)
	case a.Username != "" || a.Password != "":
		req.SetBasicAuth(a.Username, a.Password)
	}
	return nil
}

// DefaultHTTPClient is used by OpenURL and by HTTPJSON without a Client:
// bounded connect, TLS handshake and response-header waits. OpenURL bounds
// the pauses of the body (DefaultStallTimeout), HTTPJSON whole requests
// (HTTPJSON.Timeout).
var DefaultHTTPClient = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	TLSHandshakeTimeout:   10 * time.Second,
	ResponseHeaderTimeout: 60 * time.Second,
	IdleConnTimeout:       90 * time.Second,
	MaxIdleConnsPerHost:   4,
	ForceAttemptHTTP2:     true,
}}

// HTTPStatusError is a non-2xx response. It never carries the body (which
// may echo data) nor the URL's query or credentials.
type HTTPStatusError struct {
	URL        string // scheme://host/path
	StatusCode int
	Status     string
}

func (e *HTTPStatusError) Error() string {
	s := fmt.Sprintf("source: GET %s: %s", e.URL, e.Status)
	switch e.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		s += " (check the credentials)"
	}
	return s
}

// redactURL keeps scheme, host and path: no user info, query or fragment,
// which may hold credentials.
func redactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return r.String()
}

// transportError strips the URL that net/http puts in its errors.
func transportError(u *url.URL, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("source: GET %s: %w", redactURL(u), err)
}

func parseHTTPURL(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("source: malformed URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("source: URL scheme %q: want http or https", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("source: URL has no host")
	}
	return u, nil
}

// DefaultStallTimeout is how long OpenURL waits for the next bytes of a
// response, headers or body. The caller's context may have no deadline (a
// big file takes as long as it takes), so without it a server that stops
// sending mid-body would hold the read forever.
const DefaultStallTimeout = 60 * time.Second

// OpenURL GETs an http(s) URL and returns the response body. A non-2xx
// response is an *HTTPStatusError (the body is not read into the error). A
// server that sends nothing for DefaultStallTimeout fails the request or
// the body's Read with ErrStalled.
func OpenURL(ctx context.Context, rawURL string, auth Auth) (io.ReadCloser, error) {
	return openURL(ctx, rawURL, auth, DefaultStallTimeout)
}

func openURL(ctx context.Context, rawURL string, auth Auth, stall time.Duration) (io.ReadCloser, error) {
	u, err := parseHTTPURL(rawURL)
	if err != nil {
		return nil, err
	}
	w := newStallWatch(ctx, redactURL(u), stall)
	req, err := http.NewRequestWithContext(w.ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		w.cancel(nil)
		return nil, fmt.Errorf("source: GET %s: %w", redactURL(u), err)
	}
	if err := auth.apply(req); err != nil {
		w.cancel(nil)
		return nil, err
	}
	w.timer.Reset(stall)
	resp, err := DefaultHTTPClient.Do(req)
	w.timer.Stop()
	if err != nil {
		err = w.explain(transportError(u, err))
		w.cancel(nil)
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		discard(resp.Body)
		w.cancel(nil)
		return nil, &HTTPStatusError{URL: redactURL(u), StatusCode: resp.StatusCode, Status: resp.Status}
	}
	w.body = resp.Body
	return w, nil
}

// stallWatch cancels a request when its server sends nothing for the stall
// timeout: the timer runs while the request waits for headers and while a
// Read of the body waits for bytes (not while the caller is busy).
type stallWatch struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	stall  time.Duration
	url    string
	body   io.ReadCloser
}

func newStallWatch(ctx context.Context, url string, stall time.Duration) *stallWatch {
	w := &stallWatch{stall: stall, url: url}
	w.ctx, w.cancel = context.WithCancelCause(ctx)
	w.timer = time.AfterFunc(stall, func() { w.cancel(ErrStalled) })
	w.timer.Stop()
	return w
}

func (w *stallWatch) Read(p []byte) (int, error) {
	w.timer.Reset(w.stall)
	n, err := w.body.Read(p)
	w.timer.Stop()
	if err != nil && err != io.EOF {
		err = w.explain(err)
	}
	return n, err
}

func (w *stallWatch) Close() error {
	w.timer.Stop()
	w.cancel(nil)
	return w.body.Close()
}

// explain replaces the transport's "context canceled" by ErrStalled when
// the watch cancelled the request.
func (w *stallWatch) explain(err error) error {
	if errors.Is(context.Cause(w.ctx), ErrStalled) {
		return fmt.Errorf("source: GET %s: %w (nothing for %v)", w.url, ErrStalled, w.stall)
	}
	return err
}

// discard drains a little of a body (so the connection can be reused) and closes it.
func discard(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, 64<<10)
	_ = body.Close()
}

// Decompress returns r, transparently gunzipped when it starts with the
// gzip magic bytes 1f 8b.
func Decompress(r io.Reader) (io.Reader, error) {
	var magic [2]byte
	n, err := io.ReadFull(r, magic[:])
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return bytes.NewReader(magic[:n]), nil
	case err != nil:
		return nil, err
	}
	mr := io.MultiReader(bytes.NewReader(magic[:]), r)
	if magic[0] != 0x1f || magic[1] != 0x8b {
		return mr, nil
	}
	zr, err := gzip.NewReader(mr)
	if err != nil {
		return nil, fmt.Errorf("source: gzip: %w", err)
	}
	return gzipReader{zr}, nil
}

// gzipReader names gzip in its errors: a truncated download otherwise
// shows up as a bare "unexpected EOF".
type gzipReader struct{ z *gzip.Reader }

func (g gzipReader) Read(p []byte) (int, error) {
	n, err := g.z.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("gzip stream truncated or corrupt: %w", err)
	}
	return n, err
}

// capReader returns the first max bytes of r, then fails with
// ErrInputTooLarge if r has more: an input that goes on forever (or inflates
// forever) is stopped without being held in memory.
type capReader struct {
	r    io.Reader
	n    int64 // bytes returned so far
	max  int64
	what string // the input, for the error
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n >= c.max {
		var probe [1]byte
		n, err := c.r.Read(probe[:])
		if n > 0 {
			return 0, fmt.Errorf("%w: %s goes on past %d bytes (after decompression)", ErrInputTooLarge, c.what, c.max)
		}
		return 0, err
	}
	if rest := c.max - c.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
