package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/retention-dev/retention-operator/internal/store"
)

func exerciseOptOut(ctx context.Context, t *testing.T, d *Driver) {
	t.Run("AddFilterDelete", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		for _, p := range []store.OptOutAddParams{
			{Channel: "ns/email", CustomerID: "alice", Via: "unsubscribe-link"},
			{Channel: "ns/email", CustomerID: "bob", Via: "api"},
			{Channel: "ns/email", CustomerID: "alice", Via: "api"}, // again: not an error
			{Channel: "ns/sms", CustomerID: "carol"},
		} {
			if err := e.s.OptOutAdd(ctx, &p); err != nil {
				t.Fatalf("OptOutAdd(%+v): %v", p, err)
			}
		}
		filter := func(channel string, ids ...string) map[string]bool {
			t.Helper()
			got, err := e.s.OptOutFilter(ctx, channel, ids)
			if err != nil {
				t.Fatalf("OptOutFilter: %v", err)
			}
			return got
		}
		if got, want := filter("ns/email", "alice", "bob", "carol", "dave"), map[string]bool{"alice": true, "bob": true}; !reflect.DeepEqual(got, want) {
			t.Errorf("email opt-outs = %v, want %v", got, want)
		}
		if got, want := filter("ns/sms", "alice", "carol"), map[string]bool{"carol": true}; !reflect.DeepEqual(got, want) {
			t.Errorf("sms opt-outs = %v, want %v", got, want)
		}
		if got := filter("ns/email"); len(got) != 0 {
			t.Errorf("no customers asked: %v", got)
		}
		if err := e.s.OptOutDelete(ctx, "ns/email", "alice"); err != nil {
			t.Fatal(err)
		}
		if err := e.s.OptOutDelete(ctx, "ns/email", "nobody"); err != nil {
			t.Errorf("delete of an unknown opt-out: %v", err)
		}
		if got, want := filter("ns/email", "alice", "bob"), map[string]bool{"bob": true}; !reflect.DeepEqual(got, want) {
			t.Errorf("after delete = %v, want %v", got, want)
		}
		for _, p := range []*store.OptOutAddParams{nil, {CustomerID: "x"}, {Channel: "ns/email"}, {Channel: "ns/email", CustomerID: "a\x00b"}} {
			if err := e.s.OptOutAdd(ctx, p); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("OptOutAdd(%+v) = %v, want ErrInvalid", p, err)
			}
		}
		if _, err := e.s.OptOutFilter(ctx, "", []string{"x"}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("OptOutFilter without channel = %v, want ErrInvalid", err)
		}
		if err := e.s.OptOutDelete(ctx, "", "x"); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("OptOutDelete without channel = %v, want ErrInvalid", err)
		}
	})
}
