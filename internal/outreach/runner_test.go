package outreach

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/retention-dev/retention-operator/internal/campaign"
	"github.com/retention-dev/retention-operator/internal/outreach/channel"
	"github.com/retention-dev/retention-operator/internal/store"
	_ "github.com/retention-dev/retention-operator/internal/store/sqlite"
)

// scriptSender is a channel.Sender of our own that answers from a
// script, to reach the runner's error paths (retries, failures, a stop
// mid-batch). The real channels are tested against real receivers.
type scriptSender struct {
	mu     sync.Mutex
	seen   map[string]int
	answer func(m *channel.Message, attempt int) channel.Result
	gate   chan struct{} // when set, every send waits for it
}

func newScriptSender(answer func(m *channel.Message, attempt int) channel.Result) *scriptSender {
	if answer == nil {
		answer = func(*channel.Message, int) channel.Result { return channel.Result{Outcome: channel.Sent} }
	}
	return &scriptSender{seen: map[string]int{}, answer: answer}
}

func (s *scriptSender) Send(_ context.Context, m *channel.Message) channel.Result {
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	s.seen[m.Key]++
	n := s.seen[m.Key]
	s.mu.Unlock()
	return s.answer(m, n)
}

func (s *scriptSender) Concurrency() int { return 4 }
func (s *scriptSender) Close() error     { return nil }

func (s *scriptSender) count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[key]
}

// fixture is a SQLite store with one run of n pending treatment targets.
type fixture struct {
	ctx context.Context
	st  store.Store
	run *store.Run
	msg *campaign.Compiled
	ids []string
}

func newFixture(t *testing.T, n int, shards int32, notBefore func(i int) time.Time) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "r.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	msg, err := campaign.CompileMessage(campaign.Message{Subject: "Hi {{.Attributes.name}}", Body: "We miss you, {{.Attributes.name}}."})
	if err != nil {
		t.Fatal(err)
	}
	run, err := st.RunCreate(ctx, &store.RunCreateParams{RunID: "run-1", Campaign: "ns/winback", Channel: "ns/hook",
		Shards: shards, Settings: campaign.RunSettings{Shards: shards}})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ctx: ctx, st: st, run: run, msg: msg}
	var ts []store.NewTarget
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("c%05d", i)
		f.ids = append(f.ids, id)
		nt := store.NewTarget{CustomerID: id, Shard: int32(i) % shards,
			Data: store.TargetData{Address: id + "@example.com", Fields: map[string]any{"Attributes": map[string]any{"name": "N" + id}}}}
		if notBefore != nil {
			nt.NotBefore = notBefore(i)
		}
		ts = append(ts, nt)
	}
	if _, err := st.TargetInsert(ctx, &store.TargetInsertParams{RunID: run.ID, Targets: ts}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) config(s channel.Sender, shard int32) Config {
	return Config{Store: f.st, Run: f.run, Shard: shard, Message: f.msg, Sender: s, Log: logr.Discard(),
		Backoff: time.Millisecond, IdleWait: 50 * time.Millisecond}
}

// states returns each target's state and reason.
func (f *fixture) states(t *testing.T) map[string]*store.Target {
	t.Helper()
	out := map[string]*store.Target{}
	err := f.st.TargetScan(f.ctx, &store.TargetScanParams{RunID: f.run.ID}, func(tg *store.Target) error {
		c := *tg
		out[tg.CustomerID] = &c
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRunSendsEveryTargetOnce(t *testing.T) {
	for _, batch := range []int{1, 7, 100, 1000} {
		t.Run(fmt.Sprint("batch", batch), func(t *testing.T) {
			f := newFixture(t, 250, 1, nil)
			s := newScriptSender(nil)
			cfg := f.config(s, 0)
			cfg.BatchSize = batch
			stats, err := Run(f.ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if stats.Sent != 250 || stats.Failed != 0 || stats.TakenOver != 0 {
				t.Errorf("stats = %+v, want 250 sent", stats)
			}
			for id, tg := range f.states(t) {
				if tg.State != store.StateSent {
					t.Errorf("%s: state %s", id, tg.State)
				}
				if n := s.count(channel.Key(f.run.ID, id)); n != 1 {
					t.Errorf("%s sent %d times", id, n)
				}
			}
		})
	}
}

func TestRunRendersFrozenFields(t *testing.T) {
	f := newFixture(t, 3, 1, nil)
	var mu sync.Mutex
	got := map[string]channel.Message{}
	s := newScriptSender(func(m *channel.Message, _ int) channel.Result {
		mu.Lock()
		got[m.CustomerID] = *m
		mu.Unlock()
		return channel.Result{Outcome: channel.Sent}
	})
	cfg := f.config(s, 0)
	cfg.Unsubscribe = func(id string) string { return "https://u.example/unsubscribe/" + id }
	if _, err := Run(f.ctx, cfg); err != nil {
		t.Fatal(err)
	}
	m := got["c00001"]
	want := channel.Message{Key: "run-1/c00001", RunID: "run-1", Campaign: "ns/winback", CustomerID: "c00001",
		Address: "c00001@example.com", Subject: "Hi Nc00001", Text: "We miss you, Nc00001.",
		UnsubscribeURL: "https://u.example/unsubscribe/c00001"}
	if m.Fields["Attributes"].(map[string]any)["name"] != "Nc00001" {
		t.Errorf("fields = %v", m.Fields)
	}
	m.Fields = nil
	if !reflect.DeepEqual(m, want) {
		t.Errorf("message = %+v\nwant %+v", m, want)
	}
}

func TestRunRetriesAndFailures(t *testing.T) {
	f := newFixture(t, 6, 1, nil)
	s := newScriptSender(func(m *channel.Message, attempt int) channel.Result {
		switch m.CustomerID {
		case "c00000": // always overloaded: fails after MaxAttempts
			return channel.Result{Outcome: channel.Retry, Reason: "http 503"}
		case "c00001": // one 429, then accepted
			if attempt == 1 {
				return channel.Result{Outcome: channel.Retry, Reason: "http 429", RetryAfter: 20 * time.Millisecond}
			}
		case "c00002":
			return channel.Result{Outcome: channel.Fail, Reason: "http 400"}
		}
		return channel.Result{Outcome: channel.Sent}
	})
	cfg := f.config(s, 0)
	cfg.MaxAttempts = 3
	stats, err := Run(f.ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := f.states(t)
	if tg := st["c00000"]; tg.State != store.StateFailed || tg.Attempts != 3 || tg.LastError != "http 503 (after 3 attempts)" {
		t.Errorf("always-503 target = %s attempts %d %q", tg.State, tg.Attempts, tg.LastError)
	}
	if tg := st["c00001"]; tg.State != store.StateSent || tg.Attempts != 2 {
		t.Errorf("429-once target = %s attempts %d", tg.State, tg.Attempts)
	}
	if tg := st["c00002"]; tg.State != store.StateFailed || tg.Attempts != 1 || tg.LastError != "http 400" {
		t.Errorf("400 target = %s attempts %d %q", tg.State, tg.Attempts, tg.LastError)
	}
	if stats.Sent != 4 || stats.Failed != 2 || stats.Retried != 3 {
		t.Errorf("stats = %+v, want 4 sent, 2 failed, 3 retried", stats)
	}
	if n := s.count("run-1/c00000"); n != 3 {
		t.Errorf("always-503 target sent %d times, want 3", n)
	}
}

func TestBackoff(t *testing.T) {
	r := &runner{cfg: Config{Backoff: time.Second}}
	for _, tc := range []struct {
		attempts   int32
		retryAfter time.Duration
		lo, hi     time.Duration
	}{
		{1, 0, 500 * time.Millisecond, 1500 * time.Millisecond},
		{3, 0, 2 * time.Second, 6 * time.Second},
		{2, 30 * time.Second, 30 * time.Second, 30 * time.Second},
		{40, 0, MaxBackoff, MaxBackoff},
		{1, 5 * time.Hour, MaxBackoff, MaxBackoff},
	} {
		for i := 0; i < 50; i++ {
			if d := r.backoff(tc.attempts, tc.retryAfter); d < tc.lo || d > tc.hi {
				t.Fatalf("backoff(%d, %s) = %s, want in [%s, %s]", tc.attempts, tc.retryAfter, d, tc.lo, tc.hi)
			}
		}
	}
}

func TestRunSkipsLateOptOuts(t *testing.T) {
	f := newFixture(t, 5, 1, nil)
	if err := f.st.OptOutAdd(f.ctx, &store.OptOutAddParams{Channel: "ns/hook", CustomerID: "c00003", Via: "unsubscribe-link"}); err != nil {
		t.Fatal(err)
	}
	// An opt-out on another channel does not count.
	if err := f.st.OptOutAdd(f.ctx, &store.OptOutAddParams{Channel: "ns/other", CustomerID: "c00004", Via: "api"}); err != nil {
		t.Fatal(err)
	}
	s := newScriptSender(nil)
	stats, err := Run(f.ctx, f.config(s, 0))
	if err != nil {
		t.Fatal(err)
	}
	tg := f.states(t)["c00003"]
	if tg.State != store.StateSkipped || tg.Reason != store.ReasonOptedOut || s.count("run-1/c00003") != 0 {
		t.Errorf("opted-out target = %s %q, sent %d times", tg.State, tg.Reason, s.count("run-1/c00003"))
	}
	if stats.Sent != 4 || stats.OptedOut != 1 {
		t.Errorf("stats = %+v", stats)
	}
}

func TestRunTemplateErrorFailsTargetOnly(t *testing.T) {
	// The second target's frozen data lacks a field: its render fails,
	// nothing is sent for it, and the reason names the key but no value.
	msg, err := campaign.CompileMessage(campaign.Message{Body: "Dear {{.Attributes.name}}, code {{printf \"%s\" .Attributes.code}}"})
	if err != nil {
		t.Fatal(err)
	}
	f2 := newFixture(t, 0, 1, nil)
	ts := []store.NewTarget{
		{CustomerID: "ok", Data: store.TargetData{Fields: map[string]any{"Attributes": map[string]any{"name": "Ann", "code": "X1"}}}},
		{CustomerID: "missing", Data: store.TargetData{Fields: map[string]any{"Attributes": map[string]any{"name": "Secret Name"}}}},
	}
	if _, err := f2.st.TargetInsert(f2.ctx, &store.TargetInsertParams{RunID: f2.run.ID, Targets: ts}); err != nil {
		t.Fatal(err)
	}
	f2.msg = msg
	s := newScriptSender(nil)
	stats, err := Run(f2.ctx, f2.config(s, 0))
	if err != nil {
		t.Fatal(err)
	}
	st := f2.states(t)
	if st["ok"].State != store.StateSent || stats.Sent != 1 {
		t.Errorf("ok target = %s, stats %+v", st["ok"].State, stats)
	}
	bad := st["missing"]
	if bad.State != store.StateFailed || s.count("run-1/missing") != 0 {
		t.Errorf("missing-field target = %s, sent %d", bad.State, s.count("run-1/missing"))
	}
	if !strings.Contains(bad.LastError, `map has no entry for key "code"`) || strings.Contains(bad.LastError, "Secret") {
		t.Errorf("reason = %q", bad.LastError)
	}
}

func TestTemplateReasonDropsValues(t *testing.T) {
	msg, err := campaign.CompileMessage(campaign.Message{Body: `{{index .Attributes.list 5}}`})
	if err != nil {
		t.Fatal(err)
	}
	_, _, rerr := msg.Render("", map[string]any{"Attributes": map[string]any{"list": []any{"private-value"}}})
	if rerr == nil {
		t.Fatal("want a render error")
	}
	got := templateReason(rerr)
	if strings.Contains(got, "private") || !strings.HasPrefix(got, "template: ") || !strings.HasSuffix(got, ">") {
		t.Errorf("templateReason = %q (from %q)", got, rerr)
	}
}

func TestRunWaitsForDeferredTargets(t *testing.T) {
	f := newFixture(t, 4, 1, nil)
	now, err := f.st.Now(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Two more targets deferred (quiet hours) by 300 ms.
	later := []store.NewTarget{{CustomerID: "d1", NotBefore: now.Add(300 * time.Millisecond)}, {CustomerID: "d2", NotBefore: now.Add(300 * time.Millisecond)}}
	for i := range later {
		later[i].Data.Fields = map[string]any{"Attributes": map[string]any{"name": "D"}}
	}
	if _, err := f.st.TargetInsert(f.ctx, &store.TargetInsertParams{RunID: f.run.ID, Targets: later}); err != nil {
		t.Fatal(err)
	}
	s := newScriptSender(nil)
	start := time.Now()
	stats, err := Run(f.ctx, f.config(s, 0))
	if err != nil {
		t.Fatal(err)
	}
	if stats.Sent != 6 {
		t.Errorf("sent %d, want 6", stats.Sent)
	}
	if time.Since(start) < 250*time.Millisecond {
		t.Errorf("deferred targets sent before their time")
	}
}

func TestRunGracefulStopRecordsBatchInFlight(t *testing.T) {
	f := newFixture(t, 50, 1, nil)
	s := newScriptSender(nil)
	s.gate = make(chan struct{})
	cfg := f.config(s, 0)
	cfg.BatchSize = 10
	ctx, cancel := context.WithCancel(f.ctx)
	type out struct {
		stats Stats
		err   error
	}
	done := make(chan out, 1)
	go func() {
		st, err := Run(ctx, cfg)
		done <- out{st, err}
	}()
	// Let the first batch be claimed and its sends start, then stop.
	waitFor(t, func() bool {
		n := 0
		for _, tg := range f.states(t) {
			if tg.State == store.StateClaimed {
				n++
			}
		}
		return n == 10
	})
	cancel()
	close(s.gate)
	o := <-done
	if !errors.Is(o.err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", o.err)
	}
	byState := map[store.TargetState]int{}
	for _, tg := range f.states(t) {
		byState[tg.State]++
	}
	if byState[store.StateSent] != 10 || byState[store.StatePending] != 40 || o.stats.Sent != 10 {
		t.Errorf("after a stop: %v, stats %+v; want the 10 in flight sent and 40 pending", byState, o.stats)
	}
}

func TestTwoRunnersOneShardSendEachOnce(t *testing.T) {
	f := newFixture(t, 600, 1, nil)
	s := newScriptSender(nil)
	var wg sync.WaitGroup
	var total [2]Stats
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := f.config(s, 0)
			cfg.BatchSize = 25
			st, err := Run(f.ctx, cfg)
			if err != nil {
				t.Error(err)
			}
			total[i] = st
		}()
	}
	wg.Wait()
	if total[0].Sent+total[1].Sent != 600 {
		t.Errorf("sent %d + %d, want 600", total[0].Sent, total[1].Sent)
	}
	for _, id := range f.ids {
		if n := s.count(channel.Key(f.run.ID, id)); n != 1 {
			t.Fatalf("%s sent %d times", id, n)
		}
	}
}

func TestRunOnlyItsShard(t *testing.T) {
	f := newFixture(t, 90, 3, nil)
	s := newScriptSender(nil)
	stats, err := Run(f.ctx, f.config(s, 1))
	if err != nil {
		t.Fatal(err)
	}
	if stats.Sent != 30 {
		t.Errorf("sent %d, want the shard's 30", stats.Sent)
	}
	for id, tg := range f.states(t) {
		if (tg.Shard == 1) != (tg.State == store.StateSent) {
			t.Errorf("%s shard %d state %s", id, tg.Shard, tg.State)
		}
	}
	if _, err := Run(f.ctx, f.config(s, 3)); !errors.Is(err, ErrConfig) {
		t.Errorf("shard 3 of 3: err = %v, want ErrConfig", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRunTakesOverDeadClaimsAfterTTL(t *testing.T) {
	f := newFixture(t, 20, 1, nil)
	// A runner that died after claiming 5 targets.
	dead, err := f.st.TargetClaim(f.ctx, &store.TargetClaimParams{RunID: f.run.ID, Limit: 5, Token: "dead"})
	if err != nil || len(dead) != 5 {
		t.Fatalf("claim: %d %v", len(dead), err)
	}
	s := newScriptSender(nil)
	cfg := f.config(s, 0)
	cfg.ClaimTTL = 300 * time.Millisecond
	start := time.Now()
	stats, err := Run(f.ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Sent != 20 {
		t.Errorf("sent %d, want 20 (the dead runner's 5 taken over)", stats.Sent)
	}
	if time.Since(start) < 250*time.Millisecond {
		t.Error("the dead runner's claims were taken before their TTL")
	}
	for _, tg := range dead {
		if n := s.count(channel.Key(f.run.ID, tg.CustomerID)); n != 1 {
			t.Errorf("%s sent %d times", tg.CustomerID, n)
		}
	}
}
