package source

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// memSink keeps copies of everything it is sent.
type memSink struct {
	txs   []Transaction
	custs []Customer
	sums  []Summary
	fail  error // returned from every call when set
}

func (s *memSink) Transaction(t *Transaction) error {
	c := *t
	c.CustomerID = bytes.Clone(t.CustomerID)
	s.txs = append(s.txs, c)
	return s.fail
}

func (s *memSink) Customer(c *Customer) error {
	k := *c
	k.Attributes = maps.Clone(c.Attributes)
	s.custs = append(s.custs, k)
	return s.fail
}

func (s *memSink) Summary(m *Summary) error {
	k := *m
	k.Attributes = maps.Clone(m.Attributes)
	s.sums = append(s.sums, k)
	return s.fail
}

func day(s string) int32 {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return int32(t.Unix() / 86400)
}

func gz(t testing.TB, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// assertNoPersonalData fails when a rejection sample (or the error text)
// contains any of the raw values.
func assertNoPersonalData(t *testing.T, rep *Report, err error, values ...string) {
	t.Helper()
	var texts []string
	if rep != nil {
		for _, s := range rep.Samples {
			texts = append(texts, s.String())
			if !knownReason(s.Reason) {
				t.Errorf("reason %q is not one of the fixed reasons", s.Reason)
			}
		}
	}
	if err != nil {
		texts = append(texts, err.Error())
	}
	for _, txt := range texts {
		for _, v := range values {
			if v != "" && strings.Contains(txt, v) {
				t.Errorf("%q contains the raw value %q", txt, v)
			}
		}
	}
}

func wantErrAs[T error](t *testing.T, err error) T {
	t.Helper()
	var target T
	if !errors.As(err, &target) {
		t.Fatalf("error %v (%T), want %T", err, err, target)
	}
	return target
}

// endless reads head, then body repeated: a "10 GB" download that goes on
// for ever. It stops with io.EOF after limit bytes (when limit > 0) so that
// a reader that fails to stop it makes a test fail, not hang. n counts the
// bytes handed out; it may be read from another goroutine.
type endless struct {
	head, body []byte
	limit      int64
	n          atomic.Int64
}

func (e *endless) Read(p []byte) (int, error) {
	pos := e.n.Load()
	if e.limit > 0 {
		if pos >= e.limit {
			return 0, io.EOF
		}
		if rest := e.limit - pos; int64(len(p)) > rest {
			p = p[:rest]
		}
	}
	n := 0
	for n < len(p) {
		at := pos + int64(n)
		if at < int64(len(e.head)) {
			n += copy(p[n:], e.head[at:])
			continue
		}
		n += copy(p[n:], e.body[(at-int64(len(e.head)))%int64(len(e.body)):])
	}
	e.n.Add(int64(n))
	return n, nil
}

// gzipStream gzips src on the fly: a compressed body that inflates for
// ever. Closing the returned reader stops the compressing goroutine.
func gzipStream(src io.Reader) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		zw := gzip.NewWriter(pw)
		_, err := io.Copy(zw, src)
		if err == nil {
			err = zw.Close()
		}
		_ = pw.CloseWithError(err)
	}()
	return pr
}

// wantErrText fails unless err is non-nil and contains every part.
func wantErrText(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

// readerFunc is an io.Reader.
type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// roundTripFunc is an http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// bodyClient answers every request with 200 and the body made by body.
func bodyClient(body func() io.ReadCloser) *http.Client {
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Status: "200 OK", Header: http.Header{}, Body: body(), Request: r}, nil
	})}
}
