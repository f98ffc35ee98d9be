package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/retention-dev/retention-operator/internal/outreach/channel"
)

func benchMessage() *channel.Message {
	m := message("0b5e8f5c-3f0e-4a7e-9a51-3c2f4f1f9d11", "customer-000123")
	m.Locale, m.TimeZone = "en-GB", "Europe/London"
	m.Fields = map[string]any{"firstName": "Ana", "plan": "pro", "spend": 1234.5, "lastOrder": "2025-01-31T10:00:00Z"}
	m.Text = "Hi Ana, it has been a while since your last order. Here is 10% off your next one."
	m.UnsubscribeURL = "https://shop.example/unsubscribe?t=0123456789abcdef"
	return m
}

// BenchmarkSend: signed sends over Concurrency goroutines to a local sink
// that replies 204 and checks nothing. The sink shares the CPUs, so ns/op
// includes its net/http server cost too.
func BenchmarkSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	s, err := New(Config{URL: srv.URL + "/hook", SigningKeys: []string{newSigningKey(b)}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((s.Concurrency() + procs - 1) / procs)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		m := benchMessage()
		for pb.Next() {
			if res := s.Send(context.Background(), m); res.Outcome != channel.Sent {
				b.Errorf("Send = %+v", res)
				return
			}
		}
	})
}

// BenchmarkBuild is the sender's own work per message without net/http:
// encoding the body and signing it.
func BenchmarkBuild(b *testing.B) {
	for _, keys := range []int{0, 1, 2} {
		b.Run(map[int]string{0: "unsigned", 1: "one key", 2: "two keys"}[keys], func(b *testing.B) {
			cfg := Config{URL: "http://sink.invalid/"}
			for range keys {
				cfg.SigningKeys = append(cfg.SigningKeys, newSigningKey(b))
			}
			s, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			m := benchMessage()
			b.ReportAllocs()
			for b.Loop() {
				r := s.requests.Get().(*request)
				st := s.stampAt(s.now())
				r.body, err = appendPayload(r.body[:0], m, st.rfc3339, r.fields.append)
				if err != nil {
					b.Fatal(err)
				}
				r.id[0], r.ts[0] = m.Key, st.header
				if r.macs != nil {
					r.sign(m.Key, st.header)
				}
				r.release()
			}
		})
	}
}
