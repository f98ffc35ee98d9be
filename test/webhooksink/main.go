// Command webhooksink is the demo's message receiver, a thin wrapper
// around test/sinks (independent of the operator's code). It verifies
// each webhook request's Standard Webhooks signature, counts messages by
// webhook-id, and answers GET /stats with the counts as JSON
// ({"received","unique","badSignatures","byVariant"}, read by
// hack/demo.sh) and GET /messages with every request. With -smtp-addr it
// also runs an SMTP server there and answers GET /smtp/stats with its
// counts.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"time"

	"github.com/retention-dev/retention-operator/test/sinks"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9099", "HTTP listen address")
	key := flag.String("key", "", "signing key (whsec_…, several space-separated while rotating); empty accepts unsigned requests")
	smtpAddr := flag.String("smtp-addr", "", "also run an SMTP receiver on this address (e.g. 127.0.0.1:2525) and serve GET /smtp/stats")
	flag.Parse()

	hook, err := sinks.NewWebhook(*key)
	if err != nil {
		log.Fatalf("webhooksink: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", hook)
	if *smtpAddr != "" {
		mail, err := sinks.StartSMTP(*smtpAddr)
		if err != nil {
			log.Fatalf("webhooksink: %v", err)
		}
		mux.HandleFunc("GET /smtp/stats", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(mail.Stats())
		})
		log.Printf("webhooksink: SMTP on %s", mail.Addr())
	}
	log.Printf("webhooksink: HTTP on %s", *addr)
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Fatalf("webhooksink: %v", srv.ListenAndServe())
}
