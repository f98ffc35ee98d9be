package source

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// HTTPJSON reads a paged JSON API: each GET returns a page such as
//
//	{"data": [{"customer_id": "c1", "timestamp": "2024-01-31", "amount": 12.5}, ...],
//	 "next": "/v1/orders?page=2"}
//
// Items are mapped by Mapping with field names in place of column names
// (amounts may be JSON numbers or strings). The next page comes from a
// next-link field (absolute or relative URL), or from a cursor field whose
// value is sent back in a query parameter, or from a Link: <…>; rel="next"
// header. Pages are fetched with a per-request timeout and retried with
// exponential backoff and jitter on 429, 5xx and network errors (honouring
// Retry-After); items are decoded one at a time with json.Decoder tokens.
type HTTPJSON struct {
	URL  string
	Auth Auth
	// Kind is what the items are: Transactions (default), Customers or Summaries.
	Kind Kind
	// ItemsPath is the dotted path of the items array in a page (default
	// "data"; "." when the page itself is the array).
	ItemsPath string
	// NextField is the dotted path of the next page's URL (default "next").
	// Ignored when CursorParam is set.
	NextField string
	// CursorField is the dotted path of a cursor, sent back as the query
	// parameter CursorParam of URL to get the next page.
	CursorField, CursorParam string

	Mapping Mapping

	// Timeout bounds one request, body included (default 30s).
	Timeout time.Duration
	// MaxAttempts bounds the tries of one page (default 5).
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the wait between tries (defaults
	// 500ms and 30s); the wait doubles each try, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// MaxRetryAfter is the longest Retry-After honoured (default 5m); a
	// server asking for longer fails the read.
	MaxRetryAfter time.Duration
	// MaxPages bounds the pages of one read (0: no bound but the context's).
	MaxPages int
	// MaxPageBytes bounds one page's body (default 64 MiB).
	MaxPageBytes int64
	// Client is the HTTP client (default DefaultHTTPClient).
	Client *http.Client
}

var _ Reader = (*HTTPJSON)(nil)

func (h *HTTPJSON) withDefaults() HTTPJSON {
	c := *h
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Timeout, 30*time.Second)
	def(&c.MinBackoff, 500*time.Millisecond)
	def(&c.MaxBackoff, 30*time.Second)
	def(&c.MaxRetryAfter, 5*time.Minute)
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	if c.MaxPageBytes <= 0 {
		c.MaxPageBytes = 64 << 20
	}
	if c.ItemsPath == "" {
		c.ItemsPath = "data"
	}
	if c.NextField == "" {
		c.NextField = "next"
	}
	if c.Client == nil {
		c.Client = DefaultHTTPClient
	}
	return c
}

func splitPath(p string) []string {
	if p == "." || p == "" {
		return nil
	}
	return strings.Split(p, ".")
}

// Read fetches every page and streams its items to sink.
func (h *HTTPJSON) Read(ctx context.Context, sink Sink) (*Report, error) {
	c := h.withDefaults()
	base, err := parseHTTPURL(c.URL)
	if err != nil {
		return nil, err
	}
	if c.Kind < Transactions || c.Kind > Summaries {
		return nil, fmt.Errorf("source: HTTP JSON: unknown kind %v", c.Kind)
	}
	if (c.CursorField == "") != (c.CursorParam == "") {
		return nil, errors.New("source: HTTP JSON: set both the cursor field and the cursor parameter, or neither")
	}
	p, err := c.Mapping.compile()
	if err != nil {
		return nil, err
	}
	names := p.names(c.Kind)
	b, err := p.bind(c.Kind, names, nil, false)
	if err != nil {
		return nil, err
	}
	b.ncols = 0 // items have no fixed width: absent fields are empty
	rep := &Report{}
	pg := &pageDecoder{
		e:      newEmitter(b, sink, rep),
		index:  make(map[string]int, len(names)),
		fields: make([][]byte, len(names)),
		items:  splitPath(c.ItemsPath),
		next:   splitPath(c.NextField),
	}
	pg.e.nested = make([]bool, len(names))
	if c.CursorParam != "" {
		pg.next = splitPath(c.CursorField)
	}
	for i, n := range names {
		pg.index[n] = i
	}
	var body bytes.Buffer
	cur := base
	visited := newVisited()
	for page := 1; ; page++ {
		visited.add(cur, page)
		if c.MaxPages > 0 && page > c.MaxPages {
			return rep, fmt.Errorf("source: %s: more than %d pages", redactURL(base), c.MaxPages)
		}
		link, err := c.fetch(ctx, cur, &body)
		if err != nil {
			return rep, err
		}
		pg.page, pg.nextValue, pg.foundItems = page, "", false
		if err := pg.decode(body.Bytes()); err != nil {
			var se *SinkError
			if errors.As(err, &se) {
				return rep, err
			}
			return rep, fmt.Errorf("source: %s page %d: %w", redactURL(base), page, err)
		}
		if !pg.foundItems {
			return rep, fmt.Errorf("source: %s page %d has no %q array", redactURL(base), page, c.ItemsPath)
		}
		next, err := c.nextURL(base, cur, pg.nextValue, link)
		if err != nil {
			return rep, fmt.Errorf("source: %s page %d: %w", redactURL(base), page, err)
		}
		if next == nil {
			break
		}
		if first, ok := visited.page(next); ok {
			return rep, fmt.Errorf("source: %s page %d: the next-page link leads back to page %d; stopping instead of reading the same pages forever",
				redactURL(base), page, first)
		}
		cur = next
	}
	return finish(rep, p.maxRatio)
}

// visited remembers the pages of one read by a hash of their URL (8 bytes
// a page rather than the URL), so that next-page links that go round in a
// circle (A, B, A, ...) are caught instead of read forever.
type visited struct {
	seed  maphash.Seed
	pages map[uint64]int
}

func newVisited() *visited { return &visited{seed: maphash.MakeSeed(), pages: map[uint64]int{}} }

func (v *visited) add(u *url.URL, page int) { v.pages[maphash.String(v.seed, u.String())] = page }

// page returns the number of the page already read at u.
func (v *visited) page(u *url.URL) (int, bool) {
	n, ok := v.pages[maphash.String(v.seed, u.String())]
	return n, ok
}

// nextURL works out the next page's URL, nil at the end.
func (c *HTTPJSON) nextURL(base, cur *url.URL, value, link string) (*url.URL, error) {
	if c.CursorParam != "" {
		if value == "" {
			return nil, nil
		}
		if cur.Query().Get(c.CursorParam) == value {
			return nil, errors.New("the cursor did not change; stopping instead of reading the same page forever")
		}
		next := *base
		q := next.Query()
		q.Set(c.CursorParam, value)
		next.RawQuery = q.Encode()
		return &next, nil
	}
	if value == "" {
		value = link
	}
	if value == "" {
		return nil, nil
	}
	ref, err := url.Parse(value)
	if err != nil {
		return nil, errors.New("malformed next-page URL")
	}
	next := cur.ResolveReference(ref)
	if next.Scheme != "http" && next.Scheme != "https" {
		return nil, fmt.Errorf("next-page URL scheme %q: want http or https", next.Scheme)
	}
	if next.String() == cur.String() {
		return nil, errors.New("the next-page link points to the same page")
	}
	return next, nil
}

// nextLink returns the rel="next" target of a Link header.
func nextLink(h string) string {
	for _, part := range strings.Split(h, ",") {
		segs := strings.Split(part, ";")
		target := strings.TrimSpace(segs[0])
		if !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
			continue
		}
		for _, s := range segs[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(s), "=")
			if strings.EqualFold(k, "rel") && strings.EqualFold(strings.Trim(v, `"`), "next") {
				return target[1 : len(target)-1]
			}
		}
	}
	return ""
}

// retryable marks an error worth another try, with the server's Retry-After.
type retryable struct {
	err        error
	retryAfter time.Duration
}

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

// fetch GETs one page into body, retrying. It returns the Link header's next target.
func (c *HTTPJSON) fetch(ctx context.Context, u *url.URL, body *bytes.Buffer) (string, error) {
	for attempt := 1; ; attempt++ {
		link, err := c.try(ctx, u, body)
		if err == nil {
			return link, nil
		}
		var r *retryable
		if !errors.As(err, &r) {
			return "", err
		}
		if attempt >= c.MaxAttempts {
			return "", fmt.Errorf("%w (gave up after %d attempts)", r.err, attempt)
		}
		if r.retryAfter > c.MaxRetryAfter {
			return "", fmt.Errorf("%w (the server asks to retry after %v, longer than %v)", r.err, r.retryAfter, c.MaxRetryAfter)
		}
		wait := c.backoff(attempt)
		if r.retryAfter > wait {
			wait = r.retryAfter
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("source: GET %s: %w (while waiting to retry after: %v)", redactURL(u), ctx.Err(), r.err)
		case <-t.C:
		}
	}
}

// backoff is MinBackoff doubled per attempt, capped at MaxBackoff, with
// "equal jitter": half fixed, half random.
func (c *HTTPJSON) backoff(attempt int) time.Duration {
	d := c.MinBackoff
	for i := 1; i < attempt && d < c.MaxBackoff; i++ {
		d *= 2
	}
	if d > c.MaxBackoff {
		d = c.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// try makes one request.
func (c *HTTPJSON) try(ctx context.Context, u *url.URL, body *bytes.Buffer) (string, error) {
	rctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("source: GET %s: %w", redactURL(u), err)
	}
	if err := c.Auth.apply(req); err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("source: GET %s: %w", redactURL(u), ctx.Err())
		}
		return "", &retryable{err: c.timeoutError(rctx, u, transportError(u, err))}
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
		se := &HTTPStatusError{URL: redactURL(u), StatusCode: resp.StatusCode, Status: resp.Status}
		switch {
		case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout,
			resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented:
			return "", &retryable{err: se, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
		}
		return "", se
	}
	body.Reset()
	// The limit applies to the bytes received and again to the bytes
	// decompressed: a small gzipped page may inflate without bound.
	r, err := Decompress(io.LimitReader(resp.Body, c.MaxPageBytes+1))
	if err == nil {
		_, err = body.ReadFrom(io.LimitReader(r, c.MaxPageBytes+1))
	}
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("source: GET %s: %w", redactURL(u), ctx.Err())
		}
		return "", &retryable{err: c.timeoutError(rctx, u, transportError(u, err))}
	}
	if int64(body.Len()) > c.MaxPageBytes {
		return "", fmt.Errorf("source: GET %s: page larger than %d bytes", redactURL(u), c.MaxPageBytes)
	}
	return nextLink(resp.Header.Get("Link")), nil
}

// timeoutError names the request timeout when it is what ended the request
// (the transport only says "context deadline exceeded").
func (c *HTTPJSON) timeoutError(rctx context.Context, u *url.URL, err error) error {
	if errors.Is(rctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("source: GET %s: no complete response within the %v timeout: %w", redactURL(u), c.Timeout, context.DeadlineExceeded)
	}
	return err
}

// pageDecoder walks one page with json.Decoder tokens, streaming items.
type pageDecoder struct {
	e      *emitter
	index  map[string]int
	fields [][]byte
	items  []string // path of the items array
	next   []string // path of the next link or cursor

	dec        *json.Decoder
	page       int
	row        int64
	nextValue  string
	foundItems bool
}

var (
	jsonTrue  = []byte("true")
	jsonFalse = []byte("false")
)

func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func samePath(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func isPrefix(prefix, path []string) bool {
	return len(prefix) < len(path) && samePath(prefix, path[:len(prefix)])
}

func (d *pageDecoder) decode(body []byte) error {
	d.dec = json.NewDecoder(bytes.NewReader(body))
	d.dec.UseNumber()
	if err := d.value(nil); err != nil {
		return err
	}
	if _, err := d.dec.Token(); err != io.EOF {
		return errors.New("invalid JSON: data after the page")
	}
	return nil
}

// value reads the value at path.
func (d *pageDecoder) value(path []string) error {
	if samePath(path, d.items) {
		return d.itemsArray()
	}
	tok, err := d.dec.Token()
	if err != nil {
		return jsonError(d.dec, err)
	}
	if samePath(path, d.next) {
		switch v := tok.(type) {
		case string:
			d.nextValue = v
		case json.Number:
			d.nextValue = string(v)
		case json.Delim:
			return d.skip(v)
		}
		return nil
	}
	if tok != json.Delim('{') {
		if dl, ok := tok.(json.Delim); ok {
			return d.skip(dl)
		}
		return nil
	}
	for d.dec.More() {
		kt, err := d.dec.Token()
		if err != nil {
			return jsonError(d.dec, err)
		}
		sub := append(path[:len(path):len(path)], kt.(string))
		if samePath(sub, d.items) || samePath(sub, d.next) || isPrefix(sub, d.items) || isPrefix(sub, d.next) {
			if err := d.value(sub); err != nil {
				return err
			}
			continue
		}
		if err := d.skipValue(); err != nil {
			return err
		}
	}
	_, err = d.dec.Token() // '}'
	return jsonError(d.dec, err)
}

func (d *pageDecoder) itemsArray() error {
	tok, err := d.dec.Token()
	if err != nil {
		return jsonError(d.dec, err)
	}
	switch tok {
	case nil:
		d.foundItems = true // null: an empty page
		return nil
	case json.Delim('['):
	default:
		return fmt.Errorf("the items at %q are not an array", strings.Join(d.items, "."))
	}
	d.foundItems = true
	for d.dec.More() {
		if err := d.item(); err != nil {
			return err
		}
	}
	_, err = d.dec.Token() // ']'
	return jsonError(d.dec, err)
}

// item maps one array element onto the fields and emits it.
func (d *pageDecoder) item() error {
	d.row++
	e := d.e
	for i := range d.fields {
		d.fields[i] = nil
		e.nested[i] = false
	}
	tok, err := d.dec.Token()
	if err != nil {
		return jsonError(d.dec, err)
	}
	if tok != json.Delim('{') {
		if dl, ok := tok.(json.Delim); ok {
			if err := d.skip(dl); err != nil {
				return err
			}
		}
		e.rep.Rows++
		e.reject(d.row, "", "item is not a JSON object")
		return nil
	}
	for d.dec.More() {
		kt, err := d.dec.Token()
		if err != nil {
			return jsonError(d.dec, err)
		}
		i, ok := d.index[kt.(string)]
		if !ok {
			if err := d.skipValue(); err != nil {
				return err
			}
			continue
		}
		vt, err := d.dec.Token()
		if err != nil {
			return jsonError(d.dec, err)
		}
		e.nested[i] = false
		switch v := vt.(type) {
		case string:
			d.fields[i] = bytesOf(v)
		case json.Number:
			d.fields[i] = bytesOf(string(v))
		case bool:
			d.fields[i] = jsonFalse
			if v {
				d.fields[i] = jsonTrue
			}
		case nil:
			d.fields[i] = nil
		case json.Delim:
			d.fields[i] = nil
			e.nested[i] = true
			if err := d.skip(v); err != nil {
				return err
			}
		}
	}
	if _, err := d.dec.Token(); err != nil { // '}'
		return jsonError(d.dec, err)
	}
	return e.row(d.row, d.fields)
}

func (d *pageDecoder) skipValue() error {
	tok, err := d.dec.Token()
	if err != nil {
		return jsonError(d.dec, err)
	}
	if dl, ok := tok.(json.Delim); ok {
		return d.skip(dl)
	}
	return nil
}

// skip consumes the rest of the object or array opened by dl.
func (d *pageDecoder) skip(dl json.Delim) error {
	if dl != '{' && dl != '[' {
		return nil
	}
	for depth := 1; depth > 0; {
		tok, err := d.dec.Token()
		if err != nil {
			return jsonError(d.dec, err)
		}
		if dl, ok := tok.(json.Delim); ok {
			if dl == '{' || dl == '[' {
				depth++
			} else {
				depth--
			}
		}
	}
	return nil
}

// jsonError describes a syntax error by its offset only.
func jsonError(dec *json.Decoder, err error) error {
	if err == nil {
		return nil
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("invalid JSON: the page ends at byte %d inside a value", dec.InputOffset())
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte %d", se.Offset)
	}
	return fmt.Errorf("invalid JSON near byte %d", dec.InputOffset())
}
