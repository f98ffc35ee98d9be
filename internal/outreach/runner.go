// Package outreach is the runner an outreach Job's pod executes: it sends
// one shard of a campaign run's targets over the run's channel and records
// every outcome in the store.
//
// The loop: claim a batch of the shard's due targets (compare-and-set with
// a claim token), drop those who opted out since materialization, render,
// send on the channel's keep-alive connections, and record outcomes in
// batches (every ~20 ms or a batch, whichever first) on a second store
// connection while the next batch is claimed.
//
// Delivery is at-least-once to the channel with an idempotency key
// "<run-uid>/<customer-id>" on every message. The runner starts sending a
// batch only after the previous batch's outcomes are recorded, so a crash
// (SIGKILL) leaves at most one batch sent but unrecorded; those targets
// stay claimed, are taken over as stale by the next runner and resent
// with the same key. Nothing is lost; duplicates at the sink are bounded
// by one claim batch and carry a key the receiver has already seen.
package outreach

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"

	"github.com/retention-dev/retention-operator/internal/campaign"
	"github.com/retention-dev/retention-operator/internal/outreach/channel"
	"github.com/retention-dev/retention-operator/internal/store"
)

// Defaults of Config.
const (
	DefaultBatchSize  = 100
	DefaultFlushEvery = 20 * time.Millisecond
	DefaultIdleWait   = time.Minute
	DefaultBackoff    = time.Second
	DefaultClaimTTL   = 5 * time.Minute
	// MaxBackoff caps one retry's wait, whatever the receiver asks.
	MaxBackoff = time.Hour
)

// Config is one runner's work: a shard of a run, and how to send it.
type Config struct {
	// Store holds the run's targets; the runner needs two connections
	// (claims, records).
	Store store.Store
	// Run is the run record (store.RunGet).
	Run *store.Run
	// Shard is the shard this runner sends, in [0, Run.Shards).
	Shard int32
	// Message is the run's compiled message.
	Message *campaign.Compiled
	// Sender delivers on the run's channel; its Concurrency sets how many
	// sends are in flight at once.
	Sender channel.Sender
	// BatchSize is how many targets one claim takes (DefaultBatchSize if
	// 0). It bounds the duplicates a crash can cause.
	BatchSize int
	// FlushEvery is how often outcomes are recorded while a batch is
	// being sent (DefaultFlushEvery if 0).
	FlushEvery time.Duration
	// Limiter, if set, paces sends (this shard's share of the channel's
	// rate limit).
	Limiter *rate.Limiter
	// MaxAttempts bounds the sends of one target, the first included
	// (1 if 0); Backoff is the wait before the first retry, doubled for
	// each further one, with ±50% jitter (DefaultBackoff if 0).
	MaxAttempts int
	Backoff     time.Duration
	// Unsubscribe builds a customer's one-click unsubscribe URL; nil
	// when the operator has no public unsubscribe endpoint.
	Unsubscribe func(customerID string) string
	// IdleWait is the longest the runner sleeps when every pending
	// target of its shard is deferred (DefaultIdleWait if 0).
	IdleWait time.Duration
	// ClaimTTL is how old another runner's claim must be before this
	// runner takes it over (DefaultClaimTTL if 0); see staleBefore.
	ClaimTTL time.Duration
	// Token is the claim token (random if empty).
	Token string
	// Log receives counts and reasons only: never a customer id, an
	// address or a message.
	Log logr.Logger
}

// Stats counts what a runner did.
type Stats struct {
	// Claimed counts claims, retries included.
	Claimed int64
	// Sent counts targets recorded as sent.
	Sent int64
	// Failed counts targets recorded as failed for good.
	Failed int64
	// Retried counts sends that will be tried again later.
	Retried int64
	// OptedOut counts targets skipped because the customer opted out
	// after materialization.
	OptedOut int64
	// TakenOver counts outcomes the store did not take because the target
	// was no longer claimed by this runner (another runner took it over
	// and records it).
	TakenOver int64
	// Batches counts claim batches.
	Batches int64
}

// ErrConfig marks a configuration the runner cannot work with (exit code
// 2: retrying the pod cannot help).
var ErrConfig = errors.New("outreach: configuration")

// Run sends the shard until no pending target is left in it. Cancelling
// ctx stops it gracefully: no new batch is claimed, the batch in flight is
// sent and recorded, and Run returns the stats with ctx's error.
func Run(ctx context.Context, cfg Config) (Stats, error) {
	r, err := newRunner(ctx, cfg)
	if err != nil {
		return Stats{}, err
	}
	defer r.rec.close()
	return r.loop(ctx)
}

// runner is one Run's state.
type runner struct {
	cfg     Config
	dbStart time.Time
	started time.Time
	rec     *recorder
	stats   Stats
	work    chan *item
}

// item is one target on its way through rendering and sending.
type item struct {
	target *store.Target
	msg    channel.Message
	res    channel.Result
	wg     *sync.WaitGroup
}

func newRunner(ctx context.Context, cfg Config) (*runner, error) {
	if cfg.Store == nil || cfg.Run == nil || cfg.Message == nil || cfg.Sender == nil {
		return nil, fmt.Errorf("%w: store, run, message and sender are required", ErrConfig)
	}
	if cfg.Shard < 0 || (cfg.Run.Shards > 0 && cfg.Shard >= cfg.Run.Shards) {
		return nil, fmt.Errorf("%w: shard %d is outside the run's %d shards", ErrConfig, cfg.Shard, cfg.Run.Shards)
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = DefaultFlushEvery
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 1
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.IdleWait <= 0 {
		cfg.IdleWait = DefaultIdleWait
	}
	if cfg.ClaimTTL <= 0 {
		cfg.ClaimTTL = DefaultClaimTTL
	}
	if cfg.Token == "" {
		cfg.Token = newToken()
	}
	// The stale-claim cut-off is the database's time at start-up: claims
	// older than this start belong to a runner that is gone (or to this
	// shard's previous pod). Taking it later would re-claim our own.
	dbStart, err := cfg.Store.Now(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the store's clock: %w", err)
	}
	r := &runner{cfg: cfg, dbStart: dbStart, started: time.Now(), work: make(chan *item)}
	r.rec = newRecorder(cfg.Store, cfg.Run.ID, cfg.Token, cfg.BatchSize, cfg.FlushEvery)
	return r, nil
}

// staleBefore is the claim cut-off: a claim is taken over when it was
// made before this runner started (so it is not one of this runner's own)
// and at least ClaimTTL ago (so a live runner on the same shard, which
// records a batch well within the TTL, keeps its claims: two runners on
// one shard never send a target twice). A pod restarted after a crash
// takes its predecessor's last batch over once that is ClaimTTL old.
func (r *runner) staleBefore() time.Time {
	ttl := r.dbNow().Add(-r.cfg.ClaimTTL)
	if ttl.Before(r.dbStart) {
		return ttl
	}
	return r.dbStart
}

// dbNow is the database's clock as of now, from its reading at start-up
// and this process's monotonic clock: not-before times are compared with
// the database's clock.
func (r *runner) dbNow() time.Time { return r.dbStart.Add(time.Since(r.started)) }

func (r *runner) loop(ctx context.Context) (Stats, error) {
	for w := 0; w < max(1, r.cfg.Sender.Concurrency()); w++ {
		go r.sendWorker()
	}
	defer close(r.work)
	// Sends and records outlive a cancelled ctx: the batch in flight is
	// finished and recorded (graceful stop).
	bg := context.WithoutCancel(ctx)
	for {
		if ctx.Err() != nil {
			return r.finish(bg, ctx.Err())
		}
		batch, err := r.cfg.Store.TargetClaim(ctx, &store.TargetClaimParams{
			RunID: r.cfg.Run.ID, Shard: r.cfg.Shard, Limit: r.cfg.BatchSize,
			StaleBefore: r.staleBefore(), Token: r.cfg.Token,
		})
		if err != nil {
			if ctx.Err() != nil {
				return r.finish(bg, ctx.Err())
			}
			return r.finish(bg, err)
		}
		// Outcomes of the previous batch were being recorded while this
		// claim ran; wait for them before sending more, so at most one
		// batch is ever sent but unrecorded.
		if err := r.rec.sync(bg); err != nil {
			return r.stats, err
		}
		if len(batch) == 0 {
			done, err := r.idle(ctx)
			if err != nil || done {
				return r.finish(bg, err)
			}
			continue
		}
		r.stats.Batches++
		r.stats.Claimed += int64(len(batch))
		if err := r.sendBatch(bg, batch); err != nil {
			return r.finish(bg, err)
		}
		r.rec.flushAsync()
	}
}

// finish records what is left and returns the stats with err.
func (r *runner) finish(ctx context.Context, err error) (Stats, error) {
	if serr := r.rec.sync(ctx); serr != nil && err == nil {
		err = serr
	}
	r.stats.Sent, r.stats.Failed, r.stats.OptedOut, r.stats.TakenOver = r.rec.counts()
	return r.stats, err
}

// sendBatch drops the erased and the opted-out, renders and sends one claimed batch, and
// hands every outcome to the recorder.
func (r *runner) sendBatch(ctx context.Context, batch []*store.Target) error {
	ids := make([]string, len(batch))
	for i, t := range batch {
		ids[i] = t.CustomerID
	}
	// Re-checked before each send: an opt-out that arrived after
	// materialization (the unsubscribe link of an earlier message) wins.
	optedOut, err := r.cfg.Store.OptOutFilter(ctx, r.cfg.Run.Channel, ids)
	if err != nil {
		return fmt.Errorf("checking opt-outs: %w", err)
	}
	// And erasures: ErasureApply skips the targets it finds, but a claim
	// or a materialization that read before it committed still holds the
	// customer (the store then takes the skip, or finds the target gone).
	erased := map[string]bool{}
	if r.cfg.Run.Source != "" {
		if erased, err = r.cfg.Store.ErasedFilter(ctx, r.cfg.Run.Source, ids); err != nil {
			return fmt.Errorf("checking erasures: %w", err)
		}
	}
	var wg sync.WaitGroup
	items := make([]item, len(batch))
	for i, t := range batch {
		if erased[t.CustomerID] {
			r.rec.skip(t.CustomerID, store.ReasonErased)
			continue
		}
		if optedOut[t.CustomerID] {
			r.rec.skip(t.CustomerID, store.ReasonOptedOut)
			continue
		}
		it := &items[i]
		it.target = t
		if err := r.render(it); err != nil {
			// A template that cannot render this customer fails the
			// target for good; nothing half-rendered is sent.
			r.rec.fail(store.TargetFailure{CustomerID: t.CustomerID, Error: templateReason(err)})
			continue
		}
		it.wg = &wg
		wg.Add(1)
		r.work <- it
	}
	wg.Wait()
	for i := range items {
		if items[i].wg != nil {
			r.outcome(&items[i])
		}
	}
	return nil
}

// render fills the item's message from its frozen target data.
func (r *runner) render(it *item) error {
	t := it.target
	data := t.Data.Fields
	if data == nil {
		data = map[string]any{}
	}
	subject, text, html, err := r.cfg.Message.RenderAll(t.Variant, data)
	if err != nil {
		return err
	}
	it.msg = channel.Message{
		Key:        channel.Key(r.cfg.Run.ID, t.CustomerID),
		RunID:      r.cfg.Run.ID,
		Campaign:   r.cfg.Run.Campaign,
		Variant:    t.Variant,
		CustomerID: t.CustomerID,
		Address:    t.Data.Address,
		Locale:     t.Data.Locale,
		TimeZone:   t.Data.TimeZone,
		Fields:     t.Data.Fields,
		Subject:    subject,
		Text:       text,
		HTML:       html,
	}
	if r.cfg.Unsubscribe != nil {
		it.msg.UnsubscribeURL = r.cfg.Unsubscribe(t.CustomerID)
	}
	return nil
}

// sendWorker sends items until the work channel closes.
func (r *runner) sendWorker() {
	ctx := context.Background()
	for it := range r.work {
		if r.cfg.Limiter != nil {
			_ = r.cfg.Limiter.Wait(ctx)
		}
		it.res = r.cfg.Sender.Send(ctx, &it.msg)
		r.recordOne(it)
		it.wg.Done()
	}
}

// recordOne hands a sent item to the recorder at once, so the periodic
// flush records it within FlushEvery even while the batch goes on.
func (r *runner) recordOne(it *item) {
	if it.res.Outcome == channel.Sent {
		r.rec.sent(it.target.CustomerID)
	}
}

// outcome records a send that did not succeed: a retry with its
// not-before time while attempts are left, otherwise a failure.
func (r *runner) outcome(it *item) {
	switch it.res.Outcome {
	case channel.Sent:
		return
	case channel.Retry:
		if int(it.target.Attempts) < r.cfg.MaxAttempts {
			r.stats.Retried++
			r.rec.fail(store.TargetFailure{
				CustomerID: it.target.CustomerID,
				Error:      it.res.Reason,
				Retryable:  true,
				NotBefore:  r.dbNow().Add(r.backoff(it.target.Attempts, it.res.RetryAfter)),
			})
			return
		}
		r.rec.fail(store.TargetFailure{CustomerID: it.target.CustomerID,
			Error: fmt.Sprintf("%s (after %d attempts)", it.res.Reason, it.target.Attempts)})
	default:
		r.rec.fail(store.TargetFailure{CustomerID: it.target.CustomerID, Error: it.res.Reason})
	}
}

// backoff is the wait before the next attempt after attempts sends:
// Backoff·2^(attempts−1) with ±50% jitter, at least what the receiver
// asked for (Retry-After), at most MaxBackoff.
func (r *runner) backoff(attempts int32, retryAfter time.Duration) time.Duration {
	exp := float64(r.cfg.Backoff) * math.Pow(2, float64(max(attempts-1, 0))) * (0.5 + mrand.Float64())
	d := MaxBackoff
	if exp < float64(MaxBackoff) {
		d = time.Duration(exp)
	}
	d = max(d, retryAfter)
	return min(d, MaxBackoff)
}

// idle is reached when a claim found nothing due. It reports done when
// nothing is left in the shard for this runner: no pending target and no
// claim of a runner that stopped before this one started. Otherwise it
// sleeps until the earliest of them is due (a deferred target's
// not-before, a dead claim's ClaimTTL), at most IdleWait.
func (r *runner) idle(ctx context.Context) (done bool, err error) {
	w, err := r.cfg.Store.TargetWaiting(ctx, &store.TargetWaitingParams{
		RunID: r.cfg.Run.ID, Shard: r.cfg.Shard, Token: r.cfg.Token, ClaimedBefore: r.dbStart})
	if err != nil {
		return false, fmt.Errorf("looking for deferred targets and stale claims: %w", err)
	}
	waiting := w.Pending + w.Claimed
	// The earliest of them is due: a pending target at its not-before (at
	// once when zero), a dead claim ClaimTTL after it was made.
	earliest := w.EarliestClaim.Add(r.cfg.ClaimTTL)
	if w.Pending > 0 && (w.Claimed == 0 || w.EarliestNotBefore.Before(earliest)) {
		earliest = w.EarliestNotBefore
	}
	if waiting == 0 {
		return true, nil
	}
	wait := min(max(earliest.Sub(r.dbNow()), 10*time.Millisecond), r.cfg.IdleWait)
	r.cfg.Log.V(1).Info("waiting for deferred targets or stale claims", "targets", waiting, "wait", wait.String())
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return true, ctx.Err()
	case <-t.C:
		return false, nil
	}
}

// templateReason is a render error as a target's failure reason: where
// the template failed ("template: body:1:8: executing \"body\" at
// <.Attributes.name>") and, for a missing key, which key. The rest of an
// execution error (a function's message) can quote a customer's value,
// so it is left out.
func templateReason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, ">: "); i >= 0 {
		tail := msg[i+3:]
		msg = msg[:i+1]
		if strings.HasPrefix(tail, "map has no entry for key") {
			msg += ": " + tail
		}
	}
	if !strings.HasPrefix(msg, "template") {
		msg = "template: " + msg
	}
	return truncate(msg, 200)
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
