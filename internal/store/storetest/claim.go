package storetest

import (
	"context"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/store"
)

func claimIDs(e *env, s store.Store, p store.TargetClaimParams) []string {
	e.t.Helper()
	got, err := s.TargetClaim(e.ctx, &p)
	if err != nil {
		e.t.Fatalf("TargetClaim: %v", err)
	}
	ids := targetIDs(got)
	sort.Strings(ids)
	return ids
}

func exerciseClaim(ctx context.Context, t *testing.T, d *Driver) {
	// A runner whose claims were taken over cannot record them: only the
	// claim token's holder records.
	t.Run("TokenAfterTakeover", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		createRun(e, "r", "ns/email", 1)
		insertTargets(e, "r", treatment(0, 20, 0))
		slow := e.open()
		mine, err := slow.TargetClaim(ctx, &store.TargetClaimParams{RunID: "r", Limit: 10, Token: "runner-a"})
		if err != nil || len(mine) != 10 {
			t.Fatalf("claim: %d, %v", len(mine), err)
		}
		for _, tg := range mine {
			if tg.ClaimedBy != "runner-a" || tg.State != store.StateClaimed {
				t.Fatalf("claimed target = %+v", tg)
			}
		}
		e.clock.Advance(10 * time.Minute)
		cutoff := e.clock.Now().Add(-5 * time.Minute)
		taken, err := e.s.TargetClaim(ctx, &store.TargetClaimParams{RunID: "r", Limit: 15, StaleBefore: cutoff, Token: "runner-b"})
		if err != nil || len(taken) != 15 {
			t.Fatalf("takeover: %d, %v", len(taken), err)
		}
		for _, tg := range taken {
			if tg.ClaimedBy != "runner-b" {
				t.Errorf("taken over target = %+v", tg)
			}
		}
		ids := targetIDs(mine)
		if n, err := slow.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "r", CustomerIDs: ids, Token: "runner-a"}); err != nil || n != 0 {
			t.Errorf("the old holder recorded %d sent (%v), want 0", n, err)
		}
		if n, err := slow.TargetSetFailed(ctx, &store.TargetSetFailedParams{RunID: "r", Token: "runner-a", Failures: []store.TargetFailure{{CustomerID: ids[0], Error: "x"}}}); err != nil || n != 0 {
			t.Errorf("the old holder recorded %d failed (%v), want 0", n, err)
		}
		if n, err := slow.TargetSetSkipped(ctx, &store.TargetSetSkippedParams{RunID: "r", Token: "runner-a", Skips: []store.TargetSkip{{CustomerID: ids[0], Reason: "x"}}}); err != nil || n != 0 {
			t.Errorf("the old holder recorded %d skipped (%v), want 0", n, err)
		}
		// A token records only claimed targets: not pending ones.
		if n, err := e.s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "r", CustomerIDs: treatmentIDs(15, 20), Token: "runner-b"}); err != nil || n != 0 {
			t.Errorf("recorded %d pending targets with a token (%v), want 0", n, err)
		}
		if n, err := e.s.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: "r", CustomerIDs: targetIDs(taken), Token: "runner-b"}); err != nil || n != 15 {
			t.Errorf("the new holder recorded %d (%v), want 15", n, err)
		}
	})

	t.Run("NotBefore", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		createRun(e, "r", "ns/email", 1)
		t0 := e.clock.Now()
		ts := treatment(0, 10, 0)
		for i := 5; i < 10; i++ {
			ts[i].NotBefore = t0.Add(time.Hour)
			if i >= 8 {
				ts[i].NotBefore = t0.Add(2 * time.Hour)
			}
		}
		insertTargets(e, "r", ts)
		claim := func() []string { return claimIDs(e, e.s, store.TargetClaimParams{RunID: "r", Limit: 100, Token: "w"}) }
		if got, want := claim(), treatmentIDs(0, 5); !equalStrings(got, want) {
			t.Errorf("claim at t0 = %v, want %v", got, want)
		}
		e.clock.Advance(time.Hour)
		if got, want := claim(), treatmentIDs(5, 8); !equalStrings(got, want) {
			t.Errorf("claim at t0+1h = %v, want %v", got, want)
		}
		if got := claim(); len(got) != 0 {
			t.Errorf("claim again at t0+1h = %v", got)
		}
		e.clock.Advance(time.Hour)
		if got, want := claim(), treatmentIDs(8, 10); !equalStrings(got, want) {
			t.Errorf("claim at t0+2h = %v, want %v", got, want)
		}
	})

	// TargetWaiting: what a runner whose claim found nothing waits for.
	t.Run("Waiting", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		createRun(e, "r", "ns/email", 2)
		t0 := e.clock.Now()
		ts := treatment(0, 6, 0)
		for i := 2; i < 6; i++ {
			ts[i].NotBefore = t0.Add(time.Duration(i) * time.Hour)
		}
		ts = append(ts, treatment(6, 9, 1)...) // another shard: not counted
		insertTargets(e, "r", ts)
		waiting := func(token string, before time.Time) *store.TargetWaiting {
			t.Helper()
			w, err := e.s.TargetWaiting(ctx, &store.TargetWaitingParams{RunID: "r", Shard: 0, Token: token, ClaimedBefore: before})
			if err != nil {
				t.Fatalf("TargetWaiting: %v", err)
			}
			return w
		}
		// Two due now: the earliest not-before is "now" (zero).
		if w := waiting("me", time.Time{}); w.Pending != 6 || !w.EarliestNotBefore.IsZero() || w.Claimed != 0 || !w.EarliestClaim.IsZero() {
			t.Errorf("before any claim: %+v", w)
		}
		// A dead runner claims the two due; then only deferred ones are pending.
		claimAll(e, "r", "dead")
		claimedAt := e.clock.Now()
		if w := waiting("me", time.Time{}); w.Pending != 4 || !w.EarliestNotBefore.Equal(t0.Add(2*time.Hour)) || w.Claimed != 0 {
			t.Errorf("after the claim, no cut-off: %+v", w)
		}
		e.clock.Advance(time.Minute)
		if w := waiting("me", e.clock.Now()); w.Claimed != 2 || !w.EarliestClaim.Equal(claimedAt) {
			t.Errorf("claims before the cut-off: %+v, want 2 at %v", w, claimedAt)
		}
		// The claimer's own claims, and claims after the cut-off, are not counted.
		if w := waiting("dead", e.clock.Now()); w.Claimed != 0 {
			t.Errorf("own claims counted: %+v", w)
		}
		if w := waiting("me", claimedAt); w.Claimed != 0 {
			t.Errorf("claims at the cut-off counted: %+v", w)
		}
		if _, err := e.s.TargetWaiting(ctx, &store.TargetWaitingParams{RunID: ""}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("empty run id: %v, want ErrInvalid", err)
		}
	})

	t.Run("RetryableFailureWaits", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		createRun(e, "r", "ns/email", 1)
		insertTargets(e, "r", treatment(0, 3, 0))
		claimAll(e, "r", "w")
		ids := treatmentIDs(0, 3)
		retryAt := e.clock.Now().Add(10 * time.Minute)
		n, err := e.s.TargetSetFailed(ctx, &store.TargetSetFailedParams{RunID: "r", Token: "w", Failures: []store.TargetFailure{
			{CustomerID: ids[0], Error: "HTTP 429", Retryable: true, NotBefore: retryAt},
			{CustomerID: ids[1], Error: "HTTP 503", Retryable: true},
			{CustomerID: ids[2], Error: "HTTP 400", NotBefore: retryAt}, // not retryable: NotBefore ignored
		}})
		if err != nil || n != 3 {
			t.Fatalf("TargetSetFailed = %d, %v", n, err)
		}
		got := map[string]store.Target{}
		e.s.TargetScan(ctx, &store.TargetScanParams{RunID: "r"}, func(tg *store.Target) error { got[tg.CustomerID] = *tg; return nil })
		if g := got[ids[0]]; g.State != store.StatePending || !g.NotBefore.Equal(retryAt) || g.ClaimedBy != "" || !g.ClaimedAt.IsZero() || g.LastError != "HTTP 429" {
			t.Errorf("deferred retry = %+v", g)
		}
		if g := got[ids[2]]; g.State != store.StateFailed || !g.NotBefore.IsZero() {
			t.Errorf("permanent failure = %+v", g)
		}
		if got := claimIDs(e, e.s, store.TargetClaimParams{RunID: "r", Limit: 10}); !equalStrings(got, ids[1:2]) {
			t.Errorf("claim before the retry time = %v, want %v", got, ids[1:2])
		}
		e.clock.Advance(10 * time.Minute)
		again, err := e.s.TargetClaim(ctx, &store.TargetClaimParams{RunID: "r", Limit: 10, Token: "w2"})
		if err != nil || len(again) != 1 || again[0].CustomerID != ids[0] || again[0].Attempts != 2 || again[0].ClaimedBy != "w2" {
			t.Errorf("claim at the retry time = %+v, %v", again, err)
		}
	})

	// Without Options.Clock the store's time is the database's: claims and
	// Now read it.
	t.Run("DatabaseClock", func(t *testing.T) {
		t.Parallel()
		e := newEnv(ctx, t, d)
		if now, err := e.s.Now(ctx); err != nil || !now.Equal(Epoch) {
			t.Errorf("Now with a clock = %v, %v; want %v", now, err, Epoch)
		}
		s, err := d.Open(ctx, e.url, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		near := func(what string, got time.Time) {
			t.Helper()
			if d := time.Since(got); d < -time.Minute || d > time.Minute || got.Location() != time.UTC {
				t.Errorf("%s = %v, want about %v in UTC", what, got, time.Now())
			}
		}
		now, err := s.Now(ctx)
		if err != nil {
			t.Fatal(err)
		}
		near("Now", now)
		if _, err := s.RunCreate(ctx, &store.RunCreateParams{RunID: "r", Campaign: "ns/c", Channel: "ns/ch", Shards: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.TargetInsert(ctx, &store.TargetInsertParams{RunID: "r", Targets: treatment(0, 4, 0)}); err != nil {
			t.Fatal(err)
		}
		got, err := s.TargetClaim(ctx, &store.TargetClaimParams{RunID: "r", Limit: 2, Token: "a"})
		if err != nil || len(got) != 2 {
			t.Fatalf("claim: %d, %v", len(got), err)
		}
		near("ClaimedAt", got[0].ClaimedAt)
		// A cut-off taken from Now after the claims takes them over.
		time.Sleep(10 * time.Millisecond)
		cutoff, err := s.Now(ctx)
		if err != nil {
			t.Fatal(err)
		}
		taken, err := s.TargetClaim(ctx, &store.TargetClaimParams{RunID: "r", Limit: 2, StaleBefore: cutoff, Token: "b"})
		if err != nil || len(taken) != 2 || taken[0].Attempts != 2 {
			t.Errorf("takeover with a database cut-off = %+v, %v", taken, err)
		}
	})
}

func treatmentIDs(from, to int) []string { return ids("c", from, to) }

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
