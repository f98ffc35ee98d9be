package outreachcmd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retention-dev/retention-operator/internal/pgtest"
	"github.com/retention-dev/retention-operator/internal/store"
)

// countingSink is the benchmark's webhook receiver, run as its own
// process so its CPU time is measured apart from the runner's: it
// answers 204 to every POST (reading the body, checking nothing), prints
// its address, and on stdin's end prints how many requests it answered.
func countingSink(stdin io.Reader, stdout io.Writer) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var n atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		n.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(ln) }()
	fmt.Fprintln(stdout, "http://"+ln.Addr().String())
	_, _ = io.Copy(io.Discard, stdin)
	fmt.Fprintln(stdout, n.Load())
	return 0
}

// watchHWM follows a process's peak RSS (VmHWM, in KiB) until it exits.
// Not the rusage of wait4: a child's ru_maxrss starts from its parent's
// RSS at fork, which here is the benchmark's own.
func watchHWM(pid int) *atomic.Int64 {
	var hwm atomic.Int64
	go func() {
		for {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					var kb int64
					if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb); err == nil && kb > 0 {
						hwm.Store(kb)
					}
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return &hwm
}

// BenchmarkOutreach100k sends 100,000 signed webhook messages through one
// runner process (`outreach`, rate limit off, batch 1000) to a local sink
// process, with the bookkeeping in PostgreSQL or SQLite. Reported:
// messages/s, the runner's and the sink's CPU seconds, the runner's peak
// RSS.
//
//	go test -run '^$' -bench Outreach100k -benchtime 1x -count 3 ./internal/outreachcmd/
func BenchmarkOutreach100k(b *testing.B) {
	const targets = 100_000
	b.Run("postgres", func(b *testing.B) { benchOutreach(b, pgtest.Start(b), targets) })
	b.Run("sqlite", func(b *testing.B) {
		benchOutreach(b, "sqlite://"+filepath.Join(b.TempDir(), "bench.db"), targets)
	})
}

func benchOutreach(b *testing.B, dsn string, targets int) {
	ctx := context.Background()
	bin := filepath.Join(b.TempDir(), "retention-outreach")
	if out, err := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin,
		"github.com/retention-dev/retention-operator/cmd/retention-outreach").CombinedOutput(); err != nil {
		b.Fatalf("building the runner: %v\n%s", err, out)
	}
	b.Setenv("RETENTION_BENCH_BINARY", bin)
	st, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	key := signingKey(b)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		sink := exec.Command(os.Args[0])
		sink.Env = append(os.Environ(), "RETENTION_CLI_RUN=sink")
		stdin, _ := sink.StdinPipe()
		stdout, _ := sink.StdoutPipe()
		if err := sink.Start(); err != nil {
			b.Fatal(err)
		}
		lines := bufio.NewScanner(stdout)
		lines.Scan()
		url := lines.Text()
		run := fmt.Sprintf("bench-%d-%d", i, time.Now().UnixNano())
		webhookRun(b, ctx, st, run, url, targets)
		b.StartTimer()
		start := time.Now()
		runner, stderr := startRunner(b, dsn, key, "--run", run, "--shard", "0", "--batch-size", "1000")
		hwm := watchHWM(runner.Process.Pid)
		if err := runner.Wait(); err != nil {
			b.Fatalf("runner: %v\n%s", err, stderr)
		}
		wall := time.Since(start)
		b.StopTimer()
		stdin.Close()
		lines.Scan()
		got := strings.TrimSpace(lines.Text())
		_ = sink.Wait()
		if got != fmt.Sprint(targets) {
			b.Fatalf("the sink answered %s requests, want %d", got, targets)
		}
		b.ReportMetric(float64(targets)/wall.Seconds(), "msgs/s")
		b.ReportMetric((runner.ProcessState.UserTime() + runner.ProcessState.SystemTime()).Seconds(), "runner-cpu-s")
		b.ReportMetric((sink.ProcessState.UserTime() + sink.ProcessState.SystemTime()).Seconds(), "sink-cpu-s")
		b.ReportMetric(float64(hwm.Load())/1024, "runner-MiB")
	}
}
