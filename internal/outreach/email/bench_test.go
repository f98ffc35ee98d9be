package email

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/retention-dev/retention-operator/internal/outreach/channel"
)

// BenchmarkSend sends to a local go-smtp server (in this process, so its
// CPU and allocations count too) from Concurrency goroutines, as the runner
// does, and reports messages per second.
func BenchmarkSend(b *testing.B) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		dkim []byte
	}{
		{"unsigned", nil},
		{"dkim-rsa2048", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))},
		{"dkim-ed25519", pkcs8(b, edKey)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ts := startServer(b, serverOptions{discard: true})
			cfg := ts.config()
			cfg.UnsubscribeMailto = "unsubscribe@shop.example"
			if bc.dkim != nil {
				cfg.RelaySigns = false
				cfg.DKIM = &DKIMConfig{Domain: "shop.example", Selector: "s1", PrivateKeyPEM: bc.dkim}
			}
			s := newSender(b, cfg)
			msg := func(i int64) *channel.Message {
				m := testMessage(fmt.Sprintf("0b5e4a57-1f1d-4a4e-9a39-4f6f1b2b9c10/c%d", i), fmt.Sprintf("c%d@customer.example", i))
				m.HTML = "<p>Hello,</p><p>we miss you. Here is <b>20%</b> off your next order.</p>"
				m.UnsubscribeURL = "https://shop.example/u/0b5e4a57/c1?sig=abcdefabcdefabcdef"
				return m
			}
			// Warm the pool so dialling is not measured.
			for i := range s.Concurrency() {
				if res := s.Send(b.Context(), msg(int64(-i-1))); res.Outcome != channel.Sent {
					b.Fatalf("warm-up Send = %+v", res)
				}
			}
			var next atomic.Int64
			var failed atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for range s.Concurrency() {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						if res := s.Send(b.Context(), msg(i)); res.Outcome != channel.Sent {
							failed.Add(1)
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d sends failed", n)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
