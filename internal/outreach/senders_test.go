package outreach

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/retention-dev/retention-operator/internal/campaign"
	"github.com/retention-dev/retention-operator/internal/outreach/unsubscribe"
)

// The unsubscribe key travels base64 in the environment: a random key may
// hold NUL bytes, which an environment variable cannot carry.
func TestUnsubscribeLinksKeyFromEnvironment(t *testing.T) {
	key := []byte("\x00binary\x00key-with-NULs-of-at-least-32-bytes\x00")
	settings := campaign.RunSettings{UnsubscribeBaseURL: "https://retention.example.com"}
	env := func(v string) Getenv {
		return func(name string) string {
			if name == campaign.EnvUnsubscribeKey {
				return v
			}
			return ""
		}
	}
	links, err := UnsubscribeLinks(settings, "ns/hook", env(base64.StdEncoding.EncodeToString(key)))
	if err != nil {
		t.Fatal(err)
	}
	token, ok := strings.CutPrefix(links("c/1"), "https://retention.example.com/unsubscribe/")
	if !ok {
		t.Fatalf("link %q", links("c/1"))
	}
	if ch, id, err := unsubscribe.Verify(key, token); err != nil || ch != "ns/hook" || id != "c/1" {
		t.Errorf("Verify = %q %q %v", ch, id, err)
	}
	for _, bad := range []string{"", "not base64!", base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := UnsubscribeLinks(settings, "ns/hook", env(bad)); !errors.Is(err, ErrConfig) {
			t.Errorf("key %q: err = %v, want ErrConfig", bad, err)
		}
	}
	if links, err := UnsubscribeLinks(campaign.RunSettings{}, "ns/hook", env("")); links != nil || err != nil {
		t.Errorf("no base URL: links %v, err %v; want none", links != nil, err)
	}
}
