package source

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Hostile HTTP servers (issue #19): servers that hang, that loop their
// next-page links, that send for ever. Every read ends through a timeout,
// the context, loop detection or a size limit, with an error naming it.
// Each test also runs under a generous context deadline, so a regression
// fails with "context deadline exceeded" instead of hanging.

const hostileDeadline = 30 * time.Second

// hostileServer serves the hostile behaviours by path. Handlers that wait
// end when the client goes away.
func hostileServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := "customer_id,timestamp,amount\n"
		switch r.URL.Path {
		case "/no-answer": // accepts the connection, never answers
			<-r.Context().Done()
		case "/stall-body": // headers and a little body, then nothing
			fmt.Fprint(w, hdr+"c1,2024-01-01,1\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case "/endless.csv": // valid rows for ever (up to 1 GiB)
			_, _ = io.Copy(w, &endless{head: []byte(hdr), body: []byte("c1,2024-01-01,1\n"), limit: 1 << 30})
		case "/endless.csv.gz": // the same, gzipped on the fly: a decompression bomb
			zw := gzip.NewWriter(w)
			_, _ = io.Copy(zw, &endless{head: []byte(hdr), body: []byte("c1,2024-01-01,1\n"), limit: 1 << 30})
			_ = zw.Close()
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestCSVOverHTTPHostileServers: CSV from a URL (open.go).
func TestCSVOverHTTPHostileServers(t *testing.T) {
	t.Parallel()
	srv := hostileServer(t)
	const stall = 200 * time.Millisecond
	stalling := func(path string) Opener {
		return func(ctx context.Context) (io.ReadCloser, error) {
			return openURL(ctx, srv.URL+path+"?sig=SECRET", Auth{}, stall)
		}
	}
	for _, tc := range []struct {
		name     string
		open     Opener
		deadline time.Duration // the caller's context deadline, when not 0
		c        CSV
		is       error
		want     []string
	}{
		{name: "never answers: stall timeout", open: stalling("/no-answer"), is: ErrStalled,
			want: []string{"opening transactions", "GET " + srv.URL + "/no-answer: source: the server stopped sending (nothing for 200ms)"}},
		{name: "stalls mid-body: stall timeout", open: stalling("/stall-body"), is: ErrStalled,
			want: []string{"reading transactions header", "GET " + srv.URL + "/stall-body: source: the server stopped sending (nothing for 200ms)"}},
		{name: "never answers: caller's deadline", open: FromURL(srv.URL+"/no-answer?sig=SECRET", Auth{}), deadline: 300 * time.Millisecond,
			is: context.DeadlineExceeded, want: []string{"opening transactions", "GET " + srv.URL + "/no-answer: context deadline exceeded"}},
		{name: "stalls mid-body: caller's deadline", open: FromURL(srv.URL+"/stall-body", Auth{}), deadline: 300 * time.Millisecond,
			is: context.DeadlineExceeded, want: []string{"reading transactions header: context deadline exceeded"}},
		{name: "endless body", open: FromURL(srv.URL+"/endless.csv", Auth{}), c: CSV{MaxBytes: 4 << 20},
			is: ErrInputTooLarge, want: []string{"transactions goes on past 4194304 bytes"}},
		{name: "endless gzipped body", open: FromURL(srv.URL+"/endless.csv.gz", Auth{}), c: CSV{MaxBytes: 4 << 20},
			is: ErrInputTooLarge, want: []string{"transactions goes on past 4194304 bytes (after decompression)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), hostileDeadline)
			defer cancel()
			if tc.deadline > 0 {
				ctx, cancel = context.WithTimeout(ctx, tc.deadline)
				defer cancel()
			}
			c := tc.c
			c.Transactions = tc.open
			var txs int64
			rep, err := c.Read(ctx, SinkFuncs{OnTransaction: func(*Transaction) error { txs++; return nil }})
			if !errors.Is(err, tc.is) {
				t.Fatalf("error %v, want %v", err, tc.is)
			}
			wantErrText(t, err, tc.want...)
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error %q shows the URL's query", err)
			}
			// Nothing beyond the limit reached the sink: 16-byte rows after a 29-byte header.
			if max := (c.MaxBytes - 29) / 16; c.MaxBytes > 0 && txs > max || rep.Transactions != txs {
				t.Errorf("%d transactions (report %+v), at most %d expected", txs, rep, max)
			}
		})
	}
}

// TestHTTPJSONHostileServers: servers that hang or send for ever.
func TestHTTPJSONHostileServers(t *testing.T) {
	t.Parallel()
	srv := hostileServer(t)
	items := `{"data": [` + strings.Repeat(`{"customer_id": "c1", "timestamp": "2024-01-01", "amount": 1}, `, 10)
	var produced atomic.Int64 // bytes generated for the current endless body
	endlessJSON := func(gzipped bool) func() io.ReadCloser {
		return func() io.ReadCloser {
			src := &endless{head: []byte(items), body: []byte(`{"customer_id": "c1", "timestamp": "2024-01-01", "amount": 1}, `), limit: 1 << 30}
			counted := readerFunc(func(p []byte) (int, error) {
				n, err := src.Read(p)
				produced.Add(int64(n))
				return n, err
			})
			if gzipped {
				return gzipStream(counted)
			}
			return io.NopCloser(counted)
		}
	}
	for _, tc := range []struct {
		name     string
		h        HTTPJSON
		deadline time.Duration
		is       error
		want     []string
		maxBytes int64 // bytes the endless body may have produced
	}{
		{name: "never answers: request timeout", h: HTTPJSON{URL: srv.URL + "/no-answer", Timeout: 100 * time.Millisecond, MaxAttempts: 2},
			is: context.DeadlineExceeded, want: []string{"GET " + srv.URL + "/no-answer: no complete response within the 100ms timeout: context deadline exceeded (gave up after 2 attempts)"}},
		{name: "stalls mid-body: request timeout", h: HTTPJSON{URL: srv.URL + "/stall-body", Timeout: 100 * time.Millisecond, MaxAttempts: 2},
			is: context.DeadlineExceeded, want: []string{"GET " + srv.URL + "/stall-body: no complete response within the 100ms timeout"}},
		{name: "stalls mid-body: caller's deadline", h: HTTPJSON{URL: srv.URL + "/stall-body"}, deadline: 300 * time.Millisecond,
			is: context.DeadlineExceeded, want: []string{"GET " + srv.URL + "/stall-body: context deadline exceeded"}},
		{name: "endless body", h: HTTPJSON{URL: "http://api.example/v1/orders", MaxPageBytes: 1 << 20, Client: bodyClient(endlessJSON(false))},
			want: []string{"GET http://api.example/v1/orders: page larger than 1048576 bytes"}, maxBytes: 1<<20 + 1},
		{name: "endless gzipped body", h: HTTPJSON{URL: "http://api.example/v1/orders", MaxPageBytes: 1 << 20, Client: bodyClient(endlessJSON(true))},
			want: []string{"page larger than 1048576 bytes"}, maxBytes: 64 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Not parallel: the endless bodies share the produced counter.
			ctx, cancel := context.WithTimeout(context.Background(), hostileDeadline)
			defer cancel()
			if tc.deadline > 0 {
				ctx, cancel = context.WithTimeout(ctx, tc.deadline)
				defer cancel()
			}
			produced.Store(0)
			rep, err := fastRetries(&tc.h).Read(ctx, &memSink{})
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("error %v, want %v", err, tc.is)
			}
			wantErrText(t, err, tc.want...)
			if tc.maxBytes > 0 && produced.Load() > tc.maxBytes {
				t.Errorf("%d bytes generated, want at most %d", produced.Load(), tc.maxBytes)
			}
			if rep != nil && rep.Rows != 0 {
				t.Errorf("report %+v: rows from a page that was not read whole", rep)
			}
		})
	}
}

// TestHTTPJSONPaginationLoops: next-page links that go round in a circle
// are caught when they come back to a page already read.
func TestHTTPJSONPaginationLoops(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	page := func(next string) string {
		return `{"data": [{"customer_id": "c1", "timestamp": "2024-01-01", "amount": 1}], "next": ` + next + `}`
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		q := r.URL.Query()
		switch r.URL.Path + "?" + q.Get("p") + q.Get("cursor") {
		case "/ab?": // A -> B -> A
			fmt.Fprint(w, page(`"/ab?p=b"`))
		case "/ab?b":
			fmt.Fprint(w, page(`"/ab"`))
		case "/abcb?": // A -> B -> C -> B
			fmt.Fprint(w, page(`"?p=b"`))
		case "/abcb?b":
			fmt.Fprint(w, page(`"?p=c"`))
		case "/abcb?c":
			fmt.Fprint(w, page(`"?p=b"`))
		case "/same?": // A -> A, absolute this time
			fmt.Fprint(w, page(`"http://`+r.Host+`/same"`))
		case "/cursor?": // cursors x -> y -> x
			fmt.Fprint(w, page(`null, "cursor": "x"`))
		case "/cursor?x":
			fmt.Fprint(w, page(`null, "cursor": "y"`))
		case "/cursor?y":
			fmt.Fprint(w, page(`null, "cursor": "x"`))
		case "/link?", "/link?b": // Link headers A -> B -> A
			next := "</link?p=b>"
			if q.Get("p") == "b" {
				next = "</link>"
			}
			w.Header().Set("Link", next+`; rel="next"`)
			fmt.Fprint(w, page("null"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name  string
		h     HTTPJSON
		calls int32
		want  string
	}{
		{"A B A", HTTPJSON{URL: srv.URL + "/ab"}, 2, "page 2: the next-page link leads back to page 1; stopping instead of reading the same pages forever"},
		{"A B C B", HTTPJSON{URL: srv.URL + "/abcb"}, 3, "page 3: the next-page link leads back to page 2"},
		{"A A", HTTPJSON{URL: srv.URL + "/same"}, 1, "page 1: the next-page link points to the same page"},
		{"cursor x y x", HTTPJSON{URL: srv.URL + "/cursor", CursorField: "cursor", CursorParam: "cursor"}, 3,
			"page 3: the next-page link leads back to page 2"},
		{"Link header A B A", HTTPJSON{URL: srv.URL + "/link"}, 2, "page 2: the next-page link leads back to page 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Not parallel: calls is shared.
			ctx, cancel := context.WithTimeout(context.Background(), hostileDeadline)
			defer cancel()
			calls.Store(0)
			rep, err := tc.h.Read(ctx, &memSink{})
			wantErrText(t, err, tc.want)
			if got := calls.Load(); got != tc.calls {
				t.Errorf("%d requests, want %d", got, tc.calls)
			}
			if rep == nil || rep.Rows != int64(tc.calls) {
				t.Errorf("report %+v, want the %d pages read counted", rep, tc.calls)
			}
		})
	}
}
