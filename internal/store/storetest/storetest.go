// Package storetest is the contract suite of internal/store: every driver's
// tests run Exercise against a real database, so the drivers behave alike.
// It is split into a file per area: migrations, snapshots, membership,
// runs and targets, claims, materialization, the contact ledger, opt-outs
// and holdout assignments, tallies, failure.
//
// Grow the suite before the interface: a behaviour a caller relies on is a
// test here first.
package storetest

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/clock"
	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
)

// Driver tells the suite how to get databases for one driver. The suite
// needs more than a store factory: several handles on one database (two
// runners, two processes migrating at once) and an injected clock.
type Driver struct {
	// NewURL returns the URL of a fresh, empty database for one test.
	NewURL func(t testing.TB) string
	// Open opens a store on a URL.
	Open func(ctx context.Context, url string, opts store.Options) (store.Store, error)
	// DownURL returns a URL whose database cannot be reached.
	DownURL func(t testing.TB) string
	// Dump returns every row of every table of the database at url, by
	// table, each row's values as text (byte strings as they are), so the
	// erasure test can search the whole database for an erased customer.
	Dump func(t testing.TB, url string) map[string][]string
}

// Exercise runs the contract suite.
func Exercise(ctx context.Context, t *testing.T, d *Driver) {
	t.Run("Migrate", func(t *testing.T) { t.Parallel(); exerciseMigrate(ctx, t, d) })
	t.Run("Snapshot", func(t *testing.T) { t.Parallel(); exerciseSnapshot(ctx, t, d) })
	t.Run("Membership", func(t *testing.T) { t.Parallel(); exerciseMembership(ctx, t, d) })
	t.Run("Run", func(t *testing.T) { t.Parallel(); exerciseRun(ctx, t, d) })
	t.Run("Target", func(t *testing.T) { t.Parallel(); exerciseTarget(ctx, t, d) })
	t.Run("Claim", func(t *testing.T) { t.Parallel(); exerciseClaim(ctx, t, d) })
	t.Run("Materialize", func(t *testing.T) { t.Parallel(); exerciseMaterialize(ctx, t, d) })
	t.Run("Ledger", func(t *testing.T) { t.Parallel(); exerciseLedger(ctx, t, d) })
	t.Run("OptOut", func(t *testing.T) { t.Parallel(); exerciseOptOut(ctx, t, d) })
	t.Run("Tally", func(t *testing.T) { t.Parallel(); exerciseTally(ctx, t, d) })
	t.Run("Measure", func(t *testing.T) { t.Parallel(); exerciseMeasure(ctx, t, d) })
	t.Run("Erasure", func(t *testing.T) { t.Parallel(); exerciseErasure(ctx, t, d) })
	t.Run("Down", func(t *testing.T) { t.Parallel(); exerciseDown(ctx, t, d) })
}

// Clock is the settable clock the suite injects: internal/clock's Fake.
type Clock = clock.Fake

// Epoch is the time a new Clock reads.
var Epoch = time.Date(2025, 1, 1, 9, 0, 0, 0, time.UTC)

// NewClock returns a clock at Epoch.
func NewClock() *Clock { return clock.NewFake(Epoch) }

// env is one test's database, clock and first store handle.
type env struct {
	t     *testing.T
	ctx   context.Context
	d     *Driver
	url   string
	clock *Clock
	s     store.Store
}

func newEnv(ctx context.Context, t *testing.T, d *Driver) *env {
	t.Helper()
	e := &env{t: t, ctx: ctx, d: d, url: d.NewURL(t), clock: NewClock()}
	e.s = e.open()
	return e
}

// open opens another handle on the test's database, closed at the end.
func (e *env) open() store.Store {
	e.t.Helper()
	s, err := e.d.Open(e.ctx, e.url, store.Options{Clock: e.clock})
	if err != nil {
		e.t.Fatalf("open %s: %v", e.url, err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

// Customer fills c with realistic values for customer number i: the same i
// always gives the same record. Benchmarks and tests share it.
func Customer(i int, c *customer.Scored) {
	day := func(d int) time.Time { return time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, d) }
	x := int32(i % 17)
	first := i % 400
	last := first + int(x)*9
	var buf [32]byte
	c.ID = string(appendPadded(append(buf[:0], 'c'), i, 7))
	c.Features = customer.Features{
		Frequency:     x,
		Recency:       float64(last-first) / 7,
		Age:           float64(730-first) / 7,
		Monetary:      float64(i%9000)/100 + 5,
		Transactions:  x + 1 + int32(i%3),
		TotalSpend:    float64(i%20000)/10 + 12.5,
		FirstPurchase: day(first),
		LastPurchase:  day(last),
		RecencyDays:   int32(730 - last),
		TenureDays:    int32(730 - first),
	}
	f := float64(i%1000) / 1000
	c.Scores.PAlive = 0.05 + 0.9*f
	c.Scores.ExpectedPurchases = 3.2 * f
	c.Scores.ExpectedSpend = 40 + 20*f
	c.Scores.ExpectedValue = 150 * f * f
	c.Scores.RecencyScore = int8(1 + i%5)
	c.Scores.FrequencyScore = int8(1 + (i/5)%5)
	c.Scores.MonetaryScore = int8(1 + (i/25)%5)
	c.Scores.ValuePercentile = math.Round(f*1000) / 10
	c.Scores.FrequencyPercentile = float64(i%100) + 0.5
	c.Scores.RecencyPercentile = float64((i*7)%100) + 0.25
	if c.Scores.Custom == nil {
		c.Scores.Custom = map[string]float64{}
	}
	c.Scores.Custom["churn_risk"] = 1 - c.Scores.PAlive
	if c.Attributes == nil {
		c.Attributes = customer.Attributes{}
	}
	c.Attributes["country"] = [...]string{"DE", "IR", "FR", "US", "BR"}[i%5]
	c.Attributes["vip"] = i%50 == 0
	c.Attributes["signup"] = day(first - 30)
	c.Contact = customer.Contact{
		Email:    string(append(appendPadded(append(buf[:0], "customer"...), i, 1), "@example.com"...)),
		Phone:    string(appendPadded(append(buf[:0], "+4930"...), i, 7)),
		Timezone: "Europe/Berlin",
		Locale:   "de-DE",
		OptOut:   i%97 == 0,
	}
}

// writeSnapshot writes customers [from, to) (by Customer) plus extra as
// one snapshot and commits it.
func writeSnapshot(e *env, s store.Store, source string, from, to int, extra ...*customer.Scored) *store.Snapshot {
	e.t.Helper()
	w, err := s.SnapshotWrite(e.ctx, &store.SnapshotWriteParams{Source: source, Meta: map[string]any{"from": from, "to": to}})
	if err != nil {
		e.t.Fatalf("SnapshotWrite: %v", err)
	}
	defer w.Abort()
	var c customer.Scored
	for i := from; i < to; i++ {
		Customer(i, &c)
		if err := w.Add(&c); err != nil {
			e.t.Fatalf("Add: %v", err)
		}
	}
	if err := store.WriteAll(w, extra); err != nil {
		e.t.Fatalf("Write: %v", err)
	}
	sn, err := w.Commit()
	if err != nil {
		e.t.Fatalf("Commit: %v", err)
	}
	return sn
}

// scanIDs returns the ids of a snapshot, in scan order.
func scanIDs(e *env, s store.Store, id int64) ([]string, error) {
	var ids []string
	err := s.SnapshotScan(e.ctx, &store.SnapshotScanParams{SnapshotID: id}, func(c *customer.Scored) error {
		ids = append(ids, c.ID)
		return nil
	})
	return ids, err
}

func ids(prefix string, from, to int) []string {
	out := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s%05d", prefix, i))
	}
	return out
}

// fmtSscan parses the number of a Customer id ("c0001234").
func fmtSscan(id string, idx *int) (int, error) { return fmt.Sscanf(id, "c%d", idx) }

// appendPadded appends i in decimal, zero-padded to width digits.
func appendPadded(b []byte, i, width int) []byte {
	var d [20]byte
	n := 0
	for i > 0 || n < width {
		d[len(d)-1-n] = byte('0' + i%10)
		i /= 10
		n++
	}
	return append(b, d[len(d)-n:]...)
}
