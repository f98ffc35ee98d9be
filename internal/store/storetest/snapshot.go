package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
)

// clone deep-copies a scanned record (the scan reuses its maps) and
// normalizes empty maps to nil.
func clone(c *customer.Scored) customer.Scored {
	out := *c
	out.Scores.Custom = nil
	if len(c.Scores.Custom) > 0 {
		out.Scores.Custom = maps.Clone(c.Scores.Custom)
	}
	out.Attributes = nil
	if len(c.Attributes) > 0 {
		out.Attributes = maps.Clone(c.Attributes)
	}
	return out
}

// edgeCustomers exercise every field: unicode, each attribute type, custom
// scores, zero values, extreme floats, nanosecond times.
func edgeCustomers() []*customer.Scored {
	signup := time.Date(2021, 3, 21, 12, 30, 15, 123456789, time.UTC)
	return []*customer.Scored{
		{
			ID: "نیلوفر-۱۴۰۲",
			Features: customer.Features{
				Frequency: 12, Recency: 40.5, Age: 52.25, Monetary: 37.125, Transactions: 19, TotalSpend: 512.75,
				FirstPurchase: time.Date(2022, 1, 3, 0, 0, 0, 0, time.UTC), LastPurchase: time.Date(2022, 10, 14, 0, 0, 0, 0, time.UTC),
				RecencyDays: 80, TenureDays: 365,
			},
			Scores: customer.Scores{
				PAlive: 0.8125, ExpectedPurchases: 2.5, ExpectedSpend: 41.5, ExpectedValue: 99.75,
				RecencyScore: 5, FrequencyScore: 4, MonetaryScore: 3,
				ValuePercentile: 99.5, FrequencyPercentile: 87.25, RecencyPercentile: 12.5,
				Custom: map[string]float64{"churn_risk": 0.1875, "ارزش": 1234.5, "zero": 0, "negative": -3.5},
			},
			Attributes: customer.Attributes{
				"name":    "نیلوفر",
				"city":    "تهران",
				"score":   float64(42.5),
				"neg":     -1e-300,
				"vip":     true,
				"churned": false,
				"signup":  signup,
				"empty":   "",
				"emoji":   "🎉 ok",
			},
			Contact: customer.Contact{Email: "niloufar@example.ir", Phone: "+98 21 1234 5678", Timezone: "Asia/Tehran", Locale: "fa-IR", OptOut: true},
		},
		{ID: "bare"}, // every field zero, no maps
		{
			ID:         "extremes",
			Features:   customer.Features{Frequency: math.MaxInt32, Transactions: math.MinInt32, RecencyDays: -1, TenureDays: math.MaxInt32, TotalSpend: math.MaxFloat64, Monetary: math.SmallestNonzeroFloat64},
			Scores:     customer.Scores{ExpectedValue: math.Inf(1), ExpectedSpend: math.Inf(-1), RecencyScore: -128, FrequencyScore: 127},
			Attributes: customer.Attributes{"long": strings.Repeat("y", 10000)},
			Contact:    customer.Contact{Email: "a'b\"c\\d,e\tf\ng@example.com", Locale: "en-US"},
		},
	}
}

func exerciseSnapshot(ctx context.Context, t *testing.T, d *Driver) {
	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		edge := edgeCustomers()
		nan := &customer.Scored{ID: "nan", Scores: customer.Scores{PAlive: math.NaN()}}
		sn := writeSnapshot(e, e.s, "ns/src", 0, 500, append(edge, nan)...)
		if sn.Customers != 500+int64(len(edge))+1 || sn.Source != "ns/src" || !sn.CreatedAt.Equal(Epoch) {
			t.Errorf("Commit = %+v", sn)
		}
		want := map[string]customer.Scored{}
		for i := 0; i < 500; i++ {
			var c customer.Scored
			Customer(i, &c)
			want[c.ID] = clone(&c)
		}
		for _, c := range edge {
			want[c.ID] = clone(c)
		}
		got := map[string]customer.Scored{}
		var prev *customer.Scored
		reused := true
		err := e.s.SnapshotScan(ctx, &store.SnapshotScanParams{SnapshotID: sn.ID}, func(c *customer.Scored) error {
			if prev != nil && prev != c {
				reused = false
			}
			prev = c
			if c.ID == "nan" {
				if !math.IsNaN(c.Scores.PAlive) {
					t.Errorf("NaN p(alive) read back as %v", c.Scores.PAlive)
				}
				return nil
			}
			if _, dup := got[c.ID]; dup {
				t.Errorf("customer %q scanned twice", c.ID)
			}
			got[c.ID] = clone(c)
			return nil
		})
		if err != nil {
			t.Fatalf("SnapshotScan: %v", err)
		}
		if !reused {
			t.Log("note: the driver passes a fresh record per customer (allowed, but slower)")
		}
		if len(got) != len(want) {
			t.Fatalf("scanned %d customers, want %d", len(got), len(want))
		}
		for id, w := range want {
			if g := got[id]; !reflect.DeepEqual(g, w) {
				t.Errorf("customer %q round trip:\n got %+v\nwant %+v", id, g, w)
			}
		}

		cur, err := e.s.SnapshotGetCurrent(ctx, "ns/src")
		if err != nil || cur.ID != sn.ID || cur.Customers != sn.Customers {
			t.Fatalf("SnapshotGetCurrent = %+v, %v; want %+v", cur, err, sn)
		}
		var meta map[string]int
		if err := json.Unmarshal(cur.Meta, &meta); err != nil || meta["to"] != 500 {
			t.Errorf("meta = %s (%v)", cur.Meta, err)
		}
		byID, err := e.s.SnapshotGetByID(ctx, sn.ID)
		if err != nil || !reflect.DeepEqual(byID, cur) {
			t.Errorf("SnapshotGetByID = %+v, %v; want %+v", byID, err, cur)
		}
	})

	t.Run("InvalidRecords", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		old := writeSnapshot(e, e.s, "ns/src", 0, 5)
		for _, tc := range []struct {
			name string
			c    customer.Scored
		}{
			{"empty id", customer.Scored{}},
			{"invalid UTF-8 id", customer.Scored{ID: "a\xffb"}},
			{"NUL in email", customer.Scored{ID: "x", Contact: customer.Contact{Email: "a\x00b"}}},
			{"int attribute", customer.Scored{ID: "x", Attributes: customer.Attributes{"n": 3}}},
			{"invalid UTF-8 attribute", customer.Scored{ID: "x", Attributes: customer.Attributes{"s": "\xc3\x28"}}},
		} {
			w, err := e.s.SnapshotWrite(ctx, &store.SnapshotWriteParams{Source: "ns/src"})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Add(&tc.c); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("%s: Add = %v, want ErrInvalid", tc.name, err)
			}
			if _, err := w.Commit(); err == nil {
				t.Errorf("%s: Commit after a failed Add succeeded", tc.name)
			}
		}
		// Duplicate ids fail at commit.
		w, err := e.s.SnapshotWrite(ctx, &store.SnapshotWriteParams{Source: "ns/src"})
		if err != nil {
			t.Fatal(err)
		}
		dup := &customer.Scored{ID: "same"}
		if err := store.WriteAll(w, []*customer.Scored{dup, dup}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Commit(); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Commit with a duplicate id = %v, want ErrInvalid", err)
		}
		if cur, err := e.s.SnapshotGetCurrent(ctx, "ns/src"); err != nil || cur.ID != old.ID {
			t.Errorf("after failed writes current = %+v, %v; want %d", cur, err, old.ID)
		}
		if _, err := e.s.SnapshotWrite(ctx, &store.SnapshotWriteParams{}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("SnapshotWrite without source = %v, want ErrInvalid", err)
		}
	})

	t.Run("Atomicity", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		other := e.open() // another process's view
		old := writeSnapshot(e, e.s, "ns/src", 0, 100)

		check := func(when string) {
			t.Helper()
			for _, s := range []store.Store{e.s, other} {
				cur, err := s.SnapshotGetCurrent(ctx, "ns/src")
				if err != nil || cur.ID != old.ID || cur.Customers != 100 {
					t.Fatalf("%s: current = %+v, %v; want snapshot %d", when, cur, err, old.ID)
				}
				list, err := s.SnapshotList(ctx, "ns/src")
				if err != nil || len(list) != 1 || list[0].ID != old.ID {
					t.Fatalf("%s: list = %v, %v; want only %d", when, list, err, old.ID)
				}
				got, err := scanIDs(e, s, old.ID)
				if err != nil || len(got) != 100 {
					t.Fatalf("%s: old snapshot scans %d customers, %v", when, len(got), err)
				}
			}
		}

		// An uncommitted write, large enough to span several of the
		// driver's internal transactions, is invisible.
		w, err := e.s.SnapshotWrite(ctx, &store.SnapshotWriteParams{Source: "ns/src"})
		if err != nil {
			t.Fatal(err)
		}
		var c customer.Scored
		for i := 1000; i < 26000; i++ {
			Customer(i, &c)
			if err := w.Add(&c); err != nil {
				t.Fatal(err)
			}
		}
		check("during an uncommitted write")
		if err := w.Abort(); err != nil {
			t.Fatalf("Abort: %v", err)
		}
		check("after Abort")
		if _, err := w.Commit(); err == nil {
			t.Error("Commit after Abort succeeded")
		}

		// A writer whose context dies (the process crashing) commits nothing.
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		w, err = e.s.SnapshotWrite(wctx, &store.SnapshotWriteParams{Source: "ns/src"})
		if err != nil {
			t.Fatal(err)
		}
		for i := 1000; i < 15000; i++ {
			Customer(i, &c)
			if i == 12000 {
				cancel()
			}
			if err := w.Add(&c); err != nil {
				break
			}
		}
		if _, err := w.Commit(); err == nil {
			t.Error("Commit after the context was cancelled succeeded")
		}
		check("after a cancelled write")

		// And a good write still works afterwards.
		next := writeSnapshot(e, e.s, "ns/src", 0, 50)
		if cur, err := other.SnapshotGetCurrent(ctx, "ns/src"); err != nil || cur.ID != next.ID || cur.Customers != 50 {
			t.Fatalf("after commit, other handle sees %+v, %v; want %d", cur, err, next.ID)
		}
	})

	t.Run("OldReaderWhileNewCommits", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		writer := e.open()
		old := writeSnapshot(e, e.s, "ns/src", 0, 3000)
		committed := make(chan *store.Snapshot, 1)
		pruned := make(chan error, 1)
		n := 0
		err := e.s.SnapshotScan(ctx, &store.SnapshotScanParams{SnapshotID: old.ID}, func(c *customer.Scored) error {
			n++
			if n == 1 {
				go func() {
					sn := writeSnapshotNoFatal(ctx, writer, "ns/src", 5000, 5100)
					committed <- sn
					if sn == nil {
						pruned <- errors.New("write failed")
						return
					}
					// On PostgreSQL this DROP waits for the scan to finish.
					_, err := writer.SnapshotPrune(ctx, &store.SnapshotPruneParams{Source: "ns/src", Keep: 1})
					pruned <- err
				}()
				if sn := <-committed; sn == nil {
					return errors.New("concurrent snapshot write failed")
				}
			}
			var want customer.Scored
			var idx int
			if _, err := fmtSscan(c.ID, &idx); err != nil || idx >= 3000 {
				t.Errorf("old snapshot yielded %q", c.ID)
				return nil
			}
			Customer(idx, &want)
			if c.Scores.ExpectedValue != want.Scores.ExpectedValue || c.Contact.Email != want.Contact.Email {
				t.Errorf("old snapshot customer %q changed under the reader", c.ID)
			}
			return nil
		})
		if err != nil || n != 3000 {
			t.Fatalf("scan of the old snapshot while a new one committed: %d customers, %v", n, err)
		}
		if err := <-pruned; err != nil {
			t.Fatalf("prune: %v", err)
		}
		if _, err := scanIDs(e, e.s, old.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("scan of a pruned snapshot = %v, want ErrNotFound", err)
		}
	})

	t.Run("Prune", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		var sns []*store.Snapshot
		for i := 0; i < 5; i++ {
			e.clock.Advance(time.Hour)
			sns = append(sns, writeSnapshot(e, e.s, "ns/a", i*10, i*10+10))
		}
		otherSrc := writeSnapshot(e, e.s, "ns/b", 0, 3)

		res, err := e.s.SnapshotPrune(ctx, &store.SnapshotPruneParams{Source: "ns/a", Keep: 2})
		if err != nil {
			t.Fatal(err)
		}
		if want := []int64{sns[0].ID, sns[1].ID, sns[2].ID}; !reflect.DeepEqual(res.Dropped, want) {
			t.Errorf("Dropped = %v, want %v", res.Dropped, want)
		}
		list, err := e.s.SnapshotList(ctx, "ns/a")
		if err != nil || len(list) != 2 || list[0].ID != sns[4].ID || list[1].ID != sns[3].ID {
			t.Errorf("after prune keep 2: %v, %v", list, err)
		}
		for _, sn := range sns[:3] {
			if _, err := scanIDs(e, e.s, sn.ID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("scan of pruned %d = %v, want ErrNotFound", sn.ID, err)
			}
			if _, err := e.s.SnapshotGetByID(ctx, sn.ID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("get of pruned %d = %v, want ErrNotFound", sn.ID, err)
			}
		}
		// Keep 0 still keeps the current one.
		if _, err := e.s.SnapshotPrune(ctx, &store.SnapshotPruneParams{Source: "ns/a"}); err != nil {
			t.Fatal(err)
		}
		if cur, err := e.s.SnapshotGetCurrent(ctx, "ns/a"); err != nil || cur.ID != sns[4].ID {
			t.Fatalf("current after keep 0 = %+v, %v", cur, err)
		}
		if got, err := scanIDs(e, e.s, sns[4].ID); err != nil || len(got) != 10 {
			t.Errorf("current after keep 0 scans %d, %v", len(got), err)
		}
		// Other sources are untouched.
		if got, err := scanIDs(e, e.s, otherSrc.ID); err != nil || len(got) != 3 {
			t.Errorf("other source scans %d, %v", len(got), err)
		}
		// Pruning again is a no-op.
		if res, err := e.s.SnapshotPrune(ctx, &store.SnapshotPruneParams{Source: "ns/a", Keep: 1}); err != nil || len(res.Dropped) != 0 {
			t.Errorf("second prune = %+v, %v", res, err)
		}

		if err := e.s.SnapshotDeleteBySource(ctx, "ns/a"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.s.SnapshotGetCurrent(ctx, "ns/a"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("current after delete = %v, want ErrNotFound", err)
		}
		if _, err := scanIDs(e, e.s, sns[4].ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("scan after delete = %v, want ErrNotFound", err)
		}
		if list, err := e.s.SnapshotList(ctx, "ns/a"); err != nil || len(list) != 0 {
			t.Errorf("list after delete = %v, %v", list, err)
		}
		if _, err := e.s.SnapshotGetCurrent(ctx, "ns/b"); err != nil {
			t.Errorf("other source after delete: %v", err)
		}
	})

	t.Run("ScanStopsEarly", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		sn := writeSnapshot(e, e.s, "ns/src", 0, 5000)
		stop := errors.New("enough")
		n := 0
		err := e.s.SnapshotScan(ctx, &store.SnapshotScanParams{SnapshotID: sn.ID}, func(*customer.Scored) error {
			n++
			if n == 5 {
				return stop
			}
			return nil
		})
		if err != stop || n != 5 {
			t.Fatalf("scan returned %v after %d customers; want the callback's error after 5", err, n)
		}
		// The store is still usable.
		for i := 0; i < 10; i++ {
			if got, err := scanIDs(e, e.s, sn.ID); err != nil || len(got) != 5000 {
				t.Fatalf("scan after an early stop: %d, %v", len(got), err)
			}
		}
		if _, err := scanIDs(e, e.s, sn.ID+1000); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("scan of an unknown snapshot = %v, want ErrNotFound", err)
		}
		if _, err := e.s.SnapshotGetCurrent(ctx, "ns/unknown"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("current of an unknown source = %v, want ErrNotFound", err)
		}
		if err := e.s.SnapshotScan(ctx, &store.SnapshotScanParams{}, func(*customer.Scored) error { return nil }); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("scan of snapshot 0 = %v, want ErrInvalid", err)
		}
	})
}

// writeSnapshotNoFatal is writeSnapshot for goroutines (no t.Fatal).
func writeSnapshotNoFatal(ctx context.Context, s store.Store, source string, from, to int) *store.Snapshot {
	w, err := s.SnapshotWrite(ctx, &store.SnapshotWriteParams{Source: source})
	if err != nil {
		return nil
	}
	defer w.Abort()
	var c customer.Scored
	for i := from; i < to; i++ {
		Customer(i, &c)
		if err := w.Add(&c); err != nil {
			return nil
		}
	}
	sn, err := w.Commit()
	if err != nil {
		return nil
	}
	return sn
}
