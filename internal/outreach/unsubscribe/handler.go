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
	// customer id or a token.
	Log logr.Logger
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
// the page does not claim the opt-out was recorded. Pages carry neither
// the customer id nor the token, and forbid scripts, framing and
// referrers.
//
// Handler panics if cfg.Key fails ValidateKey or cfg.OptOuts is nil: both
// are start-up configuration, to be checked before.
func Handler(cfg HandlerConfig) http.Handler {
	if err := ValidateKey(cfg.Key); err != nil {
		panic(err)
	}
	if cfg.OptOuts == nil {
		panic("unsubscribe: Handler needs OptOuts")
	}
	return &handler{cfg: cfg}
}

type handler struct {
	cfg HandlerConfig
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setPageHeaders(w.Header())
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
