// Package unsubscribe implements RFC 8058 one-click unsubscribe: signed
// tokens naming a (channel, customer) pair, the URLs that carry them, and
// the HTTP handler that records the opt-out.
//
// A token is checked without a lookup: it carries the channel and the
// customer id with an HMAC-SHA256 tag under a key only the operator holds
// (from a Secret), so it cannot be forged or altered, and no table of
// issued tokens is needed. Because a token carries the customer id, it is
// as sensitive as the id: it is never logged or shown on a page.
//
// Tokens do not expire: an unsubscribe link in an old message keeps
// working, as RFC 8058 and mailbox providers expect. Rotating the key
// invalidates every link already sent.
package unsubscribe

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/retention-dev/retention-operator/internal/store"
)

// Limits of the token's contents. They keep a URL well under the 2,000
// characters that every mail client and proxy handles.
const (
	// MinKeyLen is the shortest key accepted: HMAC-SHA256's full strength
	// needs 32 bytes.
	MinKeyLen = 32
	// MaxChannelLen and MaxCustomerIDLen bound the fields, in bytes.
	MaxChannelLen    = 64
	MaxCustomerIDLen = 1024
)

// Token layout, before base64url (RFC 4648 section 5, no padding):
//
//	version (1 byte, tokenVersion)
//	channel length (1 byte) | channel
//	customer id length (2 bytes, big endian) | customer id
//	tag (first tagLen bytes of HMAC-SHA256(key, macDomain | all of the above))
//
// The length prefixes make the encoding injective: ("ab", "c") and
// ("a", "bc") sign different bytes. The version byte is signed too, so a
// later format cannot be confused with this one.
const (
	tokenVersion = 1
	// tagLen: 128 bits of tag make forging a token a 2^-128 guess.
	tagLen = 16
	// minTokenBytes is a token with one-byte channel and customer id.
	minTokenBytes = 1 + 1 + 1 + 2 + 1 + tagLen
	maxTokenBytes = 1 + 1 + MaxChannelLen + 2 + MaxCustomerIDLen + tagLen
)

// macDomain separates these tags from any other HMAC made with the same
// key.
const macDomain = "retention-operator/unsubscribe\x00"

// tokenEncoding rejects padding and non-zero trailing bits, so each byte
// string has exactly one accepted token.
var tokenEncoding = base64.RawURLEncoding.Strict()

// maxTokenLen is the longest token string Verify decodes.
var maxTokenLen = tokenEncoding.EncodedLen(maxTokenBytes)

// Errors of Verify and the key checks.
var (
	// ErrMalformed: the token does not decode or parse.
	ErrMalformed = errors.New("unsubscribe: malformed token")
	// ErrForged: the token parses but its tag does not match: it was
	// made with another key or altered.
	ErrForged = errors.New("unsubscribe: token tag does not match")
	// ErrKey: the key is shorter than MinKeyLen.
	ErrKey = fmt.Errorf("unsubscribe: key shorter than %d bytes", MinKeyLen)
)

// NewKey returns a random key of MinKeyLen bytes, for a new Secret.
func NewKey() []byte {
	key := make([]byte, MinKeyLen)
	// crypto/rand.Read never fails (it crashes the program if the
	// system's generator does).
	_, _ = rand.Read(key)
	return key
}

// ValidateKey checks that key is long enough to sign tokens.
func ValidateKey(key []byte) error {
	if len(key) < MinKeyLen {
		return ErrKey
	}
	return nil
}

// Token returns the token for a customer's opt-out on a channel, or "" if
// there is none: the key is shorter than MinKeyLen, or the channel or the
// customer id is empty, too long, not UTF-8 or contains a NUL byte (the
// store refuses such ids, so no target has one). Any other id, with
// slashes, spaces, line breaks or any script, has a token.
func Token(key []byte, channel, customerID string) string {
	if ValidateKey(key) != nil || checkFields(channel, customerID) != nil {
		return ""
	}
	b := make([]byte, 0, 1+1+len(channel)+2+len(customerID)+tagLen)
	b = append(b, tokenVersion, byte(len(channel)))
	b = append(b, channel...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(customerID)))
	b = append(b, customerID...)
	b = append(b, tag(key, b)...)
	return tokenEncoding.EncodeToString(b)
}

// Verify checks a token and returns the channel and customer id it names.
// Its error is ErrKey, ErrMalformed or ErrForged; the tag is compared in
// constant time.
func Verify(key []byte, token string) (channel, customerID string, err error) {
	if err := ValidateKey(key); err != nil {
		return "", "", err
	}
	// Bound the work before decoding: the token comes from anyone.
	if len(token) > maxTokenLen || !isTokenAlphabet(token) {
		return "", "", ErrMalformed
	}
	b, err := tokenEncoding.DecodeString(token)
	if err != nil || len(b) < minTokenBytes || b[0] != tokenVersion {
		return "", "", ErrMalformed
	}
	channelEnd := 2 + int(b[1])
	if len(b) < channelEnd+2 {
		return "", "", ErrMalformed
	}
	idEnd := channelEnd + 2 + int(binary.BigEndian.Uint16(b[channelEnd:]))
	if len(b) != idEnd+tagLen {
		return "", "", ErrMalformed
	}
	if !hmac.Equal(b[idEnd:], tag(key, b[:idEnd])) {
		return "", "", ErrForged
	}
	channel, customerID = string(b[2:channelEnd]), string(b[channelEnd+2:idEnd])
	// Token never signs such fields; a tag that matches them means the
	// key was used by something else.
	if checkFields(channel, customerID) != nil {
		return "", "", ErrMalformed
	}
	return channel, customerID, nil
}

// isTokenAlphabet reports whether s uses only the base64url alphabet. The
// decoder skips \r and \n, so without this check a token with line breaks
// in it (as a mail client wrapping a URL might make) would verify too, and
// a token would not have one spelling.
func isTokenAlphabet(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// tag is the truncated HMAC of a token's body.
func tag(key, body []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(macDomain))
	mac.Write(body)
	return mac.Sum(nil)[:tagLen]
}

// checkFields applies the store's key rules and the length limits.
func checkFields(channel, customerID string) error {
	if err := store.CheckKey("channel", channel); err != nil {
		return err
	}
	if err := store.CheckKey("customer id", customerID); err != nil {
		return err
	}
	if len(channel) > MaxChannelLen {
		return fmt.Errorf("unsubscribe: channel longer than %d bytes", MaxChannelLen)
	}
	if len(customerID) > MaxCustomerIDLen {
		return fmt.Errorf("unsubscribe: customer id longer than %d bytes", MaxCustomerIDLen)
	}
	return nil
}

// PathPrefix is the path under which Handler serves tokens.
const PathPrefix = "/unsubscribe/"

// URL returns a customer's one-click unsubscribe URL,
// "<base>/unsubscribe/<token>". base is the operator's public https URL,
// possibly with a path ("https://retention.example/hooks"); when it has
// one, the server in front of Handler must strip that path (for example
// with http.StripPrefix). Errors name the problem, never the customer id.
func URL(base string, key []byte, channel, customerID string) (string, error) {
	prefix, err := urlPrefix(base, key)
	if err != nil {
		return "", err
	}
	if err := checkFields(channel, customerID); err != nil {
		return "", fmt.Errorf("unsubscribe: no token: %w", err)
	}
	return prefix + Token(key, channel, customerID), nil
}

// URLFunc checks base, key and channel once and returns a function that
// builds customers' unsubscribe URLs on that channel, for the runner's
// Config.Unsubscribe. The function returns "" for an id that cannot have a
// token (see Token), so that message goes without an unsubscribe link
// rather than with a broken one.
func URLFunc(base string, key []byte, channel string) (func(customerID string) string, error) {
	prefix, err := urlPrefix(base, key)
	if err != nil {
		return nil, err
	}
	if err := store.CheckKey("channel", channel); err != nil {
		return nil, fmt.Errorf("unsubscribe: %w", err)
	}
	if len(channel) > MaxChannelLen {
		return nil, fmt.Errorf("unsubscribe: channel longer than %d bytes", MaxChannelLen)
	}
	return func(customerID string) string {
		token := Token(key, channel, customerID)
		if token == "" {
			return ""
		}
		return prefix + token
	}, nil
}

// urlPrefix checks the key and the base URL and returns
// "<base>/unsubscribe/".
func urlPrefix(base string, key []byte) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	u, err := url.Parse(base)
	switch {
	case err != nil:
		return "", fmt.Errorf("unsubscribe: base URL: %w", err)
	case u.Scheme != "https":
		// RFC 8058 section 3.1: the one-click URI must be https.
		return "", errors.New("unsubscribe: base URL must be https")
	case u.Host == "":
		return "", errors.New("unsubscribe: base URL has no host")
	case u.User != nil:
		return "", errors.New("unsubscribe: base URL must not carry user info")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(base, "#"):
		return "", errors.New("unsubscribe: base URL must not have a query or fragment")
	}
	return u.Scheme + "://" + u.Host + strings.TrimRight(u.EscapedPath(), "/") + PathPrefix, nil
}
