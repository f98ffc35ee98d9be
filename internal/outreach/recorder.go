package outreach

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/retention-dev/retention-operator/internal/store"
)

// recorder writes outcomes to the store in batches on its own goroutine
// (and so its own store connection): when a batch's worth has gathered,
// every FlushEvery, when kicked at the end of a batch, and when synced.
// A store error is retried a few times; if it persists, the recorder
// stops and sync reports the error (the targets stay claimed and are
// resent, with the same key, by the next runner).
type recorder struct {
	st           store.Store
	runID, token string
	batch        int

	mu       sync.Mutex
	sentIDs  []string
	failures []store.TargetFailure
	skips    []store.TargetSkip

	kick  chan struct{}
	syncs chan chan error
	stop  chan struct{}
	done  chan struct{}

	// Written by the recorder goroutine only; read after sync.
	nSent, nFailed, nOptedOut, nTakenOver int64
	err                                   error
}

func newRecorder(st store.Store, runID, token string, batch int, every time.Duration) *recorder {
	r := &recorder{st: st, runID: runID, token: token, batch: batch,
		kick: make(chan struct{}, 1), syncs: make(chan chan error), stop: make(chan struct{}), done: make(chan struct{})}
	go r.run(every)
	return r
}

func (r *recorder) sent(id string) {
	r.mu.Lock()
	r.sentIDs = append(r.sentIDs, id)
	full := len(r.sentIDs) >= r.batch
	r.mu.Unlock()
	if full {
		r.flushAsync()
	}
}

func (r *recorder) fail(f store.TargetFailure) {
	r.mu.Lock()
	r.failures = append(r.failures, f)
	r.mu.Unlock()
}

func (r *recorder) skip(id, reason string) {
	r.mu.Lock()
	r.skips = append(r.skips, store.TargetSkip{CustomerID: id, Reason: reason})
	r.mu.Unlock()
}

// flushAsync asks for a flush without waiting for it.
func (r *recorder) flushAsync() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// sync flushes everything handed over so far and returns the first store
// error the recorder met, if any.
func (r *recorder) sync(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case r.syncs <- reply:
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *recorder) close() {
	close(r.stop)
	<-r.done
}

// counts are what the store took (read after sync): sent, failed for
// good, skipped as opted out, and outcomes it refused because another
// runner had taken the target over.
func (r *recorder) counts() (sent, failed, optedOut, takenOver int64) {
	return r.nSent, r.nFailed, r.nOptedOut, r.nTakenOver
}

func (r *recorder) run(every time.Duration) {
	defer close(r.done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			r.flush()
		case <-r.kick:
			r.flush()
		case reply := <-r.syncs:
			r.flush()
			reply <- r.err
		case <-r.stop:
			r.flush()
			return
		}
	}
}

// flush writes what has gathered. After a persistent error it writes
// nothing more.
func (r *recorder) flush() {
	if r.err != nil {
		return
	}
	r.mu.Lock()
	sent, failures, skips := r.sentIDs, r.failures, r.skips
	r.sentIDs, r.failures, r.skips = nil, nil, nil
	r.mu.Unlock()
	ctx := context.Background()
	if len(sent) > 0 {
		n := r.retry("recording sent targets", func() (int64, error) {
			return r.st.TargetSetSent(ctx, &store.TargetSetSentParams{RunID: r.runID, CustomerIDs: sent, Token: r.token})
		})
		r.nSent += n
		r.nTakenOver += r.refused(len(sent), n)
	}
	if len(failures) > 0 {
		n := r.retry("recording failed targets", func() (int64, error) {
			return r.st.TargetSetFailed(ctx, &store.TargetSetFailedParams{RunID: r.runID, Failures: failures, Token: r.token})
		})
		for _, f := range failures {
			if !f.Retryable {
				r.nFailed++
			}
		}
		r.nTakenOver += r.refused(len(failures), n)
	}
	if len(skips) > 0 {
		n := r.retry("recording skipped targets", func() (int64, error) {
			return r.st.TargetSetSkipped(ctx, &store.TargetSetSkippedParams{RunID: r.runID, Skips: skips, Token: r.token})
		})
		r.nOptedOut += n
		r.nTakenOver += r.refused(len(skips), n)
	}
}

// refused is how many of asked outcomes the store did not take, once a
// write succeeded (after a failed write nothing is known).
func (r *recorder) refused(asked int, took int64) int64 {
	if r.err != nil {
		return 0
	}
	return int64(asked) - took
}

// retry runs a store write up to four times, 0.1 s, 0.4 s and 1.6 s
// apart, and keeps the last error. The writes are compare-and-set on the
// claim token, so running one again after an ambiguous error is safe.
func (r *recorder) retry(what string, write func() (int64, error)) int64 {
	wait := 100 * time.Millisecond
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		if attempt > 0 {
			time.Sleep(wait)
			wait *= 4
		}
		var n int64
		if n, err = write(); err == nil {
			return n
		}
	}
	r.err = fmt.Errorf("%s: %w", what, err)
	return 0
}
