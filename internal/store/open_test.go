package store

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"postgres://app:s3cret@db:5432/retention?sslmode=require", "postgres://app:xxxxx@db:5432/retention?sslmode=require"},
		{"postgres://app@db/retention", "postgres://app@db/retention"},
		{"postgres://db/retention", "postgres://db/retention"},
		{"sqlite:///var/lib/retention.db", "sqlite:///var/lib/retention.db"},
		{"postgres://a:p@ss@db/x", "postgres://a:xxxxx@db/x"},
		{"not a url", "not a url"},
	} {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestOpenUnknownScheme(t *testing.T) {
	t.Parallel()
	_, err := Open(context.Background(), "mysql://u:topsecret@h/db", Options{})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	if strings.Contains(err.Error(), "topsecret") {
		t.Fatalf("error leaks the password: %v", err)
	}
	if _, err := Open(context.Background(), "no-scheme", Options{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
}
