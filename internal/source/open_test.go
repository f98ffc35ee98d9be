package source

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type fileServer struct {
	*httptest.Server
	token string
}

// newFileServer serves body at any path to a request with the bearer
// token, or with basic auth user/pass on /basic/...; /fail answers 500
// with a body that must not reach an error.
func newFileServer(t *testing.T, body []byte) *fileServer {
	fs := &fileServer{token: "tok-" + strings.Repeat("x", 8)}
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/fail") {
			http.Error(w, "customer alice@example.com exploded", http.StatusInternalServerError)
			return
		}
		ok := r.Header.Get("Authorization") == "Bearer "+fs.token
		if strings.HasPrefix(r.URL.Path, "/basic/") {
			u, p, has := r.BasicAuth()
			ok = has && u == "reader" && p == "pä55:word"
		}
		if !ok {
			http.Error(w, "who are you, alice@example.com?", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(fs.Close)
	return fs
}

func TestOpenURL(t *testing.T) {
	t.Parallel()
	srv := newFileServer(t, []byte("hello"))
	ctx := context.Background()
	for _, tc := range []struct {
		name, path string
		auth       Auth
		status     int
		errText    string
	}{
		{"bearer", "/a.csv", Auth{BearerToken: srv.token}, 200, ""},
		{"basic", "/basic/a.csv", Auth{Username: "reader", Password: "pä55:word"}, 200, ""},
		{"wrong bearer", "/a.csv", Auth{BearerToken: "nope"}, 401, "401 Unauthorized (check the credentials)"},
		{"no auth", "/a.csv", Auth{}, 401, "401"},
		{"wrong basic", "/basic/a.csv", Auth{Username: "reader", Password: "x"}, 401, "401"},
		{"server error", "/fail?sig=SECRETSIG", Auth{}, 500, "500 Internal Server Error"},
		{"both auths", "/a.csv", Auth{BearerToken: "a", Username: "b"}, 0, "either a bearer token or basic auth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rc, err := OpenURL(ctx, srv.URL+tc.path, tc.auth)
			if tc.errText == "" {
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(rc)
				rc.Close()
				if string(b) != "hello" {
					t.Fatalf("body %q", b)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.errText) {
				t.Fatalf("error %v, want %q", err, tc.errText)
			}
			for _, secret := range []string{"alice", "SECRETSIG", "nope", "pä55", srv.token} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q echoes %q", err, secret)
				}
			}
			if tc.status != 0 {
				if se := wantErrAs[*HTTPStatusError](t, err); se.StatusCode != tc.status {
					t.Errorf("status %d", se.StatusCode)
				}
			}
		})
	}
	for _, bad := range []string{"ftp://x/y", "file:///etc/passwd", "http://", "::"} {
		if _, err := OpenURL(ctx, bad, Auth{}); err == nil {
			t.Errorf("%q opened", bad)
		}
	}
	// A refused connection names the URL without its query.
	_, err := OpenURL(ctx, "http://127.0.0.1:1/x?token=SECRET", Auth{})
	if err == nil || strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), "127.0.0.1:1/x") {
		t.Errorf("error %v", err)
	}
}
