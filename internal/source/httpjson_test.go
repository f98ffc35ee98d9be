package source

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
)

// fastRetries keeps test waits short.
func fastRetries(h *HTTPJSON) *HTTPJSON {
	h.MinBackoff, h.MaxBackoff = time.Millisecond, 5*time.Millisecond
	return h
}

func TestHTTPJSONPaging(t *testing.T) {
	t.Parallel()
	pages := []string{
		`{"meta": {"count": 3, "tags": ["a", {"b": [1, 2]}]},
		  "data": [
		    {"customer_id": "c1", "timestamp": "2024-01-31", "amount": 12.5, "extra": {"ignored": [true]}},
		    {"customer_id": "نیلوفر", "timestamp": "2024-02-01T10:00:00Z", "amount": "7.25", "plan": "gold"}
		  ],
		  "links": {"next": "%s"}}`,
		`{"data": [{"amount": 1e1, "timestamp": "20240202", "customer_id": "c3", "plan": null}], "links": {"next": null}}`,
	}
	for _, mode := range []string{"relative", "absolute", "cursor", "link-header"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var srv *httptest.Server
			srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "Bearer t0k" {
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				second := r.URL.Query().Get("page") == "2" || r.URL.Query().Get("cursor") == "abc"
				if !second {
					next := map[string]string{"relative": "?page=2", "absolute": srv.URL + "/v1/orders?page=2",
						"cursor": "", "link-header": ""}[mode]
					body := fmt.Sprintf(pages[0], next)
					if mode == "cursor" {
						body = strings.Replace(body, `"links": {"next": ""}`, `"paging": {"cursor": "abc"}`, 1)
					}
					if mode == "link-header" {
						w.Header().Set("Link", `<`+srv.URL+`/v1/orders?page=1>; rel="prev", </v1/orders?page=2>; rel="next"`)
					}
					fmt.Fprint(w, body)
					return
				}
				fmt.Fprint(w, pages[1])
			}))
			defer srv.Close()
			h := &HTTPJSON{URL: srv.URL + "/v1/orders?limit=2", Auth: Auth{BearerToken: "t0k"}, NextField: "links.next",
				Mapping: Mapping{Attributes: []Attribute{{Name: "plan", Type: customer.String}}}}
			if mode == "cursor" {
				h.CursorField, h.CursorParam = "paging.cursor", "cursor"
			}
			s := &memSink{}
			rep, err := h.Read(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			want := []Transaction{
				{Row: 1, CustomerID: []byte("c1"), Day: day("2024-01-31"), Amount: 12.5},
				{Row: 2, CustomerID: []byte("نیلوفر"), Day: day("2024-02-01"), Amount: 7.25},
				{Row: 3, CustomerID: []byte("c3"), Day: day("2024-02-02"), Amount: 10},
			}
			if !reflect.DeepEqual(s.txs, want) || rep.Rows != 3 || rep.Rejected != 0 {
				t.Fatalf("%+v\n%+v", rep, s.txs)
			}
			if len(s.custs) != 1 || s.custs[0].ID != "نیلوفر" || s.custs[0].Attributes["plan"] != "gold" {
				t.Errorf("customers %+v", s.custs)
			}
		})
	}
}

func TestHTTPJSONTopLevelArrayAndCustomers(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `[{"id": "c1", "vip": true, "score": "4.5", "optout": "yes", "mail": "a@b.c"}, {"id": "c2", "vip": false}]`)
	}))
	defer srv.Close()
	h := &HTTPJSON{URL: srv.URL, Kind: Customers, ItemsPath: ".", Mapping: Mapping{
		CustomerID: "id",
		Attributes: []Attribute{{Name: "vip", Type: customer.Bool}, {Name: "score", Type: customer.Number}},
		Contact:    ContactColumns{Email: "mail", OptOut: "optout"},
	}}
	s := &memSink{}
	rep, err := h.Read(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	want := []Customer{
		{Row: 1, ID: "c1", Attributes: customer.Attributes{"vip": true, "score": 4.5}, Contact: customer.Contact{Email: "a@b.c", OptOut: true}},
		{Row: 2, ID: "c2", Attributes: customer.Attributes{"vip": false}},
	}
	if !reflect.DeepEqual(s.custs, want) || rep.Customers != 2 {
		t.Fatalf("%+v %+v", rep, s.custs)
	}
}

func TestHTTPJSONBadItems(t *testing.T) {
	t.Parallel()
	body := `{"data": [
		{"customer_id": "c1", "timestamp": "2024-01-31", "amount": 1},
		"not an object",
		[1, 2],
		{"customer_id": {"nested": "alice"}, "timestamp": "2024-01-31", "amount": 1},
		{"customer_id": "bob", "timestamp": "yesterday", "amount": 1},
		{"customer_id": "carol", "timestamp": "2024-01-31", "amount": "12,50"},
		{"customer_id": "dave", "timestamp": "2024-01-31", "amount": true},
		{"customer_id": null, "timestamp": "2024-01-31", "amount": 1},
		{"customer_id": "erin", "timestamp": "2024-01-31"},
		{"customer_id": "c2", "timestamp": "2024-01-31", "amount": 2}
	]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, body) }))
	defer srv.Close()
	s := &memSink{}
	rep, err := (&HTTPJSON{URL: srv.URL, Mapping: Mapping{MaxRejectedRatio: 1}}).Read(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rows != 10 || rep.Rejected != 8 || len(s.txs) != 2 || s.txs[1].Row != 10 {
		t.Fatalf("%+v %+v", rep, s.txs)
	}
	want := []RowError{
		{Row: 2, Input: "transactions", Reason: "item is not a JSON object"},
		{Row: 3, Input: "transactions", Reason: "item is not a JSON object"},
		{Row: 4, Input: "transactions", Column: "customer_id", Reason: reasonScalar},
		{Row: 5, Input: "transactions", Column: "timestamp", Reason: reasonDate},
		{Row: 6, Input: "transactions", Column: "amount", Reason: reasonDecimal},
	}
	if !reflect.DeepEqual(rep.Samples, want) {
		t.Errorf("samples %+v", rep.Samples)
	}
	for _, v := range []string{"alice", "bob", "carol", "yesterday", "12,50"} {
		for _, smp := range rep.Samples {
			if strings.Contains(smp.String(), v) {
				t.Errorf("%q in %q", v, smp)
			}
		}
	}
	// Too many of them fail the read with the counts.
	_, err = (&HTTPJSON{URL: srv.URL}).Read(context.Background(), &memSink{})
	if e := wantErrAs[*TooManyRejectedError](t, err); e.Report.Rejected != 8 {
		t.Errorf("%+v", e.Report)
	}
}

func TestHTTPJSONMalformedJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ body, want string }{
		{`{"data": [{"customer_id": "c1", "timestamp": "2024-01-31", "amount": 1}, {"customer_id": "alice" "x"}]}`, "invalid JSON at byte"},
		{`{"data": [{"customer_id": "c1"`, "invalid JSON"},
		{`{"items": []}`, `has no "data" array`},
		{`{"data": {"a": 1}}`, "not an array"},
		{`{"data": []} {"data": []}`, "data after the page"},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, tc.body) }))
		_, err := (&HTTPJSON{URL: srv.URL}).Read(context.Background(), &memSink{})
		srv.Close()
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "alice") {
			t.Errorf("%s: error %v, want %q", tc.body, err, tc.want)
		}
	}
}

func TestHTTPJSONRetries(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n := calls.Add(1); n {
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 2:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		case 3:
			// A body cut short: the connection dies mid-page.
			w.Header().Set("Content-Length", "500")
			fmt.Fprint(w, `{"data": [{"customer_id": "c1", "timestamp": "2024-01-31", "amount": 1},`)
		default:
			fmt.Fprint(w, `{"data": [{"customer_id": "c1", "timestamp": "2024-01-31", "amount": 1}]}`)
		}
	}))
	defer srv.Close()
	s := &memSink{}
	start := time.Now()
	rep, err := fastRetries(&HTTPJSON{URL: srv.URL}).Read(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 4 || len(s.txs) != 1 || rep.Rows != 1 {
		t.Fatalf("%d calls, %+v", calls.Load(), rep)
	}
	if time.Since(start) < time.Second {
		t.Errorf("Retry-After: 1 not honoured (%v)", time.Since(start))
	}
}

func TestHTTPJSONFailures(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		switch r.URL.Path {
		case "/401":
			http.Error(w, "token t0k-secret for alice is wrong", http.StatusUnauthorized)
		case "/500":
			http.Error(w, "alice broke it", http.StatusInternalServerError)
		case "/long-retry":
			w.Header().Set("Retry-After", strconv.Itoa(3600))
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
		case "/same":
			fmt.Fprint(w, `{"data": [], "next": "/same"}`)
		}
	}))
	defer srv.Close()
	for _, tc := range []struct {
		path      string
		h         HTTPJSON
		calls     int32
		want      string
		status    int
		sentinels []string
	}{
		{"/401", HTTPJSON{Auth: Auth{BearerToken: "t0k-secret"}}, 1, "401 Unauthorized (check the credentials)", 401, []string{"t0k-secret", "alice"}},
		{"/500", HTTPJSON{MaxAttempts: 3}, 3, "500 Internal Server Error (gave up after 3 attempts)", 500, []string{"alice"}},
		{"/long-retry", HTTPJSON{}, 1, "longer than", 503, nil},
		{"/slow", HTTPJSON{Timeout: 50 * time.Millisecond, MaxAttempts: 2}, 2, "gave up after 2 attempts", 0, nil},
		{"/same", HTTPJSON{}, 2, "points to the same page", 0, nil}, // ?api_key=… then /same, then /same again
	} {
		calls.Store(0)
		h := tc.h
		h.URL = srv.URL + tc.path + "?api_key=KEY123"
		_, err := fastRetries(&h).Read(context.Background(), &memSink{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.path, err, tc.want)
			continue
		}
		if got := calls.Load(); got != tc.calls {
			t.Errorf("%s: %d calls, want %d", tc.path, got, tc.calls)
		}
		for _, s := range append(tc.sentinels, "KEY123") {
			if strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q echoes %q", tc.path, err, s)
			}
		}
		if tc.status != 0 {
			if se := wantErrAs[*HTTPStatusError](t, err); se.StatusCode != tc.status {
				t.Errorf("%s: status %d", tc.path, se.StatusCode)
			}
		}
	}
}

// TestHTTPJSONEndlessPagesBoundedByContext: a server that always has a
// next page; the read stops at the caller's deadline (or at MaxPages).
func TestHTTPJSONEndlessPagesBoundedByContext(t *testing.T) {
	t.Parallel()
	var pages atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := pages.Add(1)
		fmt.Fprintf(w, `{"data": [{"customer_id": "c%d", "timestamp": "2024-01-31", "amount": 1}], "next": "?page=%d"}`, n, n+1)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	rep, err := (&HTTPJSON{URL: srv.URL}).Read(ctx, &memSink{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v", err)
	}
	if time.Since(start) > 5*time.Second || rep.Rows < 2 {
		t.Errorf("took %v, %d rows", time.Since(start), rep.Rows)
	}
	_, err = (&HTTPJSON{URL: srv.URL, MaxPages: 3}).Read(context.Background(), &memSink{})
	if err == nil || !strings.Contains(err.Error(), "more than 3 pages") {
		t.Errorf("MaxPages: %v", err)
	}
}

func TestHTTPJSONSummaries(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"data": [
			{"customer_id": "c1", "frequency": 3, "recency": 10.5, "age": 20, "monetary": "12.5", "plan": "gold"},
			{"customer_id": "c2", "frequency": 0, "recency": 0, "age": 3, "monetary": 0},
			{"customer_id": "c3", "frequency": 1.5, "recency": 1, "age": 3, "monetary": 1},
			{"customer_id": "c4", "frequency": 2, "recency": 5, "age": 3, "monetary": 1},
			{"customer_id": "c5", "frequency": 0, "recency": 1, "age": 3, "monetary": 1},
			{"customer_id": "c6", "frequency": 1, "recency": 1, "age": 3, "monetary": -1}
		]}`)
	}))
	defer srv.Close()
	s := &memSink{}
	rep, err := (&HTTPJSON{URL: srv.URL, Kind: Summaries, Mapping: Mapping{MaxRejectedRatio: 1,
		Attributes: []Attribute{{Name: "plan"}}}}).Read(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	want := []Summary{
		{Row: 1, ID: "c1", Frequency: 3, Recency: 10.5, Age: 20, Monetary: 12.5, Attributes: customer.Attributes{"plan": "gold"}},
		{Row: 2, ID: "c2", Age: 3, Attributes: customer.Attributes{}},
	}
	if !reflect.DeepEqual(s.sums, want) || rep.Summaries != 2 || rep.Rejected != 4 {
		t.Fatalf("%+v\n%+v", rep, s.sums)
	}
	reasons := []string{}
	for _, smp := range rep.Samples {
		reasons = append(reasons, smp.Column+": "+smp.Reason)
	}
	wantReasons := []string{"frequency: " + reasonInteger, "recency: " + reasonRecency, "recency: " + reasonZeroFreq, "monetary: " + reasonNonNegative}
	if !reflect.DeepEqual(reasons, wantReasons) {
		t.Errorf("reasons %q", reasons)
	}
}
