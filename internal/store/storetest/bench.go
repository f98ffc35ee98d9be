package storetest

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
)

// BenchCustomers is the size of the benchmark snapshot.
const BenchCustomers = 1_000_000

// BenchSnapshot benchmarks one store with a snapshot of n customers made
// in memory by Customer: Generate (the generator alone, to subtract),
// Write (stream n customers and commit) and Scan (stream them back).
// Each reports rows/s and the process's peak RSS during the run
// (VmHWM, reset before it through /proc/self/clear_refs). Run with
// -benchtime=1x: one iteration is a million rows.
func BenchSnapshot(b *testing.B, s store.Store, n int) {
	ctx := context.Background()
	const source = "bench/customers"
	b.Run("Generate", func(b *testing.B) {
		var c customer.Scored
		var sum float64
		start := startPeak(b)
		for range b.N {
			for i := 0; i < n; i++ {
				Customer(i, &c)
				sum += c.Scores.ExpectedValue
			}
		}
		report(b, start, n)
		_ = sum
	})
	b.Run("Write", func(b *testing.B) {
		start := startPeak(b)
		for range b.N {
			writeBench(ctx, b, s, source, n)
		}
		b.StopTimer()
		report(b, start, n)
		if _, err := s.SnapshotPrune(ctx, &store.SnapshotPruneParams{Source: source, Keep: 1}); err != nil {
			b.Fatal(err)
		}
	})
	b.Run("Scan", func(b *testing.B) {
		cur, err := s.SnapshotGetCurrent(ctx, source)
		if err != nil || cur.Customers != int64(n) {
			cur = writeBench(ctx, b, s, source, n)
		}
		start := startPeak(b)
		for range b.N {
			var rows, attrs int64
			var value float64
			err := s.SnapshotScan(ctx, &store.SnapshotScanParams{SnapshotID: cur.ID}, func(c *customer.Scored) error {
				rows++
				value += c.Scores.ExpectedValue + c.Features.Monetary
				attrs += int64(len(c.Attributes))
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			if rows != int64(n) || attrs != 3*int64(n) {
				b.Fatalf("scanned %d rows with %d attributes, want %d", rows, attrs, n)
			}
		}
		report(b, start, n)
	})
}

func writeBench(ctx context.Context, b *testing.B, s store.Store, source string, n int) *store.Snapshot {
	w, err := s.SnapshotWrite(ctx, &store.SnapshotWriteParams{Source: source, Meta: map[string]any{"bench": n}})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Abort()
	var c customer.Scored
	for i := 0; i < n; i++ {
		Customer(i, &c)
		if err := w.Add(&c); err != nil {
			b.Fatal(err)
		}
	}
	sn, err := w.Commit()
	if err != nil {
		b.Fatal(err)
	}
	return sn
}

// startPeak resets the peak RSS and the timer.
func startPeak(b *testing.B) time.Time {
	b.Helper()
	ResetPeakRSS()
	b.ResetTimer()
	return time.Now()
}

func report(b *testing.B, start time.Time, n int) {
	b.Helper()
	el := time.Since(start).Seconds() / float64(b.N)
	b.ReportMetric(el, "s/op-wall")
	b.ReportMetric(float64(n)/el, "rows/s")
	b.ReportMetric(float64(PeakRSS())/(1<<20), "peak-RSS-MiB")
}

// ResetPeakRSS resets the process's peak resident set size (VmHWM) to the
// current one (Linux: write 5 to /proc/self/clear_refs).
func ResetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// PeakRSS returns the process's peak resident set size in bytes since the
// last ResetPeakRSS (VmHWM from /proc/self/status), 0 if unknown.
func PeakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmHWM:")); ok {
			kb, _ := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(v, []byte("kB")))), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchTargets measures delivery bookkeeping alone: n targets in one shard,
// claimed in batches and recorded sent, as a runner does (no sending).
func BenchTargets(b *testing.B, s store.Store, n, batch int) {
	ctx := context.Background()
	for iter := range b.N {
		b.StopTimer()
		run := "bench-run-" + strconv.Itoa(iter)
		if _, err := s.RunCreate(ctx, &store.RunCreateParams{RunID: run, Campaign: "bench/c", Channel: "bench/ch", Shards: 1}); err != nil {
			b.Fatal(err)
		}
		ts := make([]store.NewTarget, 0, n)
		for i := 0; i < n; i++ {
			ts = append(ts, store.NewTarget{CustomerID: "c" + strconv.Itoa(1_000_000+i)})
		}
		if _, err := s.TargetInsert(ctx, &store.TargetInsertParams{RunID: run, Targets: ts}); err != nil {
			b.Fatal(err)
		}
		start := startPeak(b)
		b.StartTimer()
		ids := make([]string, 0, batch)
		total := 0
		for {
			claimed, err := s.TargetClaim(ctx, &store.TargetClaimParams{RunID: run, Limit: batch})
			if err != nil {
				b.Fatal(err)
			}
			if len(claimed) == 0 {
				break
			}
			ids = ids[:0]
			for _, t := range claimed {
				ids = append(ids, t.CustomerID)
			}
			m, err := s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: run, CustomerIDs: ids})
			if err != nil {
				b.Fatal(err)
			}
			total += int(m)
		}
		b.StopTimer()
		if total != n {
			b.Fatalf("recorded %d sent, want %d", total, n)
		}
		report(b, start, n)
	}
}

// BenchSize is the audience size of the materialization benchmarks:
// BenchCustomers, or $RETENTION_BENCH_CUSTOMERS for a quick check that
// they work.
func BenchSize() int {
	if v, err := strconv.Atoi(os.Getenv("RETENTION_BENCH_CUSTOMERS")); err == nil && v > 0 {
		return v
	}
	return BenchCustomers
}

// BenchAudience writes the audience of the materialization benchmarks
// once: a snapshot of n customers (by Customer) and a segment of them all,
// evaluated by a scan of the snapshot.
func BenchAudience(b *testing.B, s store.Store, n int) (snapshotID int64, segment string) {
	b.Helper()
	ctx := context.Background()
	segment = "bench/audience"
	sn := writeBench(ctx, b, s, "bench/audience", n)
	// The members come from a scan of the snapshot, as a segment's
	// evaluation reads it before any run does.
	members := make([]string, 0, n)
	if err := s.SnapshotScan(ctx, &store.SnapshotScanParams{SnapshotID: sn.ID}, func(c *customer.Scored) error {
		members = append(members, c.ID)
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	ids := store.MembersFromSlice(members)
	if _, err := s.MembershipApply(ctx, &store.MembershipApplyParams{Segment: segment, SnapshotID: sn.ID, Members: ids}); err != nil {
		b.Fatal(err)
	}
	return sn.ID, segment
}

// BenchShards is the shard count of the benchmark runs.
const BenchShards = 8

// BenchPlan is the trivial Plan of the benchmarks: every member is
// treatment, sharded by a byte of its id, with its contact, locale, time
// zone, measurement baseline and expected value frozen in.
func BenchPlan(m *store.AudienceMember, t *store.NewTarget) error {
	c := m.Customer
	t.Group = store.GroupTreatment
	t.Variant = "a"
	t.Shard = int32(c.ID[len(c.ID)-1]) % BenchShards
	t.Data = store.TargetData{
		Address: c.Contact.Email, Locale: c.Contact.Locale, TimeZone: c.Contact.Timezone,
		BaseTransactions: int64(c.Features.Transactions), BaseSpend: c.Features.TotalSpend,
		BaseLastPurchase: c.Features.LastPurchase, ExpectedValue: c.Scores.ExpectedValue,
	}
	return nil
}

// benchRuns numbers the benchmark's runs within the process.
var benchRuns int

// BenchMaterialize times RunMaterialize of an n-member audience written by
// BenchAudience: each iteration creates a run of a new campaign on a new
// channel and materializes it with BenchPlan, with a cap window set (so
// the ledger join runs) and no MaxPerRun. It reports rows/s and peak RSS.
// Run with -benchtime=1x: one iteration is the whole audience.
func BenchMaterialize(b *testing.B, s store.Store, snapshotID int64, segment string, n int) {
	ctx := context.Background()
	var total time.Duration
	ResetPeakRSS()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		// A new run each time (across -count too): a materialized run is
		// not written again, which would time nothing.
		benchRuns++
		iter := benchRuns
		run := "bench-mat-" + strconv.Itoa(iter)
		if _, err := s.RunCreate(ctx, &store.RunCreateParams{RunID: run, Campaign: "bench/c", CampaignUID: "bench-uid-" + strconv.Itoa(iter),
			Channel: "bench/ch-" + strconv.Itoa(iter), Segment: segment, SnapshotID: snapshotID, Shards: BenchShards}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		b.StartTimer()
		t, err := s.RunMaterialize(ctx, &store.RunMaterializeParams{RunID: run, CapSince: time.Unix(0, 0), Plan: BenchPlan})
		b.StopTimer()
		total += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if got := t.Groups[store.GroupTreatment]; got == nil || got.Total != int64(n) {
			b.Fatalf("materialized %+v, want %d treatment targets", got, n)
		}
	}
	ReportRows(b, total, n)
}

// ReportRows reports the wall time per iteration, rows/s and peak RSS of
// a benchmark that timed its iterations itself (total over b.N).
func ReportRows(b *testing.B, total time.Duration, n int) {
	b.Helper()
	el := total.Seconds() / float64(b.N)
	b.ReportMetric(el, "s/op-wall")
	b.ReportMetric(float64(n)/el, "rows/s")
	b.ReportMetric(float64(PeakRSS())/(1<<20), "peak-RSS-MiB")
}

// BenchMeasure times RunMeasure of an n-target run against a later
// snapshot of its source in which every tenth customer bought again on the
// reference day: each iteration materializes a new run of the audience
// (untimed), starts it, and measures it. It reports rows/s and peak RSS.
// Run with -benchtime=1x.
func BenchMeasure(b *testing.B, s store.Store, snapshotID int64, segment string, n int) {
	ctx := context.Background()
	ref := time.Date(2025, 6, 2, 9, 0, 0, 0, time.UTC)
	w, err := s.SnapshotWrite(ctx, &store.SnapshotWriteParams{Source: "bench/audience"})
	if err != nil {
		b.Fatal(err)
	}
	var c customer.Scored
	for i := 0; i < n; i++ {
		Customer(i, &c)
		if i%10 == 0 {
			c.Features.Transactions++
			c.Features.TotalSpend += 30
			c.Features.LastPurchase = ref.Truncate(24 * time.Hour)
		}
		if err := w.Add(&c); err != nil {
			b.Fatal(err)
		}
	}
	later, err := w.Commit()
	if err != nil {
		b.Fatal(err)
	}
	measure := func(bl *store.Baseline, c *customer.Scored) store.Measured {
		if int64(c.Features.Transactions) > bl.Transactions && !c.Features.LastPurchase.Before(bl.ReferenceAt.Truncate(24*time.Hour)) {
			return store.Measured{ConvertedAt: c.Features.LastPurchase, Revenue: c.Features.TotalSpend - bl.Spend, SetRevenue: true}
		}
		return store.Measured{}
	}
	var total time.Duration
	ResetPeakRSS()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		benchRuns++
		iter := strconv.Itoa(benchRuns)
		run := "bench-measure-" + iter
		if _, err := s.RunCreate(ctx, &store.RunCreateParams{RunID: run, Campaign: "bench/c", CampaignUID: "bench-uid-m" + iter,
			Channel: "bench/ch-m" + iter, Segment: segment, SnapshotID: snapshotID, Shards: BenchShards, ConversionWindow: 7 * 24 * time.Hour}); err != nil {
			b.Fatal(err)
		}
		if _, err := s.RunMaterialize(ctx, &store.RunMaterializeParams{RunID: run, Plan: BenchPlan}); err != nil {
			b.Fatal(err)
		}
		if _, err := s.RunSetPhase(ctx, &store.RunSetPhaseParams{RunID: run, To: store.PhaseMeasuring, ReferenceAt: ref}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		b.StartTimer()
		res, err := s.RunMeasure(ctx, &store.RunMeasureParams{RunID: run, SnapshotID: later.ID, Measure: measure})
		b.StopTimer()
		total += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if want := int64((n + 9) / 10); res.Measured != int64(n) || res.Converted != want {
			b.Fatalf("measured %+v, want %d converted of %d", res, want, n)
		}
	}
	ReportRows(b, total, n)
}

// BenchMembers is the segment size of the membership benchmarks.
const BenchMembers = 300_000

// BenchMembershipApply times moving an n-member segment on by 1% (n/100
// members exit, as many enter), on a new snapshot each iteration: Full
// sends the whole new membership, Incremental1pct only the change, against
// the version the previous apply left. Each sub-benchmark first applies
// its own segment in full (untimed).
func BenchMembershipApply(b *testing.B, s store.Store, n int) {
	b.Run("Full", func(b *testing.B) { benchApply(b, s, n, false) })
	b.Run("Incremental1pct", func(b *testing.B) { benchApply(b, s, n, true) })
}

// benchSegments numbers the membership benchmarks' segments within the
// process.
var benchSegments int

func benchApply(b *testing.B, s store.Store, n int, incremental bool) {
	ctx := context.Background()
	benchSegments++
	segment := "bench/members-" + strconv.Itoa(benchSegments)
	k := n / 100
	// Iteration i moves the membership from ids[i*k:][:n] to
	// ids[(i+1)*k:][:n].
	ids := make([]string, n+k*b.N)
	for i := range ids {
		ids[i] = string(appendPadded([]byte("m"), i, 8))
	}
	diff, err := s.MembershipApply(ctx, &store.MembershipApplyParams{Segment: segment, SnapshotID: 1, Members: store.MembersFromSlice(ids[:n])})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		p := &store.MembershipApplyParams{Segment: segment, SnapshotID: int64(i + 2)}
		from := i * k
		if incremental {
			p.Changes = &store.MembershipChanges{BaseVersion: diff.Version,
				Exited: store.MembersFromSlice(ids[from : from+k]), Entered: store.MembersFromSlice(ids[from+n : from+n+k])}
		} else {
			p.Members = store.MembersFromSlice(ids[from+k : from+k+n])
		}
		if diff, err = s.MembershipApply(ctx, p); err != nil {
			b.Fatal(err)
		}
		if diff.Entered != int64(k) || diff.Exited != int64(k) || diff.Size != int64(n) {
			b.Fatalf("apply %d = %+v, want %d entered and exited of %d", i, diff, k, n)
		}
	}
}
