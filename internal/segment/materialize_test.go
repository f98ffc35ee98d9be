package segment

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/pgtest"
	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/internal/store/postgres"
	"github.com/retention-dev/retention-operator/internal/store/sqlite"
	"github.com/retention-dev/retention-operator/internal/store/storetest"
)

// One PostgreSQL server for the package, started by the first test that
// needs it (the CEL tests do not), stopped after the tests.
var (
	pgOnce   sync.Once
	pgServer *pgtest.Server
	pgErr    error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pgServer != nil {
		if err := pgServer.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

func postgresServer(tb testing.TB) *pgtest.Server {
	tb.Helper()
	pgOnce.Do(func() { pgServer, pgErr = pgtest.NewServer(nil) })
	if pgErr != nil {
		tb.Fatalf("pgtest: %v", pgErr)
	}
	return pgServer
}

// drivers open a fresh store per test.
var drivers = []struct {
	name string
	open func(tb testing.TB) store.Store
}{
	{"SQLite", func(tb testing.TB) store.Store {
		s, err := sqlite.OpenPath(context.Background(), filepath.Join(tb.TempDir(), "store.db"), store.Options{Clock: storetest.NewClock()})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { s.Close() })
		return s
	}},
	{"PostgreSQL", func(tb testing.TB) store.Store {
		s, err := postgres.Open(context.Background(), pgtest.NewDatabase(tb, postgresServer(tb)), store.Options{Clock: storetest.NewClock()})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { s.Close() })
		return s
	}},
}

// population1 is snapshot 1: customers 0..1999. population2 is
// snapshot 2: 0..99 gone, 2000..2099 new, and P(alive) changed for every
// customer whose number is a multiple of 7.
func population1() []*customer.Scored { return people(0, 2000, 0) }
func population2() []*customer.Scored { return people(100, 2100, 7) }

func people(from, to, shift int) []*customer.Scored {
	var out []*customer.Scored
	for i := from; i < to; i++ {
		c := &customer.Scored{}
		storetest.Customer(i, c)
		c.Scores.PAlive = float64((i*37)%100) / 100
		if shift > 0 && i%shift == 0 {
			c.Scores.PAlive = 1 - c.Scores.PAlive
		}
		out = append(out, c)
	}
	return out
}

func writeSnapshot(tb testing.TB, st store.Store, cs []*customer.Scored) int64 {
	tb.Helper()
	w, err := st.SnapshotWrite(context.Background(), &store.SnapshotWriteParams{Source: "ns/shop"})
	if err != nil {
		tb.Fatal(err)
	}
	defer w.Abort()
	if err := store.WriteAll(w, cs); err != nil {
		tb.Fatal(err)
	}
	sn, err := w.Commit()
	if err != nil {
		tb.Fatal(err)
	}
	return sn.ID
}

// oracle evaluates a rule in plain Go: members, their value, errors.
type oracle func(c *customer.Scored) (member, fails bool)

func expect(cs []*customer.Scored, o oracle) (members map[string]bool, value float64, errs int64) {
	members = map[string]bool{}
	for _, c := range cs {
		m, fails := o(c)
		if fails {
			errs++
		} else if m {
			members[c.ID] = true
			value += c.Scores.ExpectedValue
		}
	}
	return members, value, errs
}

func storedMembers(tb testing.TB, st store.Store, segment string) map[string]bool {
	tb.Helper()
	out := map[string]bool{}
	err := st.MembershipScan(context.Background(), &store.MembershipScanParams{Segment: segment}, func(m *store.Member) error {
		out[m.CustomerID] = true
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func diffCount(a, b map[string]bool) (n int64) {
	for id := range a {
		if !b[id] {
			n++
		}
	}
	return n
}

func sameSet(a, b map[string]bool) string {
	var extra, missing []string
	for id := range a {
		if !b[id] {
			extra = append(extra, id)
		}
	}
	for id := range b {
		if !a[id] {
			missing = append(missing, id)
		}
	}
	if len(extra)+len(missing) == 0 {
		return ""
	}
	sort.Strings(extra)
	sort.Strings(missing)
	return fmt.Sprintf("%d unexpected members %.5v, %d missing %.5v", len(extra), extra, len(missing), missing)
}

// storeSchema is the schema testRules compile against (storetest.Customer's attributes).
var storeSchema = Schema{
	Attributes:   map[string]customer.AttributeType{"country": customer.String, "vip": customer.Bool, "signup": customer.Timestamp},
	CustomScores: []string{"churn_risk"},
}

// testRules are rules and their plain-Go oracles: at risk, an edit of it
// reading an attribute, one failing for some customers, one reading a
// custom score and another attribute.
var testRules = []struct {
	rule   string
	oracle oracle
}{
	{`customer.pAlive < 0.5`, func(c *customer.Scored) (bool, bool) { return c.Scores.PAlive < 0.5, false }},
	{`customer.pAlive < 0.3 || customer.attributes.country == "IR"`, func(c *customer.Scored) (bool, bool) {
		return c.Scores.PAlive < 0.3 || c.Attributes["country"] == "IR", false
	}},
	{`100 / (customer.frequency - 3) > 0`, func(c *customer.Scored) (bool, bool) {
		d := c.Features.Frequency - 3
		if d == 0 {
			return false, true
		}
		return 100/d > 0, false
	}},
	{`customer.attributes.vip && customer.custom.churn_risk > 0.2`, func(c *customer.Scored) (bool, bool) {
		vip, _ := c.Attributes["vip"].(bool)
		return vip && c.Scores.Custom["churn_risk"] > 0.2, false
	}},
}

// TestMaterialize applies rules to two snapshots in which customers come,
// go and change, on both drivers and every evaluation mode, and checks
// the stored membership, entries and exits against a plain-Go oracle.
func TestMaterialize(t *testing.T) {
	t.Parallel()
	ruleAtRisk, atRisk := testRules[0].rule, testRules[0].oracle
	ruleEdited, edited := testRules[1].rule, testRules[1].oracle
	ruleDivides, divides := testRules[2].rule, testRules[2].oracle
	schema := storeSchema
	p1, p2 := population1(), population2()

	for _, d := range drivers {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := d.open(t)
			s1 := writeSnapshot(t, st, p1)
			s2 := writeSnapshot(t, st, p2)
			for _, workers := range []int{-1, 0, 1, 2} {
				t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
					seg := fmt.Sprintf("ns/at-risk-%d", workers)
					var prevSnapshot int64
					run := func(snapshot int64, rule string, o oracle, cs []*customer.Scored, prev map[string]bool) map[string]bool {
						t.Helper()
						stats, err := Materialize(ctx, st, &MaterializeParams{
							Segment: seg, SnapshotID: snapshot, Rule: mustCompile(t, rule, schema), Now: testNow, Workers: workers,
						})
						if err != nil {
							t.Fatalf("Materialize(%q on %d): %v", rule, snapshot, err)
						}
						want, value, errs := expect(cs, o)
						got := storedMembers(t, st, seg)
						if msg := sameSet(got, want); msg != "" {
							t.Fatalf("%q on snapshot %d: %s", rule, snapshot, msg)
						}
						wantStats := Stats{
							Size: int64(len(want)), Entered: diffCount(want, prev), Exited: diffCount(prev, want),
							Evaluated: int64(len(cs)), Share: float64(len(want)) / float64(len(cs)), Errors: errs,
						}
						wantStats.PreviousSnapshotID, prevSnapshot = prevSnapshot, snapshot
						gotStats := *stats
						if math.Abs(gotStats.Value-value) > 1e-6*value {
							t.Errorf("value %v, want %v", gotStats.Value, value)
						}
						if errs > 0 && gotStats.FirstError != "division by zero" {
							t.Errorf("first error %q, want division by zero", gotStats.FirstError)
						}
						gotStats.Value, gotStats.FirstError = 0, ""
						if gotStats != wantStats {
							t.Errorf("%q on snapshot %d:\n got %+v\nwant %+v", rule, snapshot, gotStats, wantStats)
						}
						return want
					}
					m1 := run(s1, ruleAtRisk, atRisk, p1, nil)
					if len(m1) == 0 || len(m1) == len(p1) {
						t.Fatalf("degenerate test: %d members", len(m1))
					}
					m2 := run(s2, ruleAtRisk, atRisk, p2, m1)
					if diffCount(m2, m1) == 0 || diffCount(m1, m2) == 0 {
						t.Fatal("degenerate test: no entries or no exits")
					}
					// The rule is edited: membership follows on the same snapshot.
					m3 := run(s2, ruleEdited, edited, p2, m2)
					if diffCount(m3, m2) == 0 || diffCount(m2, m3) == 0 {
						t.Fatal("degenerate test: the edit changed nothing")
					}
					// A rule failing for some customers: they are not members.
					run(s2, ruleDivides, divides, p2, m3)
				})
			}
		})
	}
}

// TestMaterializeFailures: a missing snapshot, an older snapshot than the
// applied one and a cancelled context change nothing.
func TestMaterializeFailures(t *testing.T) {
	t.Parallel()
	for _, d := range drivers {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := d.open(t)
			s1 := writeSnapshot(t, st, population1())
			s2 := writeSnapshot(t, st, population2())
			r := mustCompile(t, `customer.pAlive < 0.5`, Schema{})
			params := func(snapshot int64, workers int) *MaterializeParams {
				return &MaterializeParams{Segment: "ns/seg", SnapshotID: snapshot, Rule: r, Now: testNow, Workers: workers}
			}
			for _, workers := range []int{-1, 1} {
				if _, err := Materialize(ctx, st, params(999, workers)); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("workers %d: missing snapshot: %v, want ErrNotFound", workers, err)
				}
			}
			if n, err := store.MembershipCount(ctx, st, "ns/seg"); err != nil || n != 0 {
				t.Fatalf("after failures: %d members, %v", n, err)
			}
			first, err := Materialize(ctx, st, params(s2, 0))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Materialize(ctx, st, params(s1, 0)); !errors.Is(err, store.ErrConflict) {
				t.Errorf("older snapshot: %v, want ErrConflict", err)
			}
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			for _, workers := range []int{-1, 1} {
				if _, err := Materialize(cctx, st, params(s2, workers)); !errors.Is(err, context.Canceled) {
					t.Errorf("workers %d: cancelled: %v, want context.Canceled", workers, err)
				}
			}
			if n, err := store.MembershipCount(ctx, st, "ns/seg"); err != nil || n != first.Size {
				t.Errorf("after failures: %d members, %v; want %d", n, err, first.Size)
			}
			for _, p := range []*MaterializeParams{nil, {Segment: "ns/x", SnapshotID: s2}} {
				if _, err := Materialize(ctx, st, p); err == nil || !strings.Contains(err.Error(), "segment") {
					t.Errorf("Materialize(%+v) = %v", p, err)
				}
			}
		})
	}
}

// TestMaterializeBatch evaluates every test rule in one scan, on both
// drivers and every evaluation mode, checks each segment against its
// oracle and against the same rule materialized alone, then a batch in
// which one segment is already on a newer snapshot: that segment's result
// is ErrConflict and unchanged, the others are applied.
func TestMaterializeBatch(t *testing.T) {
	t.Parallel()
	p1, p2 := population1(), population2()
	for _, d := range drivers {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := d.open(t)
			s1 := writeSnapshot(t, st, p1)
			s2 := writeSnapshot(t, st, p2)
			for _, workers := range []int{-1, 0, 2} {
				t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
					batch := &BatchParams{SnapshotID: s1, Now: testNow, Workers: workers, Applies: 3}
					for k, tr := range testRules {
						batch.Segments = append(batch.Segments, BatchSegment{
							Segment: fmt.Sprintf("ns/batch-%d-%d", workers, k), Rule: mustCompile(t, tr.rule, storeSchema),
						})
					}
					res, err := MaterializeBatch(ctx, st, batch)
					if err != nil {
						t.Fatal(err)
					}
					for k, r := range res {
						tr := testRules[k]
						if r.Err != nil || r.Segment != batch.Segments[k].Segment {
							t.Fatalf("%q: result %+v", tr.rule, r)
						}
						want, value, errs := expect(p1, tr.oracle)
						if msg := sameSet(storedMembers(t, st, r.Segment), want); msg != "" {
							t.Errorf("%q: %s", tr.rule, msg)
						}
						alone, err := Materialize(ctx, st, &MaterializeParams{
							Segment: r.Segment + "-alone", SnapshotID: s1, Rule: batch.Segments[k].Rule, Now: testNow, Workers: workers,
						})
						if err != nil {
							t.Fatal(err)
						}
						if *alone != *r.Stats {
							t.Errorf("%q: in a batch %+v, alone %+v", tr.rule, *r.Stats, *alone)
						}
						if r.Stats.Size != int64(len(want)) || r.Stats.Entered != int64(len(want)) || r.Stats.Errors != errs ||
							math.Abs(r.Stats.Value-value) > 1e-6*value {
							t.Errorf("%q: stats %+v, want %d members, value %v, %d errors", tr.rule, *r.Stats, len(want), value, errs)
						}
						if len(want) == 0 || len(want) == len(p1) {
							t.Errorf("%q: degenerate test, %d members", tr.rule, len(want))
						}
					}

					// Segment 0 moves on to snapshot 2 alone; a batch on
					// snapshot 2 then 1 conflicts for it only.
					ahead := batch.Segments[0]
					if _, err := Materialize(ctx, st, &MaterializeParams{Segment: ahead.Segment, SnapshotID: s2, Rule: ahead.Rule, Now: testNow}); err != nil {
						t.Fatal(err)
					}
					before := storedMembers(t, st, ahead.Segment)
					batch.SnapshotID = s1
					res, err = MaterializeBatch(ctx, st, batch)
					if err != nil {
						t.Fatal(err)
					}
					if !errors.Is(res[0].Err, store.ErrConflict) || res[0].Stats != nil {
						t.Errorf("segment on a newer snapshot: %+v, want ErrConflict", res[0])
					}
					if msg := sameSet(storedMembers(t, st, ahead.Segment), before); msg != "" {
						t.Errorf("the conflicting segment changed: %s", msg)
					}
					for _, r := range res[1:] {
						if r.Err != nil || r.Stats.Entered != 0 || r.Stats.Exited != 0 {
							t.Errorf("re-applied on the same snapshot: %+v", r)
						}
					}
				})
			}
			r := mustCompile(t, `true`, Schema{})
			for name, p := range map[string]*BatchParams{
				"no segments": {SnapshotID: s1},
				"a key twice": {SnapshotID: s1, Segments: []BatchSegment{{"ns/a", r}, {"ns/a", r}}},
				"no rule":     {SnapshotID: s1, Segments: []BatchSegment{{"ns/a", r}, {"ns/b", nil}}},
			} {
				if _, err := MaterializeBatch(ctx, st, p); err == nil {
					t.Errorf("%s: no error", name)
				}
			}
		})
	}
}
