package outreachcmd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/retention-dev/retention-operator/internal/campaign"
	"github.com/retention-dev/retention-operator/internal/pgtest"
	"github.com/retention-dev/retention-operator/internal/store"
)

// sink is a webhook receiver: it verifies every request's Standard
// Webhooks signature with the project's own Go library (an
// implementation independent of ours) and counts deliveries per
// idempotency key, noting in which runner life each key was first seen.
type sink struct {
	verifier *standardwebhooks.Webhook
	life     atomic.Int64

	mu        sync.Mutex
	seen      map[string]int
	firstLife map[string]int64
	sameLife  int // a key delivered twice by one runner process: a bug
	badSig    int
	total     int
}

func newSink(t *testing.T, key string) *sink {
	t.Helper()
	v, err := standardwebhooks.NewWebhook(key)
	if err != nil {
		t.Fatal(err)
	}
	return &sink{verifier: v, seen: map[string]int{}, firstLife: map[string]int64{}}
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	key := r.Header.Get("webhook-id")
	life := s.life.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.verifier.Verify(body, r.Header) != nil || r.Header.Get("Idempotency-Key") != key {
		s.badSig++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.total++
	s.seen[key]++
	if s.seen[key] == 1 {
		s.firstLife[key] = life
	} else if s.firstLife[key] == life {
		s.sameLife++
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *sink) deliveries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// signingKey returns a fresh Standard Webhooks key ("whsec_…").
func signingKey(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// webhookRun creates a run of n pending targets in one shard, sending to
// url, signed.
func webhookRun(t testing.TB, ctx context.Context, st store.Store, id, url string, n int) {
	t.Helper()
	settings := campaign.RunSettings{
		Message: campaign.Message{Subject: "Hi", Body: "Come back, {{.Attributes.name}}"},
		Fields:  []string{campaign.KeyAttributes},
		Channel: campaign.ChannelSettings{Type: campaign.ChannelWebhook, URL: url, Signed: true, Timeout: 10 * time.Second, MaxAttempts: 3, Backoff: 100 * time.Millisecond},
		Shards:  1,
	}
	if _, err := st.RunCreate(ctx, &store.RunCreateParams{RunID: id, Campaign: "ns/winback", CampaignUID: "uid-" + id,
		Channel: "ns/hook", Shards: 1, Settings: settings}); err != nil {
		t.Fatal(err)
	}
	const chunk = 10_000
	for from := 0; from < n; from += chunk {
		var ts []store.NewTarget
		for i := from; i < min(from+chunk, n); i++ {
			ts = append(ts, store.NewTarget{CustomerID: fmt.Sprintf("cust/%06d", i),
				Data: store.TargetData{Fields: map[string]any{"Attributes": map[string]any{"name": "Ann"}}}})
		}
		if _, err := st.TargetInsert(ctx, &store.TargetInsertParams{RunID: id, Targets: ts}); err != nil {
			t.Fatal(err)
		}
	}
}

// startRunner starts `outreach` as a child process (this test binary,
// dispatched by TestMain).
func startRunner(t testing.TB, dsn, key string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	// RETENTION_BENCH_BINARY runs that binary (the benchmark builds
	// cmd/retention-outreach: its RSS is what a pod shows) instead of this
	// test binary.
	bin := os.Args[0]
	if b := os.Getenv("RETENTION_BENCH_BINARY"); b != "" {
		bin = b
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "RETENTION_CLI_RUN=outreach", campaign.EnvStore+"="+dsn, campaign.EnvSigningKey+"="+key)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if os.Getenv("RETENTION_BENCH_RUNNER_STDERR") != "" {
		cmd.Stderr = io.MultiWriter(&stderr, os.Stderr)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &stderr
}

// TestOutreachCrash SIGKILLs runner processes at random moments mid-shard
// and starts them again: every target ends sent exactly once in the
// store, the sink saw every key, every duplicate came from a later
// process than the key's first delivery (a resend after a crash, with the
// same key), and the duplicates per kill stay within one claim batch.
func TestOutreachCrash(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Start(t)
	st, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key := signingKey(t)
	snk := newSink(t, key)
	srv := httptest.NewServer(snk)
	defer srv.Close()

	const targets = 20_000
	const killsPerSize = 5
	for _, batch := range []int{100, 1000} {
		t.Run(fmt.Sprint("batch", batch), func(t *testing.T) {
			run := fmt.Sprintf("crash-%d", batch)
			webhookRun(t, ctx, st, run, srv.URL, targets)
			before := snk.deliveries()
			args := []string{"--run", run, "--shard", "0", "--batch-size", fmt.Sprint(batch), "--claim-ttl", "300ms"}
			kills := 0
			for life := 0; ; life++ {
				snk.life.Add(1)
				cmd, stderr := startRunner(t, dsn, key, args...)
				exited := make(chan error, 1)
				go func() { exited <- cmd.Wait() }()
				if kills < killsPerSize {
					// Kill after a random number of deliveries in this life.
					at := snk.deliveries() + 200 + mrand.IntN(3*batch+2000)
					killed := false
					for !killed {
						select {
						case err := <-exited:
							t.Fatalf("runner exited before the kill: %v\n%s", err, stderr)
						case <-time.After(time.Millisecond):
							if snk.deliveries() >= at {
								_ = cmd.Process.Signal(syscall.SIGKILL)
								<-exited
								killed = true
							}
						}
					}
					kills++
					// Let the dead process's last requests drain before
					// the next life starts.
					time.Sleep(50 * time.Millisecond)
					continue
				}
				select {
				case err := <-exited:
					if err != nil {
						t.Fatalf("last runner: %v\n%s", err, stderr)
					}
				case <-time.After(2 * time.Minute):
					_ = cmd.Process.Kill()
					t.Fatalf("last runner did not finish\n%s", stderr)
				}
				break
			}
			tally, err := st.RunTally(ctx, run)
			if err != nil {
				t.Fatal(err)
			}
			if got := tally.Groups[store.GroupTreatment].ByState[store.StateSent]; got != targets {
				t.Errorf("sent in the store: %d, want %d (%+v)", got, targets, tally.Groups[store.GroupTreatment])
			}
			snk.mu.Lock()
			defer snk.mu.Unlock()
			unique := 0
			for k := range snk.seen {
				if strings.HasPrefix(k, run+"/") {
					unique++
				}
			}
			dups := snk.total - before - unique
			if unique != targets {
				t.Errorf("the sink saw %d keys, want %d", unique, targets)
			}
			if snk.sameLife != 0 || snk.badSig != 0 {
				t.Errorf("%d keys delivered twice by one process, %d bad signatures", snk.sameLife, snk.badSig)
			}
			if dups > kills*batch {
				t.Errorf("%d duplicates after %d kills, more than one batch (%d) each", dups, kills, batch)
			}
			t.Logf("batch %d: %d kills, %d duplicates (%.0f per kill, all resends with a seen key), none lost",
				batch, kills, dups, float64(dups)/float64(kills))
		})
	}
}

func TestOutreachExitCodes(t *testing.T) {
	dir := t.TempDir()
	sqlite := "sqlite://" + filepath.Join(dir, "s.db")
	st, err := store.Open(context.Background(), sqlite, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want int
	}{
		{"no run", nil, map[string]string{campaign.EnvStore: sqlite}, exitConfig},
		{"no shard", []string{"--run", "r"}, map[string]string{campaign.EnvStore: sqlite}, exitConfig},
		{"bad index", []string{"--run", "r"}, map[string]string{campaign.EnvStore: sqlite, "JOB_COMPLETION_INDEX": "x"}, exitConfig},
		{"no store", []string{"--run", "r", "--shard", "0"}, nil, exitConfig},
		{"unknown run", []string{"--run", "r"}, map[string]string{campaign.EnvStore: sqlite, "JOB_COMPLETION_INDEX": "0"}, exitConfig},
		{"store down", []string{"--run", "r", "--shard", "0"}, map[string]string{campaign.EnvStore: "postgres://u@127.0.0.1:1/db?connect_timeout=2"}, exitRetryable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], tc.args...)
			cmd.Env = []string{"RETENTION_CLI_RUN=outreach", "HOME=" + dir}
			for k, v := range tc.env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			out, _ := cmd.CombinedOutput()
			if got := cmd.ProcessState.ExitCode(); got != tc.want {
				t.Errorf("exit %d, want %d\n%s", got, tc.want, out)
			}
		})
	}
}
