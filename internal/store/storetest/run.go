package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/store"
)

func createRun(e *env, id, channel string, shards int32) *store.Run {
	e.t.Helper()
	r, err := e.s.RunCreate(e.ctx, &store.RunCreateParams{
		RunID: id, Campaign: "ns/winback", Channel: channel, Shards: shards, HoldoutPercent: 10,
		Settings: map[string]any{"subject": "We miss you, {{.Name}}", "variants": []string{"a", "b"}},
	})
	if err != nil {
		e.t.Fatalf("RunCreate(%s): %v", id, err)
	}
	return r
}

// treatment returns n pending treatment targets c00000.. in shard 0.
func treatment(from, to int, shard int32) []store.NewTarget {
	var ts []store.NewTarget
	for _, id := range ids("c", from, to) {
		ts = append(ts, store.NewTarget{CustomerID: id, Variant: "a", Shard: shard})
	}
	return ts
}

func insertTargets(e *env, run string, ts []store.NewTarget) int64 {
	e.t.Helper()
	n, err := e.s.TargetInsert(e.ctx, &store.TargetInsertParams{RunID: run, Targets: ts})
	if err != nil {
		e.t.Fatalf("TargetInsert: %v", err)
	}
	return n
}

func targetIDs(ts []*store.Target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.CustomerID
	}
	return out
}

func tally(e *env, run string) *store.RunTally {
	e.t.Helper()
	t, err := e.s.RunTally(e.ctx, run)
	if err != nil {
		e.t.Fatalf("RunTally: %v", err)
	}
	return t
}

func states(t *store.RunTally, g store.TargetGroup) map[store.TargetState]int64 {
	if t.Groups[g] == nil {
		return map[store.TargetState]int64{}
	}
	return t.Groups[g].ByState
}

func exerciseRun(ctx context.Context, t *testing.T, d *Driver) {
	t.Run("CreateIsIdempotentAndFrozen", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		scheduled := Epoch.Add(-time.Hour)
		r, err := e.s.RunCreate(ctx, &store.RunCreateParams{
			RunID: "uid-1", Campaign: "ns/winback", CampaignUID: "camp-uid", Channel: "ns/email", Segment: "ns/at-risk",
			SnapshotID: 42, ScheduledAt: scheduled, ConversionWindow: 14*24*time.Hour + 1500*time.Microsecond, DryRun: true,
			Shards: 3, HoldoutPercent: 10,
			Settings: map[string]any{"subject": "We miss you, {{.Name}}", "variants": []string{"a", "b"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		want := &store.Run{ID: "uid-1", Campaign: "ns/winback", CampaignUID: "camp-uid", Channel: "ns/email", Segment: "ns/at-risk",
			SnapshotID: 42, ScheduledAt: scheduled, ConversionWindow: 14*24*time.Hour + 1500*time.Microsecond, DryRun: true,
			Phase: store.PhasePending, HoldoutPercent: 10, Shards: 3, CreatedAt: Epoch}
		var settings map[string]any
		if err := json.Unmarshal(r.Settings, &settings); err != nil || settings["subject"] != "We miss you, {{.Name}}" {
			t.Errorf("settings = %s (%v)", r.Settings, err)
		}
		r.Settings = nil
		if !reflect.DeepEqual(r, want) {
			t.Errorf("RunCreate = %+v, want %+v", r, want)
		}
		if got := r.WindowEnd(); !got.IsZero() {
			t.Errorf("WindowEnd without a reference time = %v", got)
		}
		e.clock.Advance(time.Minute)
		again, err := e.s.RunCreate(ctx, &store.RunCreateParams{RunID: "uid-1", Campaign: "ns/other", Channel: "ns/sms", Shards: 9})
		if err != nil {
			t.Fatal(err)
		}
		again.Settings = nil
		if !reflect.DeepEqual(again, want) {
			t.Errorf("second RunCreate = %+v, want the frozen %+v", again, want)
		}
		got, err := e.s.RunGet(ctx, "uid-1")
		if err != nil {
			t.Fatal(err)
		}
		got.Settings = nil
		if !reflect.DeepEqual(got, want) {
			t.Errorf("RunGet = %+v, want %+v", got, want)
		}
		// Zero values round-trip as zero.
		bare := createRun(e, "bare", "ns/email", 1)
		if !bare.ScheduledAt.IsZero() || !bare.ReferenceAt.IsZero() || bare.ConversionWindow != 0 || bare.CampaignUID != "" || bare.Phase != store.PhasePending {
			t.Errorf("bare run = %+v", bare)
		}
		if _, err := e.s.RunGet(ctx, "uid-unknown"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RunGet(unknown) = %v, want ErrNotFound", err)
		}
		if _, err := e.s.RunTally(ctx, "uid-unknown"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RunTally(unknown) = %v, want ErrNotFound", err)
		}
		for _, p := range []*store.RunCreateParams{
			{Campaign: "c", Channel: "ch", Shards: 1},
			{RunID: "x", Channel: "ch", Shards: 1},
			{RunID: "x", Campaign: "c", Channel: "ch", Shards: 0},
			{RunID: "x", Campaign: "c", Channel: "ch", Shards: 1, HoldoutPercent: 101},
			{RunID: "x", Campaign: "c", Channel: "ch", Shards: 1, ConversionWindow: -time.Hour},
			{RunID: "x", Campaign: "c", Channel: "ch", Shards: 1, SnapshotID: -1},
			{RunID: "x", Campaign: "c", Channel: "ch", Shards: 1, Segment: "bad\x00key"},
		} {
			if _, err := e.s.RunCreate(ctx, p); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("RunCreate(%+v) = %v, want ErrInvalid", p, err)
			}
		}
	})

	t.Run("SetPhase", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		createRun(e, "r", "ns/email", 1)
		set := func(p store.RunSetPhaseParams) bool {
			t.Helper()
			p.RunID = "r"
			ok, err := e.s.RunSetPhase(ctx, &p)
			if err != nil {
				t.Fatalf("RunSetPhase(%+v): %v", p, err)
			}
			return ok
		}
		phase := func() *store.Run {
			t.Helper()
			r, err := e.s.RunGet(ctx, "r")
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		if set(store.RunSetPhaseParams{From: []store.RunPhase{store.PhaseMaterialized}, To: store.PhaseSending}) {
			t.Errorf("moved from a phase the run is not in")
		}
		if got := phase().Phase; got != store.PhasePending {
			t.Errorf("phase = %s after a failed compare-and-set", got)
		}
		if !set(store.RunSetPhaseParams{From: []store.RunPhase{store.PhaseSending, store.PhasePending}, To: store.PhaseMaterialized}) {
			t.Errorf("did not move from one of From")
		}
		ref := e.clock.Advance(time.Hour)
		if !set(store.RunSetPhaseParams{From: []store.RunPhase{store.PhaseMaterialized}, To: store.PhaseSending, ReferenceAt: ref}) {
			t.Errorf("Materialized → Sending refused")
		}
		// The reference time is stored once.
		if !set(store.RunSetPhaseParams{To: store.PhaseMeasuring, ReferenceAt: ref.Add(time.Hour)}) {
			t.Errorf("a move from any phase was refused")
		}
		r := phase()
		if r.Phase != store.PhaseMeasuring || !r.ReferenceAt.Equal(ref) || !r.WindowEnd().Equal(ref.Add(r.ConversionWindow)) {
			t.Errorf("run = phase %s, reference %v; want Measuring, %v", r.Phase, r.ReferenceAt, ref)
		}
		if ok, err := e.s.RunSetPhase(ctx, &store.RunSetPhaseParams{RunID: "nope", To: store.PhaseFailed}); ok || !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RunSetPhase(unknown) = %v, %v; want ErrNotFound", ok, err)
		}
		for _, p := range []*store.RunSetPhaseParams{nil, {RunID: "r"}, {RunID: "r", To: "Done"}, {RunID: "r", To: store.PhaseFailed, From: []store.RunPhase{"Nope"}}} {
			if _, err := e.s.RunSetPhase(ctx, p); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("RunSetPhase(%+v) = %v, want ErrInvalid", p, err)
			}
		}
	})

	t.Run("Delete", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		createRun(e, "r1", "ns/email", 1)
		createRun(e, "r2", "ns/email", 1)
		insertTargets(e, "r1", treatment(0, 50, 0))
		insertTargets(e, "r2", treatment(0, 50, 0))
		if err := e.s.RunDelete(ctx, "r1"); err != nil {
			t.Fatal(err)
		}
		if err := e.s.RunDelete(ctx, "r1"); err != nil {
			t.Errorf("second delete: %v", err)
		}
		if _, err := e.s.RunGet(ctx, "r1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RunGet after delete = %v", err)
		}
		n := 0
		if err := e.s.TargetScan(ctx, &store.TargetScanParams{RunID: "r1"}, func(*store.Target) error { n++; return nil }); err != nil || n != 0 {
			t.Errorf("targets after delete: %d, %v", n, err)
		}
		if got := states(tally(e, "r2"), store.GroupTreatment)[store.StatePending]; got != 50 {
			t.Errorf("other run has %d pending targets, want 50", got)
		}
	})
}

func exerciseTarget(ctx context.Context, t *testing.T, d *Driver) {
	t.Run("InsertIsIdempotent", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		createRun(e, "r", "ns/email", 2)
		ts := treatment(0, 900, 0)
		for _, id := range ids("h", 0, 100) {
			ts = append(ts, store.NewTarget{CustomerID: id, Group: store.GroupHoldout, Shard: 1})
		}
		ts = append(ts, store.NewTarget{CustomerID: "capped", State: store.StateSkipped, Reason: store.ReasonCapped, Shard: 1})
		if n := insertTargets(e, "r", ts); n != 1001 {
			t.Fatalf("inserted %d, want 1001", n)
		}
		// Send some, then insert again with overlap: existing targets keep
		// their state, only new ones are added.
		claimed, err := e.s.TargetClaim(ctx, &store.TargetClaimParams{RunID: "r", Shard: 0, Limit: 10})
		if err != nil || len(claimed) != 10 {
			t.Fatalf("claim: %d, %v", len(claimed), err)
		}
		if n, err := e.s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "r", CustomerIDs: targetIDs(claimed)}); err != nil || n != 10 {
			t.Fatalf("sent: %d, %v", n, err)
		}
		if n := insertTargets(e, "r", treatment(0, 1200, 0)); n != 300 {
			t.Errorf("second insert added %d, want 300", n)
		}
		tl := tally(e, "r")
		if got, want := states(tl, store.GroupTreatment), map[store.TargetState]int64{store.StatePending: 1190, store.StateSent: 10, store.StateSkipped: 1}; !reflect.DeepEqual(got, want) {
			t.Errorf("treatment states = %v, want %v", got, want)
		}
		if got := tl.Groups[store.GroupTreatment].SkippedByReason; !reflect.DeepEqual(got, map[string]int64{store.ReasonCapped: 1}) {
			t.Errorf("treatment skipped = %v", got)
		}
		h := tl.Groups[store.GroupHoldout]
		if h == nil || h.Total != 100 || h.ByState[store.StateSkipped] != 100 || h.SkippedByReason[store.ReasonHoldout] != 100 {
			t.Errorf("holdout tally = %+v", h)
		}
		// Holdout targets are never claimed.
		if got, err := e.s.TargetClaim(ctx, &store.TargetClaimParams{RunID: "r", Shard: 1, Limit: 1000}); err != nil || len(got) != 0 {
			t.Errorf("claim of the holdout shard: %d, %v", len(got), err)
		}

		for _, tc := range []struct {
			name string
			ts   []store.NewTarget
			want error
		}{
			{"shard out of range", []store.NewTarget{{CustomerID: "x", Shard: 2}}, store.ErrInvalid},
			{"negative shard", []store.NewTarget{{CustomerID: "x", Shard: -1}}, store.ErrInvalid},
			{"pending holdout", []store.NewTarget{{CustomerID: "x", Group: store.GroupHoldout, State: store.StatePending}}, store.ErrInvalid},
			{"skipped without reason", []store.NewTarget{{CustomerID: "x", State: store.StateSkipped}}, store.ErrInvalid},
			{"inserted as sent", []store.NewTarget{{CustomerID: "x", State: store.StateSent}}, store.ErrInvalid},
			{"excluded without reason", []store.NewTarget{{CustomerID: "x", Group: store.GroupExcluded}}, store.ErrInvalid},
			{"pending excluded", []store.NewTarget{{CustomerID: "x", Group: store.GroupExcluded, State: store.StatePending, Reason: "capped"}}, store.ErrInvalid},
			{"unknown group", []store.NewTarget{{CustomerID: "x", Group: "control"}}, store.ErrInvalid},
			{"NUL in address", []store.NewTarget{{CustomerID: "x", Data: store.TargetData{Address: "a\x00b"}}}, store.ErrInvalid},
			{"fields not JSON", []store.NewTarget{{CustomerID: "x", Data: store.TargetData{Fields: map[string]any{"f": func() {}}}}}, store.ErrInvalid},
			{"empty id", []store.NewTarget{{}}, store.ErrInvalid},
		} {
			if _, err := e.s.TargetInsert(ctx, &store.TargetInsertParams{RunID: "r", Targets: tc.ts}); !errors.Is(err, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			}
		}
		if _, err := e.s.TargetInsert(ctx, &store.TargetInsertParams{RunID: "nope", Targets: treatment(0, 1, 0)}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("insert into an unknown run: %v, want ErrNotFound", err)
		}
	})

	t.Run("InsertKeepsData", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		createRun(e, "r", "ns/email", 2)
		last := time.Date(2024, 12, 24, 18, 30, 0, 123000, time.UTC)
		notBefore := Epoch.Add(90 * time.Minute)
		data := store.TargetData{Address: "zoë@example.com", Locale: "de-DE", TimeZone: "Europe/Berlin",
			Fields:           map[string]any{"name": "Zoë", "points": 120.5, "vip": true, "tags": []any{"a", "b"}},
			BaseTransactions: 17, BaseSpend: 1234.56, BaseLastPurchase: last, ExpectedValue: 99.25}
		insertTargets(e, "r", []store.NewTarget{
			{CustomerID: "full", Variant: "b", Shard: 1, NotBefore: notBefore, Data: data},
			{CustomerID: "bare"},
			{CustomerID: "out", Group: store.GroupExcluded, Reason: store.ReasonUnreachable},
		})
		got := map[string]store.Target{}
		e.s.TargetScan(ctx, &store.TargetScanParams{RunID: "r"}, func(tg *store.Target) error { got[tg.CustomerID] = *tg; return nil })
		want := store.Target{RunID: "r", CustomerID: "full", Group: store.GroupTreatment, Variant: "b", Shard: 1, State: store.StatePending,
			NotBefore: notBefore, Data: data}
		if !reflect.DeepEqual(got["full"], want) {
			t.Errorf("target = %+v, want %+v", got["full"], want)
		}
		if want := (store.Target{RunID: "r", CustomerID: "bare", Group: store.GroupTreatment, State: store.StatePending}); !reflect.DeepEqual(got["bare"], want) {
			t.Errorf("bare target = %+v, want %+v", got["bare"], want)
		}
		if g := got["out"]; g.Group != store.GroupExcluded || g.State != store.StateSkipped || g.Reason != store.ReasonUnreachable {
			t.Errorf("excluded target = %+v", g)
		}
		// Claims return the data too.
		e.clock.Advance(2 * time.Hour)
		claimed, err := e.s.TargetClaim(ctx, &store.TargetClaimParams{RunID: "r", Shard: 1, Limit: 5, Token: "w"})
		if err != nil || len(claimed) != 1 || !reflect.DeepEqual(claimed[0].Data, data) {
			t.Errorf("claim = %+v, %v", claimed, err)
		}
	})

	t.Run("StateMachine", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		createRun(e, "r", "ns/email", 1)
		insertTargets(e, "r", treatment(0, 20, 0))
		claim := func(limit int) []*store.Target {
			t.Helper()
			got, err := e.s.TargetClaim(ctx, &store.TargetClaimParams{RunID: "r", Shard: 0, Limit: limit})
			if err != nil {
				t.Fatalf("TargetClaim: %v", err)
			}
			return got
		}
		t0 := e.clock.Now()
		first := claim(10)
		if len(first) != 10 {
			t.Fatalf("claimed %d, want 10", len(first))
		}
		for _, tg := range first {
			if tg.State != store.StateClaimed || tg.Attempts != 1 || !tg.ClaimedAt.Equal(t0) || tg.Group != store.GroupTreatment || tg.Variant != "a" || tg.RunID != "r" {
				t.Fatalf("claimed target = %+v", tg)
			}
		}
		id := targetIDs(first)
		e.clock.Advance(time.Second)
		set := func(what string, n int64, err error, want int64) {
			t.Helper()
			if err != nil || n != want {
				t.Errorf("%s: %d transitioned, %v; want %d", what, n, err, want)
			}
		}
		n, err := e.s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "r", CustomerIDs: id[:5]})
		set("sent", n, err, 5)
		n, err = e.s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "r", CustomerIDs: id[:5]})
		set("sent again", n, err, 0)
		n, err = e.s.TargetSetFailed(ctx, &store.TargetSetFailedParams{RunID: "r", Failures: []store.TargetFailure{
			{CustomerID: id[5], Error: "HTTP 503", Retryable: true},
			{CustomerID: id[6], Error: "timeout", Retryable: true},
			{CustomerID: id[7], Error: "HTTP 400: bad address"},
			{CustomerID: id[0], Error: "already sent"}, // no transition
		}})
		set("failed", n, err, 3)
		n, err = e.s.TargetSetSkipped(ctx, &store.TargetSetSkippedParams{RunID: "r", Skips: []store.TargetSkip{
			{CustomerID: id[8], Reason: store.ReasonQuietHours}, {CustomerID: id[7], Reason: "x"},
		}})
		set("skipped", n, err, 1)
		n, err = e.s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "r", CustomerIDs: []string{id[7], id[8], "unknown"}})
		set("sent after failed/skipped", n, err, 0)
		// A pending target can be finished without a claim (dry run).
		n, err = e.s.TargetSetSkipped(ctx, &store.TargetSetSkippedParams{RunID: "r", Skips: []store.TargetSkip{{CustomerID: "c00019", Reason: store.ReasonSuppressed}}})
		set("skip pending", n, err, 1)

		got := map[string]store.Target{}
		if err := e.s.TargetScan(ctx, &store.TargetScanParams{RunID: "r"}, func(tg *store.Target) error { got[tg.CustomerID] = *tg; return nil }); err != nil {
			t.Fatal(err)
		}
		t1 := t0.Add(time.Second)
		if g := got[id[0]]; g.State != store.StateSent || !g.SentAt.Equal(t1) || g.Attempts != 1 {
			t.Errorf("sent target = %+v", g)
		}
		if g := got[id[5]]; g.State != store.StatePending || g.LastError != "HTTP 503" || !g.ClaimedAt.IsZero() {
			t.Errorf("retryable failure = %+v", g)
		}
		if g := got[id[7]]; g.State != store.StateFailed || g.LastError != "HTTP 400: bad address" {
			t.Errorf("permanent failure = %+v", g)
		}
		if g := got[id[8]]; g.State != store.StateSkipped || g.Reason != store.ReasonQuietHours {
			t.Errorf("skipped = %+v", g)
		}
		if g := got[id[9]]; g.State != store.StateClaimed {
			t.Errorf("unfinished claim = %+v", g)
		}
		// Next claims: the retried ones come back with a second attempt;
		// the still-claimed one is not handed out again.
		next := claim(100)
		attempts := map[string]int32{}
		for _, tg := range next {
			attempts[tg.CustomerID] = tg.Attempts
		}
		if len(next) != 11 || attempts[id[5]] != 2 || attempts[id[6]] != 2 || attempts["c00010"] != 1 {
			t.Errorf("second claim = %v", attempts)
		}
		if _, ok := attempts[id[9]]; ok {
			t.Errorf("a claimed target was claimed again")
		}
		if got := claim(100); len(got) != 0 {
			t.Errorf("claim with nothing pending = %d targets", len(got))
		}
		var sentOnly []string
		if err := e.s.TargetScan(ctx, &store.TargetScanParams{RunID: "r", State: store.StateSent}, func(tg *store.Target) error {
			sentOnly = append(sentOnly, tg.CustomerID)
			return nil
		}); err != nil || !sort.StringsAreSorted(sentOnly) || len(sentOnly) != 5 {
			t.Errorf("scan of sent targets = %v, %v", sentOnly, err)
		}
		if _, err := e.s.TargetClaim(ctx, &store.TargetClaimParams{RunID: "r", Limit: 0}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("claim limit 0 = %v, want ErrInvalid", err)
		}
	})

	t.Run("ConcurrentRunnersSameShard", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		createRun(e, "r", "ns/email", 2)
		const total = 3000
		insertTargets(e, "r", treatment(0, total, 0))
		insertTargets(e, "r", treatment(total, total+100, 1)) // another shard, untouched

		var mu sync.Mutex
		claims := map[string]int{}
		var transitions [2]int64
		errs := make(chan error, 2)
		var wg sync.WaitGroup
		for r := 0; r < 2; r++ {
			s := e.open() // each runner is its own process: its own handle
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					batch, err := s.TargetClaim(ctx, &store.TargetClaimParams{RunID: "r", Shard: 0, Limit: 37})
					if err != nil {
						errs <- fmt.Errorf("runner %d claim: %w", r, err)
						return
					}
					if len(batch) == 0 {
						return
					}
					mu.Lock()
					for _, tg := range batch {
						claims[tg.CustomerID]++
					}
					mu.Unlock()
					n, err := s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "r", CustomerIDs: targetIDs(batch)})
					if err != nil {
						errs <- fmt.Errorf("runner %d record: %w", r, err)
						return
					}
					transitions[r] += n
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if len(claims) != total {
			t.Errorf("%d distinct targets claimed, want %d", len(claims), total)
		}
		for id, n := range claims {
			if n != 1 {
				t.Errorf("target %s claimed %d times", id, n)
			}
		}
		if transitions[0]+transitions[1] != total {
			t.Errorf("%d + %d targets recorded sent, want %d", transitions[0], transitions[1], total)
		}
		if transitions[0] == 0 || transitions[1] == 0 {
			t.Logf("note: one runner did all the work (%d / %d)", transitions[0], transitions[1])
		}
		got := states(tally(e, "r"), store.GroupTreatment)
		if want := map[store.TargetState]int64{store.StateSent: total, store.StatePending: 100}; !reflect.DeepEqual(got, want) {
			t.Errorf("tally = %v, want %v", got, want)
		}
	})

	t.Run("StaleClaimReclaim", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		createRun(e, "r", "ns/email", 1)
		insertTargets(e, "r", treatment(0, 30, 0))
		dead := e.open() // a runner that claims and dies
		t0 := e.clock.Now()
		lost, err := dead.TargetClaim(ctx, &store.TargetClaimParams{RunID: "r", Shard: 0, Limit: 10})
		if err != nil || len(lost) != 10 {
			t.Fatalf("claim: %d, %v", len(lost), err)
		}
		e.clock.Advance(10 * time.Minute)
		// A cutoff before the claims takes nothing over.
		fresh, err := e.s.TargetClaim(ctx, &store.TargetClaimParams{RunID: "r", Shard: 0, Limit: 10, StaleBefore: t0})
		if err != nil || len(fresh) != 10 {
			t.Fatalf("claim with an old cutoff: %d, %v", len(fresh), err)
		}
		for _, tg := range fresh {
			if tg.Attempts != 1 {
				t.Fatalf("claim with an old cutoff took over %s", tg.CustomerID)
			}
		}
		// The restarted runner's cutoff is after the dead runner's claims.
		e.clock.Advance(time.Minute)
		cutoff := t0.Add(5 * time.Minute)
		retaken, err := e.s.TargetClaim(ctx, &store.TargetClaimParams{RunID: "r", Shard: 0, Limit: 15, StaleBefore: cutoff})
		if err != nil {
			t.Fatal(err)
		}
		byID := map[string]*store.Target{}
		for _, tg := range retaken {
			byID[tg.CustomerID] = tg
		}
		for _, tg := range lost {
			g := byID[tg.CustomerID]
			if g == nil || g.Attempts != 2 || !g.ClaimedAt.Equal(e.clock.Now()) {
				t.Errorf("stale target %s not taken over: %+v", tg.CustomerID, g)
			}
		}
		if len(retaken) != 15 {
			t.Errorf("claimed %d, want 10 stale + 5 pending", len(retaken))
		}
		// The dead runner wakes and records; the new one records too: each
		// target is recorded sent once.
		n1, err1 := dead.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "r", CustomerIDs: targetIDs(lost)})
		n2, err2 := e.s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "r", CustomerIDs: targetIDs(retaken)})
		if err1 != nil || err2 != nil || n1+n2 != 15 {
			t.Errorf("recorded %d + %d (%v, %v), want 15 in all", n1, n2, err1, err2)
		}
	})

	t.Run("Conversions", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		createRun(e, "r", "ns/email", 1)
		ts := treatment(0, 4, 0)
		ts = append(ts,
			store.NewTarget{CustomerID: "h1", Group: store.GroupHoldout}, store.NewTarget{CustomerID: "h2", Group: store.GroupHoldout},
			store.NewTarget{CustomerID: "x1", Group: store.GroupExcluded, Reason: store.ReasonCapped})
		insertTargets(e, "r", ts)
		claimed, _ := e.s.TargetClaim(ctx, &store.TargetClaimParams{RunID: "r", Limit: 2})
		if len(claimed) != 2 {
			t.Fatalf("claimed %d", len(claimed))
		}
		// Before sending starts there is no reference time: nothing converts.
		if n, err := e.s.ConversionRecord(ctx, &store.ConversionRecordParams{RunID: "r", Conversions: []store.Conversion{{CustomerID: "c00000", At: e.clock.Now()}}}); err != nil || n != 0 {
			t.Fatalf("ConversionRecord without a reference time = %d, %v; want 0", n, err)
		}
		ref := e.clock.Advance(time.Hour)
		if ok, err := e.s.RunSetPhase(ctx, &store.RunSetPhaseParams{RunID: "r", To: store.PhaseSending, ReferenceAt: ref}); err != nil || !ok {
			t.Fatal(ok, err)
		}
		e.clock.Advance(time.Hour)
		e.s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "r", CustomerIDs: []string{"c00000", "c00001"}})
		before, after := ref.Add(-time.Minute), ref.Add(time.Minute) // after is before c00000 was sent
		n, err := e.s.ConversionRecord(ctx, &store.ConversionRecordParams{RunID: "r", Conversions: []store.Conversion{
			{CustomerID: "c00000", At: after.Add(time.Hour)},
			{CustomerID: "c00000", At: after},  // the earliest eligible one wins, sent or not
			{CustomerID: "c00001", At: before}, // before the reference time
			{CustomerID: "c00003", At: after},  // never sent: counts (intent to treat)
			{CustomerID: "h1", At: ref},        // at the reference time: counts
			{CustomerID: "h2", At: before},
			{CustomerID: "x1", At: after}, // excluded: never converts
			{CustomerID: "stranger", At: after},
		}})
		if err != nil || n != 3 {
			t.Fatalf("ConversionRecord = %d, %v; want 3", n, err)
		}
		n, err = e.s.ConversionRecord(ctx, &store.ConversionRecordParams{RunID: "r", Conversions: []store.Conversion{
			{CustomerID: "c00000", At: ref}, // already converted: kept
			{CustomerID: "c00001", At: after},
		}})
		if err != nil || n != 1 {
			t.Fatalf("second ConversionRecord = %d, %v; want 1", n, err)
		}
		got := map[string]time.Time{}
		e.s.TargetScan(ctx, &store.TargetScanParams{RunID: "r"}, func(tg *store.Target) error { got[tg.CustomerID] = tg.ConvertedAt; return nil })
		want := map[string]time.Time{"c00000": after, "c00001": after, "c00002": {}, "c00003": after, "h1": ref, "h2": {}, "x1": {}}
		for id, w := range want {
			if !got[id].Equal(w) {
				t.Errorf("%s converted at %v, want %v", id, got[id], w)
			}
		}
		tl := tally(e, "r")
		if tl.Groups[store.GroupTreatment].Converted != 3 || tl.Groups[store.GroupHoldout].Converted != 1 || tl.Groups[store.GroupExcluded].Converted != 0 {
			t.Errorf("converted per group: treatment %d, holdout %d; want 3, 1", tl.Groups[store.GroupTreatment].Converted, tl.Groups[store.GroupHoldout].Converted)
		}
		if g := tl.Groups[store.GroupExcluded]; g == nil || g.SkippedByReason[store.ReasonCapped] != 1 {
			t.Errorf("excluded tally = %+v", g)
		}
	})
}
