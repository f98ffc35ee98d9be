package email

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/retention-dev/retention-operator/internal/outreach/channel"
)

var testNow = time.Date(2026, 3, 14, 9, 26, 53, 0, time.FixedZone("", 3*3600+30*60))

func newSender(t testing.TB, cfg Config) *Sender {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testMessage(key, address string) *channel.Message {
	return &channel.Message{
		Key:        key,
		RunID:      "run-1",
		CustomerID: "c-1",
		Address:    address,
		Subject:    "We miss you",
		Text:       "Hello,\nwe miss you.\n",
	}
}

// parsed is a received message read back with the standard library (not
// the library that wrote it).
type parsed struct {
	header  mail.Header
	subject string
	// parts maps a part's media type to its decoded body (LF line ends).
	parts map[string]string
	// order lists the parts' media types in message order.
	order []string
}

func parseMessage(t *testing.T, data []byte) parsed {
	t.Helper()
	for i, line := range bytes.SplitAfter(data, []byte("\n")) {
		if len(line) > 0 && !bytes.HasSuffix(line, []byte("\r\n")) && i < bytes.Count(data, []byte("\n")) {
			t.Errorf("line %d ends without CRLF: %q", i+1, line)
		}
		if len(line) > 1000 {
			t.Errorf("line %d longer than 998 octets", i+1)
		}
	}
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("not a message: %v\n%s", err, data)
	}
	p := parsed{header: msg.Header, parts: map[string]string{}}
	p.subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatalf("Subject %q: %v", msg.Header.Get("Subject"), err)
	}
	if v := msg.Header.Get("MIME-Version"); v != "1.0" {
		t.Errorf("MIME-Version = %q", v)
	}
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type: %v", err)
	}
	addPart := func(mediaType string, params map[string]string, body io.Reader) {
		if cs := params["charset"]; !strings.EqualFold(cs, "utf-8") {
			t.Errorf("%s charset = %q, want utf-8", mediaType, cs)
		}
		b, err := io.ReadAll(body)
		if err != nil {
			t.Fatalf("%s body: %v", mediaType, err)
		}
		p.parts[mediaType] = strings.ReplaceAll(string(b), "\r\n", "\n")
		p.order = append(p.order, mediaType)
	}
	if mediaType != "multipart/alternative" {
		if cte := msg.Header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
			t.Errorf("Content-Transfer-Encoding = %q", cte)
		}
		addPart(mediaType, params, quotedprintable.NewReader(msg.Body))
		return p
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextPart() // decodes quoted-printable
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("part: %v", err)
		}
		pt, pp, err := mime.ParseMediaType(part.Header.Get("Content-Type"))
		if err != nil {
			t.Fatalf("part Content-Type: %v", err)
		}
		addPart(pt, pp, part)
	}
	return p
}

func TestSendRendersMIME(t *testing.T) {
	ts := startServer(t, serverOptions{})
	cfg := ts.config()
	cfg.Now = func() time.Time { return testNow }
	cfg.UnsubscribeMailto = "unsubscribe@shop.example"
	withMailto := newSender(t, cfg)
	cfg.UnsubscribeMailto = ""
	noMailto := newSender(t, cfg)

	persian := "تخفیف ویژهٔ بهاری برای شما، مریم عزیز — ۲۰٪ تا پایان هفته"
	tests := []struct {
		name   string
		sender *Sender
		m      channel.Message
		// wantParts in order; wantUnsubscribe is List-Unsubscribe, "" for
		// none.
		wantParts       []string
		wantUnsubscribe string
	}{{
		name:      "text only",
		sender:    withMailto,
		m:         channel.Message{Subject: "We miss you", Text: "Hi Ann,\ncome back.\n"},
		wantParts: []string{"text/plain"},
	}, {
		name:   "text and html with unsubscribe and mailto",
		sender: withMailto,
		m: channel.Message{
			Subject: "We miss you", Text: "Hi Ann,\ncome back.\n", HTML: "<p>Hi Ann,</p><p>come back.</p>",
			UnsubscribeURL: "https://shop.example/u/abc123?sig=x_y-z",
		},
		wantParts:       []string{"text/plain", "text/html"},
		wantUnsubscribe: "<https://shop.example/u/abc123?sig=x_y-z>, <mailto:unsubscribe@shop.example>",
	}, {
		name:   "unsubscribe without mailto",
		sender: noMailto,
		m: channel.Message{
			Subject: "We miss you", Text: "Hi", UnsubscribeURL: "https://shop.example/u/abc123",
		},
		wantParts:       []string{"text/plain"},
		wantUnsubscribe: "<https://shop.example/u/abc123>",
	}, {
		name:   "persian subject and body",
		sender: withMailto,
		m: channel.Message{
			Subject: persian, Text: "سلام مریم،\nدلمان برایتان تنگ شده.\n", HTML: "<p dir=\"rtl\">سلام مریم</p>",
			UnsubscribeURL: "https://shop.example/u/fa",
		},
		wantParts:       []string{"text/plain", "text/html"},
		wantUnsubscribe: "<https://shop.example/u/fa>, <mailto:unsubscribe@shop.example>",
	}, {
		name:   "long lines and quoted-printable specials",
		sender: withMailto,
		m: channel.Message{
			Subject: strings.Repeat("Spring sale ", 20) + "=?not-encoded?=",
			Text:    strings.Repeat("x=y ", 300) + "\n.\n..leading dots\nFrom the start\n",
			HTML:    "<p>" + strings.Repeat("é", 500) + "</p>",
		},
		wantParts: []string{"text/plain", "text/html"},
	}}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.m
			m.Key = fmt.Sprintf("3f7c1a2e-run/customer%%40%d", i)
			m.Address = fmt.Sprintf("ann%d@customer.example", i)
			if res := tt.sender.Send(t.Context(), &m); res.Outcome != channel.Sent {
				t.Fatalf("Send = %+v", res)
			}
			got := ts.received()
			last := got[len(got)-1]
			if last.from != "hello@shop.example" || last.to != m.Address {
				t.Errorf("envelope %q -> %q", last.from, last.to)
			}
			if last.helo != "sender.test" {
				t.Errorf("EHLO %q, want sender.test", last.helo)
			}
			p := parseMessage(t, last.data)
			if from, err := p.header.AddressList("From"); err != nil || len(from) != 1 ||
				from[0].Name != "Shop" || from[0].Address != "hello@shop.example" {
				t.Errorf("From = %v, %v", from, err)
			}
			if to, err := p.header.AddressList("To"); err != nil || len(to) != 1 || to[0].Address != m.Address {
				t.Errorf("To = %v, %v", to, err)
			}
			if p.subject != m.Subject {
				t.Errorf("Subject = %q, want %q", p.subject, m.Subject)
			}
			if d, err := p.header.Date(); err != nil || !d.Equal(testNow) {
				t.Errorf("Date = %v, %v; want %v", d, err, testNow)
			}
			if id, want := p.header.Get("Message-Id"), messageID(m.Key, "shop.example"); id != want {
				t.Errorf("Message-ID = %q, want %q", id, want)
			}
			if k := p.header.Get("X-Retention-Idempotency-Key"); k != m.Key {
				t.Errorf("X-Retention-Idempotency-Key = %q, want %q", k, m.Key)
			}
			if got := p.header.Get("List-Unsubscribe"); got != tt.wantUnsubscribe {
				t.Errorf("List-Unsubscribe = %q, want %q", got, tt.wantUnsubscribe)
			}
			wantPost := ""
			if tt.wantUnsubscribe != "" {
				wantPost = "List-Unsubscribe=One-Click"
			}
			if got := p.header.Get("List-Unsubscribe-Post"); got != wantPost {
				t.Errorf("List-Unsubscribe-Post = %q, want %q", got, wantPost)
			}
			if strings.Join(p.order, ",") != strings.Join(tt.wantParts, ",") {
				t.Fatalf("parts %v, want %v", p.order, tt.wantParts)
			}
			wantText := m.Text
			if m.HTML == "" && !strings.HasSuffix(wantText, "\n") {
				// SMTP ends a message's last line (RFC 5321 4.1.1.4); in
				// a multipart message that line is the closing boundary.
				wantText += "\n"
			}
			if got := p.parts["text/plain"]; got != wantText {
				t.Errorf("text/plain = %q, want %q", got, wantText)
			}
			if m.HTML != "" && p.parts["text/html"] != m.HTML {
				t.Errorf("text/html = %q, want %q", p.parts["text/html"], m.HTML)
			}
		})
	}
	if n := ts.conns.Load(); n != 2 {
		t.Errorf("server saw %d connections for %d sends from two senders, want one each, reused", n, len(tests))
	}
}

func TestMessageIDSameOnResend(t *testing.T) {
	ts := startServer(t, serverOptions{})
	s := newSender(t, ts.config())
	key := channel.Key("0b5e4a57-1f1d-4a4e-9a39-4f6f1b2b9c10", "cust 42/ü@x")
	for _, k := range []string{key, key, key + "x"} {
		if res := s.Send(t.Context(), testMessage(k, "a@customer.example")); res.Outcome != channel.Sent {
			t.Fatalf("Send = %+v", res)
		}
	}
	var ids []string
	for _, r := range ts.received() {
		h, err := gomail.CreateReader(bytes.NewReader(r.data))
		if err != nil {
			t.Fatal(err)
		}
		id, err := h.Header.MessageID()
		if err != nil {
			t.Fatalf("Message-ID %q is not a msg-id: %v", h.Header.Get("Message-Id"), err)
		}
		ids = append(ids, id)
	}
	if ids[0] != ids[1] {
		t.Errorf("resend has Message-ID %q, first send %q", ids[1], ids[0])
	}
	if ids[0] == ids[2] {
		t.Errorf("different keys share Message-ID %q", ids[0])
	}
	if !strings.HasSuffix(ids[0], "@shop.example") {
		t.Errorf("Message-ID %q not in From's domain", ids[0])
	}
}

func TestMessageIDEncoding(t *testing.T) {
	keys := []string{
		"run/c1",
		"run/c.1", "run/c..1", ".run/c1.", // dots a dot-atom cannot have as they are
		"run/c=2E1",            // an escape sequence in the key itself
		"run/a@b", "run/a%40b", // channel.Key path-escapes '@' to %40, but a caller may not
		"run/(x),<y>;z:\"q\"[w]\\",
		channel.Key("run", "ünï cödé"),
		"R/abc", "r/abc", // case matters
	}
	seen := map[string]string{}
	for _, key := range keys {
		id := messageID(key, "shop.example")
		if again := messageID(key, "shop.example"); again != id {
			t.Errorf("messageID(%q) not deterministic: %q then %q", key, id, again)
		}
		var h gomail.Header
		h.Set("Message-Id", id)
		got, err := h.MessageID()
		if err != nil {
			t.Errorf("messageID(%q) = %q: not a msg-id: %v", key, id, err)
			continue
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("keys %q and %q share Message-ID %q", prev, key, got)
		}
		seen[got] = key
	}
}

func TestDKIM(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaPKIX, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaRecord := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(rsaPKIX)
	edRecord := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(edPub)

	tests := []struct {
		name   string
		pem    []byte
		record string
		algo   string
	}{
		{"rsa pkcs1", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), rsaRecord, "rsa-sha256"},
		{"rsa pkcs8", pkcs8(t, rsaKey), rsaRecord, "rsa-sha256"},
		{"ed25519 pkcs8", pkcs8(t, edKey), edRecord, "ed25519-sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, serverOptions{})
			cfg := ts.config()
			cfg.RelaySigns = false
			cfg.DKIM = &DKIMConfig{Domain: "shop.example", Selector: "rt2026", PrivateKeyPEM: tt.pem}
			cfg.UnsubscribeMailto = "unsubscribe@shop.example"
			s := newSender(t, cfg)
			m := testMessage("run/c1", "ann@customer.example")
			m.Subject = "بازگشت شما را جشن می‌گیریم"
			m.HTML = "<p>Hi</p>"
			m.UnsubscribeURL = "https://shop.example/u/" + strings.Repeat("t", 120)
			if res := s.Send(t.Context(), m); res.Outcome != channel.Sent {
				t.Fatalf("Send = %+v", res)
			}
			data := ts.received()[0].data
			if !bytes.Contains(data, []byte("a="+tt.algo)) {
				t.Errorf("signature is not %s:\n%s", tt.algo, data[:bytes.Index(data, []byte("\r\n\r\n"))])
			}
			lookups := 0
			opts := &dkim.VerifyOptions{LookupTXT: func(domain string) ([]string, error) {
				lookups++
				if domain != "rt2026._domainkey.shop.example" {
					return nil, fmt.Errorf("unexpected lookup %q", domain)
				}
				return []string{tt.record}, nil
			}}
			vs, err := dkim.VerifyWithOptions(bytes.NewReader(data), opts)
			if err != nil || len(vs) != 1 {
				t.Fatalf("Verify: %d verifications, %v", len(vs), err)
			}
			v := vs[0]
			if v.Err != nil {
				t.Fatalf("signature does not verify: %v", v.Err)
			}
			if v.Domain != "shop.example" || lookups != 1 {
				t.Errorf("d=%q after %d lookups", v.Domain, lookups)
			}
			for _, want := range []string{"From", "Subject", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post"} {
				if !containsFold(v.HeaderKeys, want) {
					t.Errorf("%s not signed (h=%v)", want, v.HeaderKeys)
				}
			}

			// The signature covers what RFC 8058 says it must: changing
			// either unsubscribe header, or adding one, breaks it.
			for _, tamper := range []struct{ old, new string }{
				{"List-Unsubscribe: <https://shop.example/", "List-Unsubscribe: <https://evil.example/"},
				{"List-Unsubscribe-Post: List-Unsubscribe=One-Click", "List-Unsubscribe-Post: List-Unsubscribe=Two-Clicks"},
				{"\r\n\r\n", "\r\nList-Unsubscribe: <https://evil.example/>\r\n\r\n"},
				{"Hello,", "Howdy,"},
			} {
				changed := bytes.Replace(data, []byte(tamper.old), []byte(tamper.new), 1)
				if bytes.Equal(changed, data) {
					t.Fatalf("tamper %q: not found in message", tamper.old)
				}
				vs, err := dkim.VerifyWithOptions(bytes.NewReader(changed), opts)
				if err != nil || len(vs) != 1 || vs[0].Err == nil {
					t.Errorf("tampered (%q -> %q) message still verifies", tamper.old, tamper.new)
				}
			}
		})
	}
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkcs8(t testing.TB, key any) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PRIVATE KEY", der)
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

func TestTLSAndAuth(t *testing.T) {
	tests := []struct {
		name   string
		server serverOptions
		// config changes the sender configuration from ts.config().
		config  func(*Config)
		want    channel.Result
		wantTLS bool
	}{{
		name:    "starttls with auth",
		server:  serverOptions{tls: serverStartTLS, username: "app", password: "s3cret"},
		config:  func(c *Config) { c.Username, c.Password = "app", "s3cret" },
		want:    channel.Result{Outcome: channel.Sent},
		wantTLS: true,
	}, {
		name:    "implicit tls with auth",
		server:  serverOptions{tls: serverImplicit, username: "app", password: "s3cret"},
		config:  func(c *Config) { c.Username, c.Password = "app", "s3cret" },
		want:    channel.Result{Outcome: channel.Sent},
		wantTLS: true,
	}, {
		name:    "starttls without auth",
		server:  serverOptions{tls: serverStartTLS},
		want:    channel.Result{Outcome: channel.Sent},
		wantTLS: true,
	}, {
		name:   "starttls wrong password",
		server: serverOptions{tls: serverStartTLS, username: "app", password: "s3cret"},
		config: func(c *Config) { c.Username, c.Password = "app", "wrong" },
		want:   channel.Result{Outcome: channel.Fail, Reason: "smtp 535 5.7.8"},
	}, {
		name:   "implicit tls wrong password",
		server: serverOptions{tls: serverImplicit, username: "app", password: "s3cret"},
		config: func(c *Config) { c.Username, c.Password = "app", "wrong" },
		want:   channel.Result{Outcome: channel.Fail, Reason: "smtp 535 5.7.8"},
	}, {
		name:   "starttls untrusted certificate",
		server: serverOptions{tls: serverStartTLS, username: "app", password: "s3cret"},
		config: func(c *Config) { c.TLSConfig, c.Username, c.Password = nil, "app", "s3cret" },
		want:   channel.Result{Outcome: channel.Fail, Reason: "tls"},
	}, {
		name:   "implicit tls untrusted certificate",
		server: serverOptions{tls: serverImplicit},
		config: func(c *Config) { c.TLSConfig = nil },
		want:   channel.Result{Outcome: channel.Fail, Reason: "tls"},
	}, {
		name:   "certificate for another name",
		server: serverOptions{tls: serverStartTLS},
		config: func(c *Config) { c.TLSConfig.ServerName = "mail.other.example" },
		want:   channel.Result{Outcome: channel.Fail, Reason: "tls"},
	}, {
		name:   "starttls required but not offered",
		server: serverOptions{},
		config: func(c *Config) { c.TLSMode = TLSModeStartTLS },
		want:   channel.Result{Outcome: channel.Fail, Reason: "starttls unsupported"},
	}, {
		name:   "implicit tls to a plaintext server",
		server: serverOptions{},
		config: func(c *Config) { c.TLSMode = TLSModeTLS },
		want:   channel.Result{Outcome: channel.Fail, Reason: "tls"},
	}, {
		name:   "auth required but not offered over tls",
		server: serverOptions{tls: serverStartTLS},
		config: func(c *Config) { c.Username, c.Password = "app", "s3cret" },
		want:   channel.Result{Outcome: channel.Fail, Reason: "auth unsupported"},
	}, {
		name:   "plaintext auth to a loopback relay",
		server: serverOptions{username: "app", password: "s3cret", allowInsecureAuth: true},
		config: func(c *Config) { c.Username, c.Password = "app", "s3cret" },
		want:   channel.Result{Outcome: channel.Sent},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, tt.server)
			cfg := ts.config()
			cfg.TLSConfig = cfg.TLSConfig.Clone()
			if tt.config != nil {
				tt.config(&cfg)
			}
			s := newSender(t, cfg)
			if got := s.Send(t.Context(), testMessage("run/c1", "ann@customer.example")); got != tt.want {
				t.Fatalf("Send = %+v, want %+v", got, tt.want)
			}
			got := ts.received()
			if tt.want.Outcome != channel.Sent {
				if len(got) != 0 {
					t.Errorf("server received %d messages", len(got))
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("server received %d messages, want 1", len(got))
			}
			if got[0].tls != tt.wantTLS {
				t.Errorf("delivered over TLS: %v, want %v", got[0].tls, tt.wantTLS)
			}
			if got[0].user != tt.server.username {
				t.Errorf("authenticated as %q, want %q", got[0].user, tt.server.username)
			}
			if got[0].helo != "sender.test" {
				t.Errorf("EHLO %q, want sender.test", got[0].helo)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	good := func() Config {
		return Config{Host: "smtp.shop.example", From: "Shop <hello@shop.example>", RelaySigns: true}
	}
	tests := []struct {
		name    string
		config  func(*Config)
		wantErr string // "" for success
	}{
		{"defaults", func(*Config) {}, ""},
		{"ed25519 key", func(c *Config) {
			c.RelaySigns = false
			c.DKIM = &DKIMConfig{Domain: "shop.example", Selector: "s1", PrivateKeyPEM: pkcs8(t, edKey)}
		}, ""},
		{"no host", func(c *Config) { c.Host = "" }, "invalid host"},
		{"bad port", func(c *Config) { c.Port = 70000 }, "invalid port"},
		{"bad tls mode", func(c *Config) { c.TLSMode = "Maybe" }, "invalid TLS mode"},
		{"bad from", func(c *Config) { c.From = "Shop <hello@>" }, "invalid From"},
		{"from with injection", func(c *Config) { c.From = "hello@shop.example\r\nBcc: x@y.z" }, "invalid From"},
		{"from without domain", func(c *Config) { c.From = "hello" }, "invalid From"},
		{"non-ascii from domain", func(c *Config) { c.From = "hello@شاپ.example" }, "invalid From"},
		{"credentials in clear text", func(c *Config) { c.TLSMode, c.Username, c.Password = TLSModeNone, "u", "p" }, "refusing to send credentials"},
		{"credentials in clear text to localhost", func(c *Config) {
			c.Host, c.TLSMode, c.Username, c.Password = "localhost", TLSModeNone, "u", "p"
		}, ""},
		{"password without username", func(c *Config) { c.Password = "p" }, "Password set without Username"},
		{"dkim and relay signs", func(c *Config) {
			c.DKIM = &DKIMConfig{Domain: "shop.example", Selector: "s1", PrivateKeyPEM: pkcs8(t, edKey)}
		}, "exclusive"},
		{"neither dkim nor relay signs", func(c *Config) { c.RelaySigns = false }, "set DKIM, or RelaySigns"},
		{"dkim key not pem", func(c *Config) {
			c.RelaySigns = false
			c.DKIM = &DKIMConfig{Domain: "shop.example", Selector: "s1", PrivateKeyPEM: []byte("nope")}
		}, "no PEM block"},
		{"dkim without selector", func(c *Config) {
			c.RelaySigns = false
			c.DKIM = &DKIMConfig{Domain: "shop.example", PrivateKeyPEM: pkcs8(t, edKey)}
		}, "invalid DKIM selector"},
		{"bad mailto", func(c *Config) { c.UnsubscribeMailto = "Unsub <u@shop.example>" }, "invalid UnsubscribeMailto"},
		{"mailto with scheme", func(c *Config) { c.UnsubscribeMailto = "mailto:u@shop.example" }, ""},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "negative timeout"},
		{"bad hostname", func(c *Config) { c.Hostname = "a b" }, "invalid hostname"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good()
			tt.config(&cfg)
			s, err := New(cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				s.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}

	s, err := New(good())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Concurrency() != DefaultMaxConns || s.addr != "smtp.shop.example:587" || s.tlsMode != TLSModeStartTLS ||
		s.tlsConfig.ServerName != "smtp.shop.example" || s.timeout != DefaultTimeout {
		t.Errorf("defaults: concurrency %d, addr %s, mode %s, server name %q, timeout %v",
			s.Concurrency(), s.addr, s.tlsMode, s.tlsConfig.ServerName, s.timeout)
	}
}

func TestInvalidMessageNeverSent(t *testing.T) {
	ts := startServer(t, serverOptions{})
	s := newSender(t, ts.config())
	tests := []struct {
		name   string
		change func(*channel.Message)
		reason string
	}{
		{"address with CRLF", func(m *channel.Message) { m.Address = "ann@customer.example\r\nBcc: all@customer.example" }, "invalid address"},
		{"address with LF", func(m *channel.Message) { m.Address = "ann@customer.example\nX: y" }, "invalid address"},
		{"address with CR", func(m *channel.Message) { m.Address = "ann@customer.example\rX: y" }, "invalid address"},
		{"address without domain", func(m *channel.Message) { m.Address = "ann" }, "invalid address"},
		{"empty address", func(m *channel.Message) { m.Address = "" }, "invalid address"},
		{"quoted local part", func(m *channel.Message) { m.Address = `"ann smith"@customer.example` }, "invalid address"},
		{"address literal", func(m *channel.Message) { m.Address = "ann@[127.0.0.1]" }, "invalid address"},
		{"subject with CRLF", func(m *channel.Message) { m.Subject = "Hi\r\nBcc: all@customer.example" }, "invalid subject"},
		{"subject with LF", func(m *channel.Message) { m.Subject = "Hi\nX: y" }, "invalid subject"},
		{"empty key", func(m *channel.Message) { m.Key = "" }, "invalid key"},
		{"key with CRLF", func(m *channel.Message) { m.Key = "run/c1\r\nX: y" }, "invalid key"},
		{"http unsubscribe", func(m *channel.Message) { m.UnsubscribeURL = "http://shop.example/u/1" }, "invalid unsubscribe url"},
		{"unsubscribe with bracket", func(m *channel.Message) { m.UnsubscribeURL = "https://shop.example/u/1>, <https://evil.example" }, "invalid unsubscribe url"},
		{"unsubscribe with CRLF", func(m *channel.Message) { m.UnsubscribeURL = "https://shop.example/u/1\r\nX: y" }, "invalid unsubscribe url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testMessage("run/c1", "ann@customer.example")
			tt.change(m)
			want := channel.Result{Outcome: channel.Fail, Reason: tt.reason}
			if got := s.Send(t.Context(), m); got != want {
				t.Fatalf("Send = %+v, want %+v", got, want)
			}
		})
	}
	if n, got := ts.conns.Load(), len(ts.received()); n != 0 || got != 0 {
		t.Errorf("server saw %d connections and %d messages, want none", n, got)
	}
}

func TestSMTPUTF8(t *testing.T) {
	for _, offered := range []bool{false, true} {
		t.Run(fmt.Sprintf("offered=%v", offered), func(t *testing.T) {
			ts := startServer(t, serverOptions{smtputf8: offered})
			s := newSender(t, ts.config())
			want := channel.Result{Outcome: channel.Sent}
			if !offered {
				want = channel.Result{Outcome: channel.Fail, Reason: "smtputf8 unsupported"}
			}
			if got := s.Send(t.Context(), testMessage("run/c1", "مریم@customer.example")); got != want {
				t.Fatalf("Send = %+v, want %+v", got, want)
			}
			// Either way the connection carries the next message.
			if got := s.Send(t.Context(), testMessage("run/c2", "ann@customer.example")); got.Outcome != channel.Sent {
				t.Fatalf("next Send = %+v", got)
			}
			if n := ts.conns.Load(); n != 1 {
				t.Errorf("%d connections, want 1", n)
			}
		})
	}
}

func TestServerReplies(t *testing.T) {
	const victim = "victim@customer.example"
	// reject answers err for the victim's address only.
	reject := func(err error) func(string) error {
		return func(addr string) error {
			if addr == victim {
				return err
			}
			return nil
		}
	}
	tests := []struct {
		name   string
		server serverOptions
		want   channel.Result
	}{
		{"recipient unknown", serverOptions{rcpt: reject(smtpErr(550, 5, 1, 1))},
			channel.Result{Outcome: channel.Fail, Reason: "smtp 550 5.1.1"}},
		{"recipient greylisted", serverOptions{rcpt: reject(smtpErr(451, 4, 3, 0))},
			channel.Result{Outcome: channel.Retry, Reason: "smtp 451 4.3.0"}},
		{"mailbox full", serverOptions{rcpt: reject(smtpErr(452, 4, 2, 2))},
			channel.Result{Outcome: channel.Retry, Reason: "smtp 452 4.2.2"}},
		{"message rejected as spam", serverOptions{data: func(_ *smtp.Conn, to string) error { return reject(smtpErr(554, 5, 7, 1))(to) }},
			channel.Result{Outcome: channel.Fail, Reason: "smtp 554 5.7.1"}},
		{"message deferred", serverOptions{data: func(_ *smtp.Conn, to string) error { return reject(smtpErr(451, 4, 7, 1))(to) }},
			channel.Result{Outcome: channel.Retry, Reason: "smtp 451 4.7.1"}},
		{"no enhanced code", serverOptions{rcpt: reject(&smtp.SMTPError{Code: 550, EnhancedCode: smtp.NoEnhancedCode, Message: "no " + victim})},
			channel.Result{Outcome: channel.Fail, Reason: "smtp 550"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, tt.server)
			s := newSender(t, ts.config())
			if got := s.Send(t.Context(), testMessage("run/ok1", "ann@customer.example")); got.Outcome != channel.Sent {
				t.Fatalf("first Send = %+v", got)
			}
			got := s.Send(t.Context(), testMessage("run/victim", victim))
			if got != tt.want {
				t.Fatalf("Send = %+v, want %+v", got, tt.want)
			}
			if strings.Contains(got.Reason, "@") || strings.Contains(got.Reason, "victim") {
				t.Errorf("reason %q carries personal data", got.Reason)
			}
			// Only that message failed: the same connection carries the
			// next one.
			if got := s.Send(t.Context(), testMessage("run/ok2", "bob@customer.example")); got.Outcome != channel.Sent {
				t.Fatalf("Send after the rejection = %+v", got)
			}
			if n := ts.conns.Load(); n != 1 {
				t.Errorf("%d connections, want 1 (the rejection must not drop it)", n)
			}
			var to []string
			for _, r := range ts.received() {
				to = append(to, r.to)
			}
			if strings.Join(to, ",") != "ann@customer.example,bob@customer.example" {
				t.Errorf("server accepted mail for %v", to)
			}
		})
	}

	t.Run("sender rejected", func(t *testing.T) {
		ts := startServer(t, serverOptions{mail: func(string) error { return smtpErr(550, 5, 7, 1) }})
		s := newSender(t, ts.config())
		want := channel.Result{Outcome: channel.Fail, Reason: "smtp 550 5.7.1"}
		if got := s.Send(t.Context(), testMessage("run/c1", "ann@customer.example")); got != want {
			t.Fatalf("Send = %+v, want %+v", got, want)
		}
	})
}

func TestTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never greets
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	var held []net.Conn
	var heldMu sync.Mutex
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			heldMu.Lock()
			held = append(held, c)
			heldMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		heldMu.Lock()
		defer heldMu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})

	tests := []struct {
		name   string
		config func(t *testing.T) Config
	}{{
		name: "server hangs after the message",
		config: func(t *testing.T) Config {
			var ts *testServer
			ts = startServer(t, serverOptions{data: func(*smtp.Conn, string) error {
				<-ts.release
				return nil
			}})
			return ts.config()
		},
	}, {
		name: "server hangs in the TLS handshake",
		config: func(t *testing.T) Config {
			addr := silent.Addr().(*net.TCPAddr)
			return Config{Host: addr.IP.String(), Port: addr.Port, TLSMode: TLSModeTLS, From: "hello@shop.example", RelaySigns: true}
		},
	}, {
		name: "server never greets",
		config: func(t *testing.T) Config {
			addr := silent.Addr().(*net.TCPAddr)
			return Config{Host: addr.IP.String(), Port: addr.Port, TLSMode: TLSModeNone, From: "hello@shop.example", RelaySigns: true}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.config(t)
			cfg.Timeout = timeout
			s := newSender(t, cfg)
			start := time.Now()
			got := s.Send(t.Context(), testMessage("run/c1", "ann@customer.example"))
			elapsed := time.Since(start)
			if want := (channel.Result{Outcome: channel.Retry, Reason: "timeout"}); got != want {
				t.Fatalf("Send = %+v, want %+v", got, want)
			}
			if elapsed < timeout || elapsed > timeout+time.Second {
				t.Errorf("Send took %v, want about %v", elapsed, timeout)
			}
		})
	}
}

func TestCancelled(t *testing.T) {
	var ts *testServer
	ts = startServer(t, serverOptions{data: func(_ *smtp.Conn, to string) error {
		if to == "slow@customer.example" {
			<-ts.release
		}
		return nil
	}})
	s := newSender(t, ts.config())
	want := channel.Result{Outcome: channel.Retry, Reason: "cancelled"}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if got := s.Send(ctx, testMessage("run/c1", "ann@customer.example")); got != want {
		t.Errorf("Send with a cancelled context = %+v, want %+v", got, want)
	}
	if n := ts.conns.Load(); n != 0 {
		t.Errorf("a cancelled send dialled (%d connections)", n)
	}

	ctx, cancel = context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	if got := s.Send(ctx, testMessage("run/c2", "slow@customer.example")); got != want {
		t.Errorf("Send cancelled midway = %+v, want %+v", got, want)
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("cancelled Send returned after %v", elapsed)
	}
	// The cancelled transaction's connection was dropped; the next send
	// dials a new one.
	if got := s.Send(t.Context(), testMessage("run/c3", "ann@customer.example")); got.Outcome != channel.Sent {
		t.Errorf("Send after a cancellation = %+v", got)
	}
}

func TestConnectionLoss(t *testing.T) {
	t.Run("dropped during a transaction", func(t *testing.T) {
		var dropped sync.Once
		ts := startServer(t, serverOptions{data: func(c *smtp.Conn, _ string) error {
			err := error(nil)
			dropped.Do(func() {
				c.Conn().Close()
				err = errors.New("dropped")
			})
			return err
		}})
		s := newSender(t, ts.config())
		want := channel.Result{Outcome: channel.Retry, Reason: "connection error"}
		if got := s.Send(t.Context(), testMessage("run/c1", "ann@customer.example")); got != want {
			t.Fatalf("Send = %+v, want %+v", got, want)
		}
		if got := s.Send(t.Context(), testMessage("run/c1", "ann@customer.example")); got.Outcome != channel.Sent {
			t.Fatalf("next Send = %+v, want it to redial and send", got)
		}
		if n := ts.conns.Load(); n != 2 {
			t.Errorf("%d connections, want 2", n)
		}
	})

	t.Run("closed by the server while idle", func(t *testing.T) {
		ts := startServer(t, serverOptions{readTimeout: 200 * time.Millisecond})
		s := newSender(t, ts.config())
		for i := range 2 {
			if got := s.Send(t.Context(), testMessage(fmt.Sprintf("run/c%d", i), "ann@customer.example")); got.Outcome != channel.Sent {
				t.Fatalf("Send %d = %+v", i, got)
			}
			time.Sleep(500 * time.Millisecond) // the server times the connection out
		}
		if n, got := ts.conns.Load(), len(ts.received()); n != 2 || got != 2 {
			t.Errorf("%d connections and %d messages, want 2 and 2", n, got)
		}
	})

	t.Run("connection refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().(*net.TCPAddr)
		l.Close()
		s := newSender(t, Config{Host: addr.IP.String(), Port: addr.Port, TLSMode: TLSModeNone, From: "hello@shop.example", RelaySigns: true})
		want := channel.Result{Outcome: channel.Retry, Reason: "connection error"}
		if got := s.Send(t.Context(), testMessage("run/c1", "ann@customer.example")); got != want {
			t.Fatalf("Send = %+v, want %+v", got, want)
		}
	})
}

func TestConcurrentSends(t *testing.T) {
	const goroutines, perGoroutine = 4, 200
	ts := startServer(t, serverOptions{tls: serverStartTLS})
	cfg := ts.config()
	cfg.MaxConns = 4
	s := newSender(t, cfg)

	var wg sync.WaitGroup
	errs := make(chan string, goroutines*perGoroutine)
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				m := testMessage(fmt.Sprintf("run/g%d-%d", g, i), fmt.Sprintf("c%d-%d@customer.example", g, i))
				if res := s.Send(t.Context(), m); res.Outcome != channel.Sent {
					errs <- fmt.Sprintf("%s: %+v", m.Key, res)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}

	seen := map[string]int{}
	for _, r := range ts.received() {
		msg, err := mail.ReadMessage(bytes.NewReader(r.data))
		if err != nil {
			t.Fatal(err)
		}
		seen[msg.Header.Get("X-Retention-Idempotency-Key")]++
	}
	for g := range goroutines {
		for i := range perGoroutine {
			if key := fmt.Sprintf("run/g%d-%d", g, i); seen[key] != 1 {
				t.Errorf("%s received %d times", key, seen[key])
			}
		}
	}
	if n := ts.conns.Load(); n > int64(cfg.MaxConns) {
		t.Errorf("server saw %d connections, MaxConns is %d", n, cfg.MaxConns)
	}
}

func TestClose(t *testing.T) {
	ts := startServer(t, serverOptions{})
	s, err := New(ts.config())
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Send(t.Context(), testMessage("run/c1", "ann@customer.example")); got.Outcome != channel.Sent {
		t.Fatalf("Send = %+v", got)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	want := channel.Result{Outcome: channel.Retry, Reason: "sender closed"}
	if got := s.Send(t.Context(), testMessage("run/c2", "ann@customer.example")); got != want {
		t.Errorf("Send after Close = %+v, want %+v", got, want)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// The TLS test cases rely on the certificate's verification failing as a
// *tls.CertificateVerificationError; keep the classification honest about
// what else counts.
func TestClassifyError(t *testing.T) {
	bg := context.Background()
	tests := []struct {
		err  error
		want channel.Result
	}{
		{&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, channel.Result{Outcome: channel.Fail, Reason: "tls"}},
		{tls.RecordHeaderError{}, channel.Result{Outcome: channel.Fail, Reason: "tls"}},
		{io.EOF, channel.Result{Outcome: channel.Retry, Reason: "connection error"}},
		{&net.OpError{Op: "read", Err: errTimeout{}}, channel.Result{Outcome: channel.Retry, Reason: "timeout"}},
		{&smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}}, channel.Result{Outcome: channel.Retry, Reason: "smtp 421 4.4.2"}},
		{&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCodeNotSet}, channel.Result{Outcome: channel.Fail, Reason: "smtp 554"}},
	}
	for _, tt := range tests {
		if got := classifyError(bg, bg, tt.err); got != tt.want {
			t.Errorf("classifyError(%v) = %+v, want %+v", tt.err, got, tt.want)
		}
	}
}

type errTimeout struct{}

func (errTimeout) Error() string   { return "i/o timeout" }
func (errTimeout) Timeout() bool   { return true }
func (errTimeout) Temporary() bool { return true }
