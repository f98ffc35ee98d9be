package storetest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/retention-dev/retention-operator/internal/store"
)

func exerciseMigrate(ctx context.Context, t *testing.T, d *Driver) {
	t.Run("FromEmptyThenReopen", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		sn := writeSnapshot(e, e.s, "ns/src", 0, 10)
		// Reopening applies nothing and keeps the data.
		for i := 0; i < 2; i++ {
			s := e.open()
			got, err := s.SnapshotGetCurrent(ctx, "ns/src")
			if err != nil || got.ID != sn.ID || got.Customers != 10 {
				t.Fatalf("reopen %d: current = %+v, %v; want id %d with 10 customers", i, got, err, sn.ID)
			}
		}
	})

	t.Run("ConcurrentOpens", func(t *testing.T) {
		t.Parallel()
		url := d.NewURL(t)
		clock := NewClock()
		const n = 4
		stores := make([]store.Store, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				stores[i], errs[i] = d.Open(ctx, url, store.Options{Clock: clock})
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("open %d of %d at once: %v", i, n, err)
			}
			t.Cleanup(func() { stores[i].Close() })
		}
		// Every handle sees one schema.
		if _, err := stores[0].RunCreate(ctx, &store.RunCreateParams{RunID: "r1", Campaign: "ns/c", Channel: "ns/ch", Shards: 1}); err != nil {
			t.Fatal(err)
		}
		for i, s := range stores {
			if _, err := s.RunGet(ctx, "r1"); err != nil {
				t.Errorf("handle %d: %v", i, err)
			}
		}
	})

	t.Run("OpenByURL", func(t *testing.T) {
		t.Parallel()
		url := d.NewURL(t)
		s, err := store.Open(ctx, url, store.Options{})
		if err != nil {
			t.Fatalf("store.Open(%s): %v", url, err)
		}
		defer s.Close()
		if _, err := s.SnapshotGetCurrent(ctx, "none/none"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SnapshotGetCurrent on empty store: %v, want ErrNotFound", err)
		}
		if _, err := store.Open(ctx, "mysql://x", store.Options{}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("unknown scheme: %v, want ErrInvalid", err)
		}
	})

	// Runners open the store without migrating: an unmigrated database is
	// an ErrSchema that says what to do, a migrated one opens.
	t.Run("NoMigrate", func(t *testing.T) {
		t.Parallel()
		url := d.NewURL(t)
		s, err := d.Open(ctx, url, store.Options{NoMigrate: true})
		if err == nil {
			s.Close()
			t.Fatal("Open with NoMigrate on an empty database succeeded")
		}
		if !errors.Is(err, store.ErrSchema) || !strings.Contains(err.Error(), "store schema is at version 0; this binary needs version ") ||
			!strings.Contains(err.Error(), "start the operator, which migrates") {
			t.Errorf("Open with NoMigrate on an empty database = %v, want ErrSchema saying what to do", err)
		}
		migrated, err := d.Open(ctx, url, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		migrated.Close()
		s, err = d.Open(ctx, url, store.Options{NoMigrate: true})
		if err != nil {
			t.Fatalf("Open with NoMigrate on a migrated database: %v", err)
		}
		defer s.Close()
		if _, err := s.RunCreate(ctx, &store.RunCreateParams{RunID: "r1", Campaign: "ns/c", Channel: "ns/ch", Shards: 1}); err != nil {
			t.Fatal(err)
		}
	})
}
