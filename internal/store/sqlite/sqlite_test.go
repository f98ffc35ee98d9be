package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/storetest"
)

func tempURL(t testing.TB) string { return "sqlite://" + filepath.Join(t.TempDir(), "store.db") }

func open(ctx context.Context, url string, opts store.Options) (store.Store, error) {
	return Open(ctx, url, opts)
}

func TestContract(t *testing.T) {
	storetest.Exercise(context.Background(), t, &storetest.Driver{
		NewURL: tempURL,
		Open:   open,
		DownURL: func(t testing.TB) string {
			return "sqlite://" + filepath.Join(t.TempDir(), "missing-dir", "sub", "store.db")
		},
	})
}

func TestPathFromURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url, want string
		ok        bool
	}{
		{"sqlite:///var/lib/retention/store.db", "/var/lib/retention/store.db", true},
		{"sqlite://store.db", "store.db", true},
		{"sqlite://data/store.db", "data/store.db", true},
		{"sqlite://", "", false},
		{"sqlite://x.db?mode=ro", "", false},
		{"postgres://x", "", false},
	} {
		got, err := PathFromURL(tc.url)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("PathFromURL(%q) = %q, %v; want %q (ok %v)", tc.url, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, store.ErrInvalid) {
			t.Errorf("PathFromURL(%q) error %v is not ErrInvalid", tc.url, err)
		}
	}
}

// TestAbandonedWriterIsPruned: a writer whose process died after some of
// its transactions committed leaves a 'writing' snapshot; it is never
// visible, and a prune drops it once its heartbeat is old.
func TestAbandonedWriterIsPruned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := storetest.NewClock()
	s, err := Open(ctx, tempURL(t), store.Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sw, err := s.SnapshotWrite(ctx, &store.SnapshotWriteParams{Source: "ns/src"})
	if err != nil {
		t.Fatal(err)
	}
	w := sw.(*snapshotWriter)
	var c customer.Scored
	for i := 0; i < 2*rowsPerTx+5; i++ {
		storetest.Customer(i, &c)
		if err := w.Add(&c); err != nil {
			t.Fatal(err)
		}
	}
	// The process dies: its open transaction rolls back, nothing else runs.
	w.rollback()
	w.end = true
	w.close()

	if list, err := s.SnapshotList(ctx, "ns/src"); err != nil || len(list) != 0 {
		t.Fatalf("abandoned snapshot listed: %v, %v", list, err)
	}
	if err := s.SnapshotScan(ctx, &store.SnapshotScanParams{SnapshotID: w.id}, func(*customer.Scored) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("scan of an abandoned snapshot = %v, want ErrNotFound", err)
	}
	// A recent heartbeat: the writer may be alive, keep it.
	if res, err := s.SnapshotPrune(ctx, &store.SnapshotPruneParams{Source: "ns/src"}); err != nil || res.Abandoned != 0 {
		t.Fatalf("prune right away = %+v, %v; want nothing abandoned", res, err)
	}
	clock.Advance(2 * time.Hour)
	if res, err := s.SnapshotPrune(ctx, &store.SnapshotPruneParams{Source: "ns/src"}); err != nil || res.Abandoned != 1 {
		t.Fatalf("prune after 2h = %+v, %v; want 1 abandoned", res, err)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE name = ?", "snap_1").Scan(&n); err != nil || n != 0 {
		t.Errorf("abandoned table still there: %d, %v", n, err)
	}
}
