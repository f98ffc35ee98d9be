package unsubscribe

import (
	"context"
	"errors"
	"html/template"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/retention-dev/retention-operator/internal/store"
)

const (
	// maxBodyBytes bounds a POST body: RFC 8058's is
	// "List-Unsubscribe=One-Click", a few dozen bytes even as multipart.
	maxBodyBytes = 4 << 10
	// storeTimeout bounds recording one opt-out.
	storeTimeout = 10 * time.Second
	// allowedMethods is the Allow header of a 405.
	allowedMethods = "GET, HEAD, POST"
	// viaLink is OptOutAddParams.Via for opt-outs from this handler.
	viaLink = "unsubscribe-link"
)

// OptOutAdder records opt-outs; store.Store is one.
type OptOutAdder interface {
	OptOutAdd(ctx context.Context, params *store.OptOutAddParams) error
}

// HandlerConfig configures Handler.
type HandlerConfig struct {
	// Key signs the tokens (see ValidateKey).
	Key []byte
	// OptOuts records the opt-outs.
	OptOuts OptOutAdder
	// OnOptOut, if set, is called with the channel after each recorded
	// opt-out, repeats included (for a metric).
	OnOptOut func(channel string)
	// Log receives the channel and the outcome of each request, never a
	// customer id, a token or a client address.
	Log logr.Logger

	// RateLimit bounds the opt-outs recorded per second over all clients
	// (each is a store write), with bursts of Burst; more get 429 with
	// Retry-After. Refused tokens and GET pages do not count: they touch
	// nothing, and counting them would let a flood of garbage keep
	// customers from unsubscribing. Zero means DefaultRateLimit and
	// DefaultBurst.
	RateLimit float64
	Burst     int
	// ClientRateLimit, if set, bounds every request of one client (an IPv4
	// address or an IPv6 /64) per second, with bursts of ClientBurst
	// (DefaultClientBurst if zero), checked before anything else. At most
	// MaxClients (DefaultMaxClients if zero) clients' buckets are kept,
	// the least recently seen evicted. It is off by default because the
	// endpoint is usually behind an Ingress, whose address every request
	// would share, and a mailbox provider posts many customers'
	// one-click opt-outs from a few addresses.
	ClientRateLimit float64
	ClientBurst     int
	MaxClients      int
	// ClientAddr returns a request's client IP address for the per-client
	// limit; nil means the host of r.RemoteAddr. Behind a proxy, return
	// the address it forwards, but only if clients cannot reach the
	// handler except through it (otherwise they pick their own bucket).
	ClientAddr func(r *http.Request) string
	// OnRateLimited, if set, is called with ScopeGlobal or ScopeClient for
	// each request refused with 429 (for a metric).
	OnRateLimited func(scope string)
}

// Handler serves one-click unsubscribe at PathPrefix + token:
//
//   - POST records the opt-out and answers 200 with a short page. It is what
//     RFC 8058 mail clients send (body "List-Unsubscribe=One-Click", form or
//     multipart encoded) and what the confirmation page's button sends; the
//     body is not required. A repeated POST records nothing new and answers
//     200 again.
//   - GET and HEAD answer a confirmation page whose button POSTs to the
//     same URL. They change nothing, because link scanners and previews
//     follow every link in a message.
//
// A malformed token answers 400; a forged or altered one 403 on POST and
// 404 on GET; other paths 404; other methods 405; a store failure 503, and
// the page does not claim the opt-out was recorded; a request over a rate
// limit 429 with Retry-After (see HandlerConfig.RateLimit). The token is
// verified before anything else is done with it, so a forged one costs an
// HMAC and never reaches the store. Pages carry neither the customer id
// nor the token, and forbid scripts, framing and referrers.
//
// Handler panics if cfg.Key fails ValidateKey, cfg.OptOuts is nil or a
// rate limit is negative: all are start-up configuration, to be checked
// before.
func Handler(cfg HandlerConfig) http.Handler {
	h, err := newHandler(cfg, time.Now)
	if err != nil {
		panic(err)
	}
	return h
}

// newHandler is Handler with the rate limits' clock, which tests drive.
func newHandler(cfg HandlerConfig, now func() time.Time) (*handler, error) {
	if err := ValidateKey(cfg.Key); err != nil {
		return nil, err
	}
	if cfg.OptOuts == nil {
		return nil, errors.New("unsubscribe: Handler needs OptOuts")
	}
	l, err := newLimits(cfg, now)
	if err != nil {
		return nil, err
	}
	return &handler{cfg: cfg, limits: l}, nil
}

type handler struct {
	cfg    HandlerConfig
	limits *limits
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setPageHeaders(w.Header())
	// First, so a flooding client costs no more than this.
	if wait, ok := h.limits.allowClient(r); !ok {
		h.rateLimited(w, r, ScopeClient, wait)
		return
	}
	token, ok := strings.CutPrefix(r.URL.Path, PathPrefix)
	if !ok || token == "" || strings.Contains(token, "/") {
		writePage(w, http.StatusNotFound, notFoundPage, "")
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost:
	default:
		w.Header().Set("Allow", allowedMethods)
		writePage(w, http.StatusMethodNotAllowed, methodPage, "")
		return
	}
	channel, customerID, err := Verify(h.cfg.Key, token)
	if err != nil {
		h.rejectToken(w, r, err)
		return
	}
	if r.Method != http.MethodPost {
		h.cfg.Log.V(1).Info("unsubscribe confirmation shown", "channel", channel)
		writePage(w, http.StatusOK, confirmPage, channel)
		return
	}
	h.unsubscribe(w, r, channel, customerID)
}

// rejectToken answers a token that Verify refused. The channel in such a
// token is not trusted, so it is not logged.
func (h *handler) rejectToken(w http.ResponseWriter, r *http.Request, err error) {
	if !errors.Is(err, ErrForged) {
		// Garbled links are common (mail clients wrap and cut URLs) and
		// say nothing about an attack.
		h.cfg.Log.V(1).Info("unsubscribe refused", "outcome", "malformed token", "method", r.Method)
		writePage(w, http.StatusBadRequest, invalidPage, "")
		return
	}
	// A well-formed token with a wrong tag was altered or made with
	// another key (an old key after a rotation, or a forgery).
	h.cfg.Log.Info("unsubscribe refused", "outcome", "forged token", "method", r.Method)
	// A POST tries to act: forbidden. A GET only looks at a page that,
	// for this token, does not exist.
	status := http.StatusForbidden
	if r.Method != http.MethodPost {
		status = http.StatusNotFound
	}
	writePage(w, status, invalidPage, "")
}

// unsubscribe records the opt-out of a verified POST.
func (h *handler) unsubscribe(w http.ResponseWriter, r *http.Request, channel, customerID string) {
	// The body's content is not needed (an empty one is accepted), but it
	// is read, bounded, so a client cannot stream into the server.
	body := http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if _, err := io.Copy(io.Discard, body); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.cfg.Log.Info("unsubscribe refused", "channel", channel, "outcome", "body too large")
			writePage(w, http.StatusRequestEntityTooLarge, tooLargePage, "")
			return
		}
		h.cfg.Log.Info("unsubscribe refused", "channel", channel, "outcome", "body unreadable")
		writePage(w, http.StatusBadRequest, invalidPage, "")
		return
	}
	// Checked after the body so that a refused body takes no token.
	if wait, ok := h.limits.allowWrite(); !ok {
		h.rateLimited(w, r, ScopeGlobal, wait)
		return
	}
	// The customer asked; finish recording even if the client hangs up
	// now, since it may never ask again.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), storeTimeout)
	defer cancel()
	err := h.cfg.OptOuts.OptOutAdd(ctx, &store.OptOutAddParams{Channel: channel, CustomerID: customerID, Via: viaLink})
	if err != nil {
		// Store errors name fields, never their values.
		h.cfg.Log.Error(err, "unsubscribe failed", "channel", channel, "outcome", "store error")
		w.Header().Set("Retry-After", "60")
		writePage(w, http.StatusServiceUnavailable, unavailablePage, "")
		return
	}
	if h.cfg.OnOptOut != nil {
		h.cfg.OnOptOut(channel)
	}
	h.cfg.Log.Info("unsubscribed", "channel", channel, "outcome", "recorded")
	writePage(w, http.StatusOK, donePage, channel)
}

// rateLimited answers a request over a limit. The client's address is not
// logged: it is personal data, and the scope says enough for operators.
func (h *handler) rateLimited(w http.ResponseWriter, r *http.Request, scope string, wait time.Duration) {
	if h.cfg.OnRateLimited != nil {
		h.cfg.OnRateLimited(scope)
	}
	h.cfg.Log.V(1).Info("unsubscribe refused", "outcome", "rate limited", "scope", scope, "method", r.Method)
	w.Header().Set("Retry-After", retryAfter(wait))
	writePage(w, http.StatusTooManyRequests, tooManyPage, "")
}

// setPageHeaders makes pages inert: no scripts or other resources, no
// framing, forms only to this origin, not cached or indexed (the URL holds
// a token), and no Referer leaking the URL.
func setPageHeaders(h http.Header) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Robots-Tag", "noindex, nofollow")
}

// pageKind selects a page's wording.
type pageKind int

const (
	confirmPage pageKind = iota
	donePage
	invalidPage
	notFoundPage
	methodPage
	tooLargePage
	unavailablePage
	tooManyPage
)

type pageData struct {
	Title   string
	Message string
	// Channel is shown on the confirmation and done pages.
	Channel string
	// Form adds the one-click button.
	Form bool
}

// pages are the title, message and button of each kind of page.
var pages = map[pageKind]pageData{
	confirmPage:     {Title: "Unsubscribe", Message: "Do you want to stop receiving these messages?", Form: true},
	donePage:        {Title: "You have been unsubscribed", Message: "You will not receive these messages any more."},
	invalidPage:     {Title: "Invalid link", Message: "This unsubscribe link is not valid. Please use the link from the message you received."},
	notFoundPage:    {Title: "Not found", Message: "There is nothing here."},
	methodPage:      {Title: "Method not allowed", Message: "Open the unsubscribe link in a browser."},
	tooLargePage:    {Title: "Request too large", Message: "The request was too large."},
	unavailablePage: {Title: "Please try again", Message: "We could not unsubscribe you right now. Please try again in a few minutes."},
	tooManyPage:     {Title: "Please try again", Message: "Too many requests right now. Please try again in a moment."},
}

func writePage(w http.ResponseWriter, status int, kind pageKind, channel string) {
	d := pages[kind]
	d.Channel = channel
	w.WriteHeader(status)
	// The status is sent; only the client's connection can fail now, and
	// its error names the client's address, which is not logged.
	_ = pageTemplate.Execute(w, &d)
}

// pageTemplate has no action on its form: a form without one posts to the
// page's own URL, so the page never contains the token.
var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>{{.Title}}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto; padding: 0 1rem; line-height: 1.5; color: #222; }
button { font: inherit; padding: 0.5rem 1.25rem; cursor: pointer; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{- if .Channel}}
<p>Channel: {{.Channel}}</p>
{{- end}}
{{- if .Form}}
<form method="post">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button>
</form>
{{- end}}
</body>
</html>
`))
