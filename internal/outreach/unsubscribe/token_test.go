package unsubscribe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"net/url"
	"strings"
	"testing"
)

// testKey is a fixed 32-byte key, so failures reproduce.
var testKey = []byte("0123456789abcdef0123456789abcdef")

var otherKey = []byte("fedcba9876543210fedcba9876543210")

// roundTripIDs are customer ids every token must carry intact.
var roundTripIDs = []string{
	"c-1",
	"a/b/../c",
	"with spaces  and\ttab",
	"مشتری ۴۲/تهران",
	"line\nbreak\r\n",
	"%2F?#&=+",
	"🌷",
	strings.Repeat("x", MaxCustomerIDLen),
	strings.Repeat("ی", MaxCustomerIDLen/2),
}

func TestTokenRoundTrip(t *testing.T) {
	t.Parallel()
	for _, channel := range []string{"email", "slack", "webhook", strings.Repeat("c", MaxChannelLen)} {
		for _, id := range roundTripIDs {
			token := Token(testKey, channel, id)
			if token == "" {
				t.Errorf("Token(%q, %q) is empty", channel, id)
				continue
			}
			if strings.Trim(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
				t.Errorf("token %q is not URL-safe", token)
			}
			gotChannel, gotID, err := Verify(testKey, token)
			if err != nil || gotChannel != channel || gotID != id {
				t.Errorf("Verify(Token(%q, %q)) = %q, %q, %v", channel, id, gotChannel, gotID, err)
			}
			if again := Token(testKey, channel, id); again != token {
				t.Errorf("Token(%q, %q) is not deterministic", channel, id)
			}
		}
	}
}

func TestTokenRefusesFields(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, channel, id string
		key               []byte
	}{
		{"empty channel", "", "c-1", testKey},
		{"empty customer id", "email", "", testKey},
		{"NUL in id", "email", "a\x00b", testKey},
		{"NUL in channel", "e\x00mail", "c-1", testKey},
		{"invalid UTF-8 id", "email", "\xff\xfe", testKey},
		{"long channel", strings.Repeat("c", MaxChannelLen+1), "c-1", testKey},
		{"long id", "email", strings.Repeat("x", MaxCustomerIDLen+1), testKey},
		{"short key", "email", "c-1", testKey[:MinKeyLen-1]},
		{"no key", "email", "c-1", nil},
	} {
		if token := Token(tc.key, tc.channel, tc.id); token != "" {
			t.Errorf("%s: Token = %q, want none", tc.name, token)
		}
	}
}

// TestLengthPrefixes: fields that concatenate alike sign differently.
func TestLengthPrefixes(t *testing.T) {
	t.Parallel()
	a, b := Token(testKey, "ab", "c"), Token(testKey, "a", "bc")
	if a == b {
		t.Fatal(`("ab", "c") and ("a", "bc") have the same token`)
	}
	for _, tc := range []struct{ token, channel, id string }{{a, "ab", "c"}, {b, "a", "bc"}} {
		if ch, id, err := Verify(testKey, tc.token); err != nil || ch != tc.channel || id != tc.id {
			t.Errorf("Verify = %q, %q, %v; want %q, %q", ch, id, err, tc.channel, tc.id)
		}
	}
}

// sign builds a token body with a valid tag, whatever its fields, to
// reach the checks behind the tag.
func sign(key []byte, version byte, channel, id string) string {
	b := []byte{version, byte(len(channel))}
	b = append(b, channel...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(id)))
	b = append(b, id...)
	return tokenEncoding.EncodeToString(append(b, tag(key, b)...))
}

func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	valid := Token(testKey, "email", "مشتری/42")
	raw, err := tokenEncoding.DecodeString(valid)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, token string
		key         []byte
		want        error
	}{
		{"other key", valid, otherKey, ErrForged},
		{"other key's token", Token(otherKey, "email", "مشتری/42"), testKey, ErrForged},
		{"short key", valid, testKey[:16], ErrKey},
		{"empty", "", testKey, ErrMalformed},
		{"garbage", "not a token!", testKey, ErrMalformed},
		{"padding", valid + "==", testKey, ErrMalformed},
		// The base64 decoder skips line breaks; Verify must not.
		{"line break", valid[:10] + "\r\n" + valid[10:], testKey, ErrMalformed},
		{"trailing newline", valid + "\n", testKey, ErrMalformed},
		{"space", valid[:10] + " " + valid[10:], testKey, ErrMalformed},
		{"standard alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(valid + "-_"), testKey, ErrMalformed},
		{"too long", strings.Repeat("A", maxTokenLen+1), testKey, ErrMalformed},
		{"huge", strings.Repeat("A", 1<<20), testKey, ErrMalformed},
		{"signed empty channel", sign(testKey, tokenVersion, "", "c-1"), testKey, ErrMalformed},
		{"signed empty id", sign(testKey, tokenVersion, "email", ""), testKey, ErrMalformed},
		{"signed NUL id", sign(testKey, tokenVersion, "email", "a\x00"), testKey, ErrMalformed},
		{"other version", sign(testKey, tokenVersion+1, "email", "c-1"), testKey, ErrMalformed},
		{"extra byte", tokenEncoding.EncodeToString(append(bytes.Clone(raw), 0)), testKey, ErrMalformed},
	}
	// Every prefix of a valid token: cut links must not verify.
	for n := range len(valid) {
		cases = append(cases, struct {
			name, token string
			key         []byte
			want        error
		}{"truncated", valid[:n], testKey, nil})
	}
	for _, tc := range cases {
		ch, id, err := Verify(tc.key, tc.token)
		if err == nil || ch != "" || id != "" {
			t.Errorf("%s: Verify(%.40q) = %q, %q, %v; want refused", tc.name, tc.token, ch, id, err)
			continue
		}
		if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify error %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestVerifyRefusesAlteredBytes: a token with any one byte changed, to
// any other value, is refused, whether the byte is in its fields or its
// tag; so is one with any one character of its text changed.
func TestVerifyRefusesAlteredBytes(t *testing.T) {
	t.Parallel()
	token := Token(testKey, "ns/email", "c/42 x")
	raw, err := tokenEncoding.DecodeString(token)
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		for delta := 1; delta < 256; delta++ {
			altered := bytes.Clone(raw)
			altered[i] ^= byte(delta)
			if ch, id, err := Verify(testKey, tokenEncoding.EncodeToString(altered)); err == nil {
				t.Fatalf("byte %d ^ %#x: Verify = %q, %q, nil; want refused", i, delta, ch, id)
			}
		}
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range len(token) {
		for _, c := range []byte(alphabet) {
			if c == token[i] {
				continue
			}
			altered := token[:i] + string(c) + token[i+1:]
			if ch, id, err := Verify(testKey, altered); err == nil {
				t.Fatalf("character %d = %q: Verify = %q, %q, nil; want refused", i, c, ch, id)
			}
		}
	}
}

// splice returns the token body of (channel, id) carrying the tag of
// donor: what an attacker holding donor would send to act on channel.
func splice(t testing.TB, donor, channel, id string) string {
	t.Helper()
	raw, err := tokenEncoding.DecodeString(donor)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{tokenVersion, byte(len(channel))}
	b = append(b, channel...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(id)))
	b = append(b, id...)
	return tokenEncoding.EncodeToString(append(b, raw[len(raw)-tagLen:]...))
}

// TestVerifyCrossChannel: the channel is signed, so a token minted for
// one channel names that channel only, and no rewriting of it passes for
// another channel's token.
func TestVerifyCrossChannel(t *testing.T) {
	t.Parallel()
	const id = "c/42"
	email, sms := Token(testKey, "ns/email", id), Token(testKey, "ns/sms", id)
	if ch, gotID, err := Verify(testKey, email); err != nil || ch != "ns/email" || gotID != id {
		t.Fatalf("Verify(email token) = %q, %q, %v", ch, gotID, err)
	}
	for _, tc := range []struct{ name, token string }{
		{"same-length channel rewritten", splice(t, email, "ns/emaim", id)},
		{"other channel, email's tag", splice(t, email, "ns/sms", id)},
		{"other namespace, email's tag", splice(t, email, "other/email", id)},
		{"email channel, sms's tag", splice(t, sms, "ns/email", id)},
		{"channel prefix moved into id", splice(t, email, "ns/", "email"+id)},
	} {
		ch, gotID, err := Verify(testKey, tc.token)
		if !errors.Is(err, ErrForged) || ch != "" || gotID != "" {
			t.Errorf("%s: Verify = %q, %q, %v; want ErrForged", tc.name, ch, gotID, err)
		}
	}
}

// TestVerifyRefusesResized: a token cut at either end, extended, doubled
// or empty is refused.
func TestVerifyRefusesResized(t *testing.T) {
	t.Parallel()
	valid := Token(testKey, "ns/email", "c-1")
	other := Token(testKey, "ns/sms", "c-1")
	cases := map[string]string{
		"empty":         "",
		"doubled":       valid + valid,
		"two tokens":    valid + other,
		"extended tag":  valid + valid[len(valid)-4:],
		"prefixed":      "AQ" + valid,
		"maximal extra": valid + strings.Repeat("A", maxTokenLen-len(valid)),
	}
	// TestVerifyRefuses tries every prefix.
	for n := 1; n < len(valid); n++ {
		cases[fmt.Sprintf("last %d characters", n)] = valid[len(valid)-n:]
	}
	for _, c := range "AQgw_-" {
		cases[fmt.Sprintf("plus %q", c)] = valid + string(c)
		cases[fmt.Sprintf("plus %q%q", c, c)] = valid + string(c) + string(c)
	}
	for name, token := range cases {
		if ch, id, err := Verify(testKey, token); err == nil {
			t.Errorf("%s: Verify = %q, %q, nil; want refused", name, ch, id)
		}
	}
}

// TestVerifyComparesInConstantTime: Verify compares tags with hmac.Equal,
// whose time does not depend on where the tags differ, and nothing in
// token.go compares bytes another way (a timing oracle would let a forger
// find a tag byte by byte).
func TestVerifyComparesInConstantTime(t *testing.T) {
	t.Parallel()
	file, err := parser.ParseFile(gotoken.NewFileSet(), "token.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]map[string]bool{} // function -> "pkg.Name" called
	for _, decl := range file.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok {
			continue
		}
		calls[fn.Name.Name] = map[string]bool{}
		ast.Inspect(fn, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if pkg, ok := sel.X.(*ast.Ident); ok {
					calls[fn.Name.Name][pkg.Name+"."+sel.Sel.Name] = true
				}
			}
			return true
		})
	}
	if !calls["Verify"]["hmac.Equal"] {
		t.Error("Verify does not call hmac.Equal")
	}
	for fn, used := range calls {
		for _, unsafe := range []string{"bytes.Equal", "bytes.Compare", "reflect.DeepEqual", "slices.Equal"} {
			if used[unsafe] {
				t.Errorf("%s calls %s", fn, unsafe)
			}
		}
	}
}

// FuzzVerify: Verify never panics, the only token it accepts for a
// (channel, customer) pair is the one Token makes (so no altered or
// cross-channel token passes), and what it accepts under one key it
// refuses under another. testdata/fuzz/FuzzVerify has more seeds: valid,
// cross-channel, other-key and mangled tokens.
func FuzzVerify(f *testing.F) {
	for _, id := range roundTripIDs {
		f.Add(Token(testKey, "email", id))
	}
	email := Token(testKey, "ns/email", "c-1")
	f.Add(Token(testKey, "ab", "c"))
	f.Add(Token(otherKey, "email", "c-1"))
	f.Add(splice(f, email, "ns/sms", "c-1"))
	f.Add(sign(testKey, tokenVersion, "", "c-1"))
	f.Add(sign(testKey, tokenVersion+1, "ns/email", "c-1"))
	f.Add(email[:len(email)-1])
	f.Add(email + "A")
	f.Add("")
	f.Add("AQ")
	f.Add("!!!!")
	f.Fuzz(func(t *testing.T, token string) {
		ch, id, err := Verify(testKey, token)
		if err != nil {
			if ch != "" || id != "" {
				t.Fatalf("Verify(%q) returned fields with error %v", token, err)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrForged) {
				t.Fatalf("Verify(%q) error %v is neither ErrMalformed nor ErrForged", token, err)
			}
			return
		}
		if again := Token(testKey, ch, id); again != token {
			t.Fatalf("Verify accepted %q for (%q, %q), whose token is %q", token, ch, id, again)
		}
		if _, _, err := Verify(otherKey, token); !errors.Is(err, ErrForged) {
			t.Fatalf("Verify(otherKey, %q) = %v, want ErrForged", token, err)
		}
		// Its tag binds the channel: on another channel it is refused.
		other := "other"
		if ch == other {
			other = "another"
		}
		if _, _, err := Verify(testKey, splice(t, token, other, id)); !errors.Is(err, ErrForged) {
			t.Fatalf("%q's tag on channel %q: Verify = %v, want ErrForged", token, other, err)
		}
	})
}

func TestNewKey(t *testing.T) {
	t.Parallel()
	a, b := NewKey(), NewKey()
	if err := ValidateKey(a); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Error("two NewKey calls gave the same key")
	}
	if err := ValidateKey(make([]byte, MinKeyLen-1)); !errors.Is(err, ErrKey) {
		t.Errorf("ValidateKey(31 bytes) = %v, want ErrKey", err)
	}
}

func TestURL(t *testing.T) {
	t.Parallel()
	const id = "مشتری 42/x"
	token := Token(testKey, "email", id)
	for _, tc := range []struct {
		base, want string
	}{
		{"https://u.example", "https://u.example/unsubscribe/" + token},
		{"https://u.example/", "https://u.example/unsubscribe/" + token},
		{"https://u.example:8443/retention//", "https://u.example:8443/retention/unsubscribe/" + token},
		{"https://u.example/a%20b", "https://u.example/a%20b/unsubscribe/" + token},
	} {
		got, err := URL(tc.base, testKey, "email", id)
		if err != nil || got != tc.want {
			t.Errorf("URL(%q) = %q, %v; want %q", tc.base, got, err, tc.want)
			continue
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Errorf("URL(%q) = %q does not parse: %v", tc.base, got, err)
			continue
		}
		last := u.Path[strings.LastIndex(u.Path, "/")+1:]
		if ch, gotID, err := Verify(testKey, last); err != nil || ch != "email" || gotID != id {
			t.Errorf("URL(%q) token verifies to %q, %q, %v", tc.base, ch, gotID, err)
		}
	}
	for _, tc := range []struct {
		name, base, channel, id string
		key                     []byte
	}{
		{"http", "http://u.example", "email", id, testKey},
		{"other scheme", "ftp://u.example", "email", id, testKey},
		{"no host", "https:///x", "email", id, testKey},
		{"relative", "/unsubscribe", "email", id, testKey},
		{"empty", "", "email", id, testKey},
		{"user info", "https://user:pw@u.example", "email", id, testKey},
		{"query", "https://u.example/?a=b", "email", id, testKey},
		{"empty query", "https://u.example/?", "email", id, testKey},
		{"fragment", "https://u.example/#x", "email", id, testKey},
		{"bad escape", "https://u.example/%zz", "email", id, testKey},
		{"short key", "https://u.example", "email", id, testKey[:8]},
		{"empty channel", "https://u.example", "", id, testKey},
		{"empty id", "https://u.example", "email", "", testKey},
	} {
		got, err := URL(tc.base, tc.key, tc.channel, tc.id)
		if err == nil {
			t.Errorf("%s: URL = %q, want an error", tc.name, got)
			continue
		}
		if strings.Contains(err.Error(), "مشتری") {
			t.Errorf("%s: error %q names the customer", tc.name, err)
		}
	}
}

func TestURLFunc(t *testing.T) {
	t.Parallel()
	build, err := URLFunc("https://u.example/r/", testKey, "slack")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := URL("https://u.example/r/", testKey, "slack", "c/1")
	if got := build("c/1"); got != want {
		t.Errorf("URLFunc(...)(c/1) = %q, want %q", got, want)
	}
	if got := build(""); got != "" {
		t.Errorf("URLFunc(...)(\"\") = %q, want none", got)
	}
	for _, tc := range []struct {
		name, base, channel string
		key                 []byte
	}{
		{"http", "http://u.example", "slack", testKey},
		{"short key", "https://u.example", "slack", testKey[:31]},
		{"empty channel", "https://u.example", "", testKey},
		{"long channel", "https://u.example", strings.Repeat("c", MaxChannelLen+1), testKey},
	} {
		if _, err := URLFunc(tc.base, tc.key, tc.channel); err == nil {
			t.Errorf("%s: URLFunc accepted it", tc.name)
		}
	}
}
