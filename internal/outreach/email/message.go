package email

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"mime"
	netmail "net/mail"
	"net/url"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/retention-dev/retention-operator/internal/outreach/channel"
)

// outgoing is one rendered (and maybe signed) message with its envelope.
type outgoing struct {
	rcpt string // RCPT TO address
	// utf8 is set when the envelope or header has a non-ASCII address,
	// which needs the server's SMTPUTF8 extension.
	utf8 bool
	// sig is the DKIM-Signature field (with its CRLF) written before
	// data, "" when unsigned.
	sig  string
	data *bytes.Buffer // header and body, CRLF line ends, not dot-stuffed
}

var bufferPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (o *outgoing) free() {
	// Buffers grown by an unusually large message are left to the GC so
	// the pool does not pin them.
	if o.data.Cap() <= 1<<20 {
		o.data.Reset()
		bufferPool.Put(o.data)
	}
	o.data = nil
}

// compose validates and renders m. It returns nil and a Fail result when m
// cannot be sent as an email.
func (s *Sender) compose(m *channel.Message) (*outgoing, channel.Result) {
	if !isHeaderSafeKey(m.Key) {
		return nil, failResult("invalid key")
	}
	// CR or LF would let the value end its header field and start another
	// (header injection); checked first so that no parser's leniency
	// decides.
	if strings.ContainsAny(m.Address, "\r\n") {
		return nil, failResult("invalid address")
	}
	to, err := netmail.ParseAddress(m.Address)
	if err != nil || !isAddrSpec(to.Address) {
		return nil, failResult("invalid address")
	}
	if strings.ContainsAny(m.Subject, "\r\n") {
		return nil, failResult("invalid subject")
	}
	var listUnsubscribe string
	if m.UnsubscribeURL != "" {
		if !isHeaderSafeHTTPS(m.UnsubscribeURL) {
			return nil, failResult("invalid unsubscribe url")
		}
		listUnsubscribe = "<" + m.UnsubscribeURL + ">"
		if s.mailto != "" {
			// Folded after the comma: the URL alone may fill a line.
			listUnsubscribe += ",\r\n <mailto:" + s.mailto + ">"
		}
	}
	msgID := messageID(m.Key, s.fromDomain)
	if len(msgID) > maxUnfoldedValue {
		return nil, failResult("invalid key")
	}

	out := &outgoing{
		rcpt: to.Address,
		utf8: !isASCII(to.Address),
		data: bufferPool.Get().(*bytes.Buffer),
	}
	if err := s.render(out.data, m, to.Address, msgID, listUnsubscribe); err != nil {
		out.free()
		return nil, failResult("invalid message")
	}
	if s.dkim != nil {
		sig, err := sign(s.dkim, out.data.Bytes())
		if err != nil {
			out.free()
			return nil, failResult("dkim")
		}
		out.sig = sig
	}
	return out, channel.Result{}
}

// maxUnfoldedValue bounds header values that must stay on one line (a
// msg-id or URL cannot be folded inside): with the field name they stay
// under SMTP's 998-octet line limit.
const maxUnfoldedValue = 900

// render writes the message's header and body to w.
func (s *Sender) render(w io.Writer, m *channel.Message, to, msgID, listUnsubscribe string) error {
	var h message.Header
	var contentType, boundary string
	if m.HTML != "" {
		boundary = newBoundary()
		contentType = `multipart/alternative; boundary="` + boundary + `"`
	} else {
		contentType = "text/plain; charset=utf-8"
	}
	// A field whose value holds its own folding (CRLF and a space) is
	// written as is; go-message folds the others, at spaces only, so it
	// would leave a subject of encoded words on one long line.
	fields := [...]struct{ k, v string }{
		{"From", s.fromHeader},
		{"To", to},
		{"Subject", encodeSubject(m.Subject)},
		{"Date", s.now().Format(dateLayout)},
		{"Message-ID", msgID},
		// The key as it is, for receivers (an ESP's webhooks, a test
		// inbox) that look up a message by it.
		{"X-Retention-Idempotency-Key", m.Key},
		{"List-Unsubscribe", listUnsubscribe},
		{"List-Unsubscribe-Post", ifSet(listUnsubscribe, "List-Unsubscribe=One-Click")},
		{"MIME-Version", "1.0"},
		{"Content-Type", contentType},
		{"Content-Transfer-Encoding", ifSet(boundary == "", "quoted-printable")},
	}
	// Header.Add puts a field on top, so adding from the last keeps this
	// order in the output.
	for i := len(fields) - 1; i >= 0; i-- {
		switch f := fields[i]; {
		case f.v == "":
		case strings.Contains(f.v, "\r\n"):
			h.AddRaw([]byte(f.k + ": " + f.v + "\r\n"))
		default:
			h.Add(f.k, f.v)
		}
	}
	mw, err := message.CreateWriter(w, h)
	if err != nil {
		return err
	}
	if boundary == "" {
		if _, err := io.WriteString(mw, m.Text); err != nil {
			return err
		}
		return mw.Close()
	}
	for _, p := range [...]struct{ contentType, body string }{
		// Alternatives go from plainest to richest (RFC 2046 5.1.4).
		{"text/plain; charset=utf-8", m.Text},
		{"text/html; charset=utf-8", m.HTML},
	} {
		var ph message.Header
		ph.Add("Content-Transfer-Encoding", "quoted-printable")
		ph.Add("Content-Type", p.contentType)
		pw, err := mw.CreatePart(ph)
		if err != nil {
			return err
		}
		if _, err := io.WriteString(pw, p.body); err != nil {
			return err
		}
		if err := pw.Close(); err != nil {
			return err
		}
	}
	return mw.Close()
}

// dateLayout is RFC 5322's date-time.
const dateLayout = "Mon, 02 Jan 2006 15:04:05 -0700"

func ifSet[T comparable](cond T, v string) string {
	var zero T
	if cond == zero {
		return ""
	}
	return v
}

// newBoundary returns a random multipart boundary starting with "=_",
// which quoted-printable never produces ('=' is always followed by two hex
// digits or a line end), so no encoded body line can contain it.
func newBoundary() string {
	var b [16]byte
	rand.Read(b[:])
	return "=_" + hex.EncodeToString(b[:])
}

func sign(opts *dkim.SignOptions, data []byte) (string, error) {
	signer, err := dkim.NewSigner(opts)
	if err != nil {
		return "", err
	}
	if _, err := signer.Write(data); err != nil {
		signer.Close()
		return "", err
	}
	if err := signer.Close(); err != nil {
		return "", err
	}
	return signer.Signature(), nil
}

// encodeSubject returns s as is when it is printable ASCII, else as RFC
// 2047 encoded words in the shorter of the B and Q encodings (B for most
// non-Latin scripts, Q for mostly-ASCII text), one word a line: the
// encoder separates words with a space and a word has none, so each space
// becomes a fold.
func encodeSubject(s string) string {
	q := mime.QEncoding.Encode("utf-8", s)
	if q == s {
		return s
	}
	words := q
	if b := mime.BEncoding.Encode("utf-8", s); len(b) < len(q) {
		words = b
	}
	return strings.ReplaceAll(words, " ", "\r\n ")
}

// messageID returns the msg-id for an idempotency key: the key made into
// a dot-atom, "@", the From domain. It depends on nothing else, so a
// resent message has the Message-ID of the first send.
func messageID(key, domain string) string {
	var b strings.Builder
	b.Grow(len(key) + len(domain) + 8)
	b.WriteByte('<')
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(key); i++ {
		c := key[i]
		// Every atext character but '=' stands for itself; '=' and all
		// else become "=XX", which keeps the mapping one-to-one. Dots are
		// escaped too, as a dot-atom cannot start or end with one or
		// have two in a row.
		if isAtext(c) && c != '=' {
			b.WriteByte(c)
		} else {
			b.WriteByte('=')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
		}
	}
	b.WriteByte('@')
	b.WriteString(domain)
	b.WriteByte('>')
	return b.String()
}

// isAtext reports whether c is an RFC 5322 atext character.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// isHeaderSafeKey reports whether key is non-empty printable ASCII without
// spaces (channel.Key always is), so it can be a header value as is.
func isHeaderSafeKey(key string) bool {
	if key == "" || len(key) > maxUnfoldedValue {
		return false
	}
	for i := 0; i < len(key); i++ {
		if key[i] <= ' ' || key[i] > '~' {
			return false
		}
	}
	return true
}

// isHeaderSafeHTTPS reports whether u is an absolute https URL that can sit
// between angle brackets in List-Unsubscribe on one line: printable ASCII,
// no spaces or angle brackets.
func isHeaderSafeHTTPS(u string) bool {
	if len(u) > maxUnfoldedValue {
		return false
	}
	for i := 0; i < len(u); i++ {
		if c := u[i]; c <= ' ' || c > '~' || c == '<' || c == '>' {
			return false
		}
	}
	p, err := url.Parse(u)
	return err == nil && p.Scheme == "https" && p.Host != "" && p.User == nil
}

// isAddrSpec reports whether addr is local@domain with a dot-atom local
// part and a host-name domain; non-ASCII (UTF-8) is allowed in both, for
// servers with SMTPUTF8. Quoted local parts and address literals, which
// retention mail has no use for, are not.
func isAddrSpec(addr string) bool {
	if len(addr) > 254 || !utf8.ValidString(addr) {
		return false
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return false
	}
	local, domain := addr[:at], addr[at+1:]
	if local == "" || len(local) > 64 || local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return false
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; c < utf8.RuneSelf && c != '.' && !isAtext(c) {
			return false
		}
	}
	return isDomain(domain)
}

// asciiAddrSpec reports whether addr is an ASCII addr-spec (isAddrSpec) and
// returns its domain.
func asciiAddrSpec(addr string) (domain string, ok bool) {
	if !isASCII(addr) || !isAddrSpec(addr) {
		return "", false
	}
	return addr[strings.LastIndexByte(addr, '@')+1:], true
}

// isDomain reports whether d is a host name: dot-separated labels of
// letters, digits and hyphens (or UTF-8), none empty or longer than 63.
func isDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			ok := c >= utf8.RuneSelf || c == '-' ||
				'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
			if !ok {
				return false
			}
		}
	}
	return true
}

func isASCIIDomain(d string) bool { return isASCII(d) && isDomain(d) }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
