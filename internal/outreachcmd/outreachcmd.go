// Package outreachcmd is the outreach runner's command line: the
// entrypoint of an outreach Job's pods (the lean retention-outreach
// binary) and `retention-operator outreach`. It imports nothing of
// Kubernetes, so the runner's binary starts small.
package outreachcmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"golang.org/x/time/rate"

	"github.com/retention-dev/retention-operator/internal/campaign"
	"github.com/retention-dev/retention-operator/internal/cliflag"
	"github.com/retention-dev/retention-operator/internal/outreach"
	"github.com/retention-dev/retention-operator/internal/store"
	_ "github.com/retention-dev/retention-operator/internal/store/postgres"
	_ "github.com/retention-dev/retention-operator/internal/store/sqlite"
)

// Exit codes of `outreach`, read by the Job's podFailurePolicy: 0 the
// shard is done (or was stopped gracefully), 1 a failure a new pod may
// get past (the store unreachable), 2 a configuration that can never
// work (the index fails at once).
const (
	exitRetryable = 1
	exitConfig    = 2
)

// Main runs `retention-outreach --run R [--shard N]`, the
// entrypoint of an outreach Job's pods: it sends one shard of a run. The
// store URL comes from $RETENTION_STORE, credentials from the per-run
// Secret's variables, the shard from $JOB_COMPLETION_INDEX when --shard
// is absent. SIGTERM stops it gracefully (the batch in flight is sent and
// recorded; exit 0).
func Main(args []string, stderr io.Writer) int {
	// The runner's live heap is a few MiB (one claim batch), so the
	// default GOGC=100 collects every few hundred messages; 400 cuts the
	// GC's CPU share by about a fifth of the runner's time for ~10 MiB
	// more RSS (docs/performance.md). $GOGC, when set, wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := funcr.NewJSON(func(obj string) { fmt.Fprintln(stderr, obj) }, funcr.Options{Verbosity: 0})
	err := runOutreach(ctx, args, os.Getenv, log, stderr)
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return 0
	case isConfigError(err):
		fmt.Fprintf(stderr, "retention-operator outreach: %v\n", err)
		return exitConfig
	default:
		fmt.Fprintf(stderr, "retention-operator outreach: %v\n", err)
		return exitRetryable
	}
}

func isConfigError(err error) bool {
	var ue *cliflag.UsageError
	return errors.As(err, &ue) || errors.Is(err, outreach.ErrConfig) || errors.Is(err, store.ErrSchema) ||
		errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid)
}

// outreachFlags are the command line of `outreach`.
type outreachFlags struct {
	run        string
	shard      int
	storeURL   string
	batch      int
	claimTTL   time.Duration
	flushEvery time.Duration
}

func runOutreach(ctx context.Context, args []string, getenv outreach.Getenv, log logr.Logger, stderr io.Writer) error {
	f := outreachFlags{shard: -1}
	fs := flag.NewFlagSet("outreach", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.run, "run", "", "the run's `uid` (required)")
	fs.IntVar(&f.shard, "shard", -1, "the shard to send (default: $JOB_COMPLETION_INDEX)")
	fs.StringVar(&f.storeURL, "store", "", "store `URL` (default: $"+campaign.EnvStore+")")
	fs.IntVar(&f.batch, "batch-size", outreach.DefaultBatchSize, "targets per claim; bounds the duplicates a crash can cause")
	fs.DurationVar(&f.claimTTL, "claim-ttl", outreach.DefaultClaimTTL, "age at which a dead runner's claim is taken over")
	fs.DurationVar(&f.flushEvery, "flush-every", outreach.DefaultFlushEvery, "how often outcomes are recorded while a batch is sent")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: retention-operator outreach --run UID [--shard N] [flags]\n\n"+
			"Sends one shard of a campaign run (the entrypoint of an outreach Job's pods).\n\nflags:\n")
		fs.PrintDefaults()
	}
	if help, err := cliflag.Parse(fs, args); help || err != nil {
		return err
	}
	if f.run == "" {
		return cliflag.Usagef("--run is required")
	}
	if f.shard < 0 {
		idx := getenv("JOB_COMPLETION_INDEX")
		n, err := strconv.Atoi(idx)
		if err != nil || n < 0 {
			return cliflag.Usagef("no --shard and no valid $JOB_COMPLETION_INDEX (%q)", idx)
		}
		f.shard = n
	}
	if f.storeURL == "" {
		f.storeURL = getenv(campaign.EnvStore)
	}
	if f.storeURL == "" {
		return cliflag.Usagef("no --store and $%s is empty", campaign.EnvStore)
	}
	// Only the operator migrates; a runner needs the schema it was built for.
	st, err := store.Open(ctx, f.storeURL, store.Options{NoMigrate: true})
	if err != nil {
		return fmt.Errorf("opening the store: %w", err)
	}
	defer st.Close()
	cfg, err := runnerConfig(ctx, st, f, getenv)
	if err != nil {
		return err
	}
	defer cfg.Sender.Close()
	cfg.Log = log
	log.Info("sending", "shard", f.shard, "batchSize", cfg.BatchSize, "concurrency", cfg.Sender.Concurrency())
	start := time.Now()
	stats, err := outreach.Run(ctx, cfg)
	log.Info("stopped", "shard", f.shard, "seconds", time.Since(start).Seconds(),
		"claimed", stats.Claimed, "sent", stats.Sent, "failed", stats.Failed, "retried", stats.Retried,
		"optedOut", stats.OptedOut, "takenOver", stats.TakenOver, "batches", stats.Batches, "stoppedBySignal", errors.Is(err, context.Canceled))
	return err
}

// runnerConfig reads the run and builds what sends it.
func runnerConfig(ctx context.Context, st store.Store, f outreachFlags, getenv outreach.Getenv) (outreach.Config, error) {
	run, err := st.RunGet(ctx, f.run)
	if err != nil {
		return outreach.Config{}, fmt.Errorf("reading run %s: %w", f.run, err)
	}
	if run.DryRun {
		return outreach.Config{}, fmt.Errorf("%w: run %s is a dry run: nothing is sent", outreach.ErrConfig, f.run)
	}
	var settings campaign.RunSettings
	if err := json.Unmarshal(run.Settings, &settings); err != nil {
		return outreach.Config{}, fmt.Errorf("%w: run %s settings: %v", outreach.ErrConfig, f.run, err)
	}
	msg, err := campaign.CompileMessage(settings.Message)
	if err != nil {
		return outreach.Config{}, fmt.Errorf("%w: run %s message: %v", outreach.ErrConfig, f.run, err)
	}
	snd, err := outreach.NewSender(settings.Channel, getenv)
	if err != nil {
		return outreach.Config{}, err
	}
	links, err := outreach.UnsubscribeLinks(settings, run.Channel, getenv)
	if err != nil {
		snd.Close()
		return outreach.Config{}, err
	}
	limiter := shardLimiter(settings)
	batch := f.batch
	if limiter != nil {
		// A batch lasts at most about two seconds at the limited rate, so
		// a graceful stop (which finishes the batch) fits in the pod's
		// termination grace period.
		batch = min(batch, max(1, 2*int(limiter.Limit())))
	}
	return outreach.Config{
		Store: st, Run: run, Shard: int32(f.shard), Message: msg, Sender: snd,
		BatchSize: batch, FlushEvery: f.flushEvery, ClaimTTL: f.claimTTL,
		Limiter:     limiter,
		MaxAttempts: int(settings.Channel.MaxAttempts), Backoff: settings.Channel.Backoff,
		Unsubscribe: links,
	}, nil
}

// shardLimiter is this shard's share of the channel's rate limit: the
// rate and burst split evenly across the run's shards (each at least one
// message a second), since shards run at once and do not coordinate.
// Other runs on the same channel are not counted: the limit is per run.
func shardLimiter(s campaign.RunSettings) *rate.Limiter {
	perSecond := s.Channel.RatePerSecond
	if perSecond <= 0 {
		return nil
	}
	shards := max(s.Shards, 1)
	burst := s.Channel.Burst
	if burst <= 0 {
		burst = perSecond
	}
	return rate.NewLimiter(rate.Limit(max(float64(perSecond)/float64(shards), 1)), int(max(burst/shards, 1)))
}
