// Command webhooksink is the demo's message receiver: it verifies each
// request's Standard Webhooks signature (with the project's own Go
// library, independent of the operator's code), counts messages by
// idempotency key, and answers GET /stats with the counts.
package main

import (
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"sync"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9099", "listen address")
	key := flag.String("key", "", "signing key (whsec_…); empty accepts unsigned requests")
	flag.Parse()
	var verifier *standardwebhooks.Webhook
	if *key != "" {
		v, err := standardwebhooks.NewWebhook(*key)
		if err != nil {
			log.Fatal(err)
		}
		verifier = v
	}
	var mu sync.Mutex
	seen := map[string]int{}
	stats := struct {
		Received      int            `json:"received"`
		Unique        int            `json:"unique"`
		BadSignatures int            `json:"badSignatures"`
		ByVariant     map[string]int `json:"byVariant"`
	}{ByVariant: map[string]int{}}
	http.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_ = json.NewEncoder(w).Encode(stats)
	})
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if verifier != nil && verifier.Verify(body, r.Header) != nil {
			stats.BadSignatures++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var p struct {
			Data struct {
				Variant string `json:"variant"`
			} `json:"data"`
		}
		_ = json.Unmarshal(body, &p)
		stats.Received++
		id := r.Header.Get("webhook-id")
		if seen[id]++; seen[id] == 1 {
			stats.Unique++
			stats.ByVariant[p.Data.Variant]++
		}
		w.WriteHeader(http.StatusNoContent)
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}
