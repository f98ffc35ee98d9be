package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/pgtest"
	"github.com/retention-dev/retention-operator/internal/store"
	_ "github.com/retention-dev/retention-operator/internal/store/postgres" // the operator's store in this tier
	"github.com/retention-dev/retention-operator/test/localcluster"
	"github.com/retention-dev/retention-operator/test/promcheck"
	"github.com/retention-dev/retention-operator/test/sinks"
)

// runnerCommand is the outreach runner's path in the operator's image
// (controllers.RunnerCommand); the harness maps it to the binary it built.
const runnerCommand = "/retention-outreach"

// world is everything the end-to-end story runs on: a local cluster (real
// kube-apiserver, Job controller, scheduler, kwok nodes) whose pods the
// harness runs as local processes, PostgreSQL (the operator's store and the
// CRM a source reads), the receivers messages go to, a file server with the
// shop's CSV export, the operator as a process, and a Prometheus scraping it.
type world struct {
	root, dir  string
	kubeconfig string
	kubectl    string
	cluster    *localcluster.Cluster
	k8s        client.Client
	clientset  kubernetes.Interface
	store      store.Store
	// pg is the PostgreSQL server of the store and the CRM (Down and Up
	// make an outage).
	pg         *pgtest.Server
	storeDSN   string
	crmDSN     string
	webhook    *sinks.Webhook
	webhookURL string
	smtp       *sinks.SMTP
	files      *fileServer
	prom       *promcheck.Prometheus
	// metricsAddr and unsubscribeAddr are the operator's endpoints.
	metricsAddr, unsubscribeAddr string
	signingKey                   string
	operatorLog                  string
	bin                          binaries
	op                           *operator
	// operatorStarts counts the operator processes started, retries
	// after an exit during start-up included: a fault test reads it to
	// tell that the operator was never restarted.
	operatorStarts int
	// operatorArgs are flags the operator processes get after the
	// harness's own (a flag given again overrides it): a test's setting,
	// e.g. leader election.
	operatorArgs []string
	runner       *localcluster.PodRunner
}

// vars fills the manifests' ${...} placeholders.
func (w *world) vars() map[string]string {
	return map[string]string{
		"NAMESPACE":      namespace,
		"JOBS_NAMESPACE": jobsNamespace,
		"DATA_URL":       w.files.URL(),
		"CRM_DSN":        w.crmDSN,
		"SIGNING_KEY":    w.signingKey,
		"WEBHOOK_URL":    w.webhookURL,
		"SMTP_HOST":      w.smtp.Host(),
		"SMTP_PORT":      fmt.Sprint(w.smtp.Port()),
	}
}

const (
	namespace     = "shop"
	jobsNamespace = "retention-system"
	// signingKey is the webhook channel's Standard Webhooks key.
	signingKey = "whsec_ZTJlLXNpZ25pbmcta2V5LW9mLXRoZS1sb2NhbC1zaW5r"
)

// startWorld starts every part and stops them when the test ends. The
// outreach pods' runner gets runnerArgs before the pod's own arguments.
func startWorld(t *testing.T, runnerArgs ...string) *world {
	t.Helper()
	log.SetLogger(logr.Discard()) // envtest's own chatter; the components log to files
	ctx := context.Background()
	root, err := promcheck.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// The working directory (logs, data) is kept when the test fails.
	dir, err := os.MkdirTemp("", "retention-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			_ = os.RemoveAll(dir)
		}
	})
	w := &world{root: root, dir: dir, signingKey: signingKey}
	bin := buildBinaries(t, root, w.dir)

	// PostgreSQL: the operator's store and, in another database, the CRM.
	pg, err := pgtest.NewServer(nil)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	w.pg = pg
	w.storeDSN = pgtest.NewDatabase(t, pg)
	w.crmDSN = pg.DSN("crm")
	if err := pg.CreateDatabase(ctx, "crm"); err != nil {
		t.Fatal(err)
	}
	if w.store, err = store.Open(ctx, w.storeDSN, store.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.store.Close() })

	// Receivers.
	if w.webhook, err = sinks.NewWebhook(signingKey); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(w.webhook)
	t.Cleanup(hs.Close)
	w.webhookURL = hs.URL
	if w.smtp, err = sinks.StartSMTP("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.smtp.Close() })
	w.files = newFileServer(t)

	// The cluster, its pods run by the harness.
	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	w.cluster, err = localcluster.Start(cctx, localcluster.Options{
		CRDDir: filepath.Join(root, "config", "crd", "bases"), Nodes: 2, Dir: filepath.Join(w.dir, "cluster"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.cluster.Stop(); err != nil {
			t.Errorf("stopping the cluster: %v", err)
		}
	})
	w.kubeconfig = w.cluster.Kubeconfig
	w.kubectl = filepath.Join(localcluster.DefaultBinDir(), "kubectl")
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = retentionv1.AddToScheme(scheme)
	if w.k8s, err = client.New(w.cluster.Config, client.Options{Scheme: scheme}); err != nil {
		t.Fatal(err)
	}
	w.clientset = kubernetes.NewForConfigOrDie(w.cluster.Config)
	podLog, err := os.Create(filepath.Join(w.dir, "pods.log"))
	if err != nil {
		t.Fatal(err)
	}
	runner := &localcluster.PodRunner{
		Client:   w.clientset,
		Commands: map[string]string{runnerCommand: runnerWrapper(t, w.dir, bin.outreach, runnerArgs)},
		Selector: labels.SelectorFromSet(labels.Set{"app.kubernetes.io/managed-by": "retention-operator"}),
		Log:      podLog,
		Dir:      w.dir,
	}
	w.runner = runner
	rctx, stopRunner := context.WithCancel(ctx)
	runnerDone := make(chan error, 1)
	go func() { runnerDone <- runner.Run(rctx) }()
	t.Cleanup(func() {
		stopRunner()
		<-runnerDone
		_ = podLog.Close()
	})

	w.bin = bin
	w.startOperator(t)
	w.prom = promcheck.Start(t, promcheck.Options{
		Targets:   []promcheck.Target{{Address: w.metricsAddr, Job: "retention-operator"}},
		RuleFiles: []string{filepath.Join(root, promcheck.RulesFile)},
	})
	t.Cleanup(func() {
		if t.Failed() {
			w.dumpLogs(t)
		}
	})
	return w
}

type binaries struct{ operator, outreach string }

// runnerWrapper returns the runner binary, or with args a script that runs
// it with them first (a test's setting, e.g. a short --claim-ttl).
func runnerWrapper(t *testing.T, dir, runner string, args []string) string {
	t.Helper()
	if len(args) == 0 {
		return runner
	}
	path := filepath.Join(dir, "retention-outreach-wrapper")
	script := "#!/bin/sh\nexec " + runner + " " + strings.Join(args, " ") + ` "$@"` + "\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// buildBinaries builds the operator and the outreach runner from this tree,
// so the story runs what the commit holds.
func buildBinaries(t *testing.T, root, dir string) binaries {
	t.Helper()
	b := binaries{operator: filepath.Join(dir, "retention-operator"), outreach: filepath.Join(dir, "retention-outreach")}
	for out, pkg := range map[string]string{b.operator: ".", b.outreach: "./cmd/retention-outreach"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, msg)
		}
	}
	return b
}

// operator is the operator's running process.
type operator struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// startOperator runs `retention-operator manager` against the cluster with
// the PostgreSQL store, outreach Jobs in jobsNamespace whose pods the harness
// runs, and the one-click unsubscribe endpoint; its output is appended to
// operator.log. It returns once the metrics endpoint answers.
func (w *world) startOperator(t *testing.T) {
	t.Helper()
	if w.metricsAddr == "" {
		w.metricsAddr, w.unsubscribeAddr = freeAddr(t), freeAddr(t)
		w.operatorLog = filepath.Join(w.dir, "operator.log")
		t.Cleanup(func() { w.stopOperator(syscall.SIGTERM) })
	}
	keyFile := filepath.Join(w.dir, "unsubscribe.key") // the same key across restarts
	if err := os.WriteFile(keyFile, bytes.Repeat([]byte("e2e-unsubscribe-key-"), 3), 0o600); err != nil {
		t.Fatal(err)
	}
	// Like a Deployment's pod, an operator that exits while starting (e.g.
	// an informer that could not sync in time on a busy machine) is
	// started again, up to 3 times.
	var lastErr string
	for attempt := 1; attempt <= 3; attempt++ {
		if lastErr = w.startOperatorOnce(t, keyFile); lastErr == "" {
			return
		}
		t.Logf("the operator exited while starting (attempt %d), restarting it: %s", attempt, lastErr)
	}
	t.Fatalf("the operator did not start: %s", lastErr)
}

// startOperatorOnce starts the operator and waits for its metrics
// endpoint; it returns why it could not ("" once it answers).
func (w *world) startOperatorOnce(t *testing.T, keyFile string) string {
	t.Helper()
	logf, err := os.OpenFile(w.operatorLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(w.bin.operator, "manager",
		"--store", w.storeDSN,
		"--metrics-bind-address", w.metricsAddr,
		"--health-probe-bind-address", "127.0.0.1:0",
		"--jobs-namespace", jobsNamespace,
		"--jobs-local-processes",
		"--runner-image", "retention-operator:e2e",
		"--unsubscribe-url", "https://retention.example.com",
		"--unsubscribe-key-file", keyFile,
		"--unsubscribe-bind-address", w.unsubscribeAddr,
	)
	cmd.Args = append(cmd.Args, w.operatorArgs...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+w.kubeconfig)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.operatorStarts++
	op := &operator{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(op.exited) }()
	w.op = op
	// Ready once the metrics endpoint answers (a killed predecessor's port
	// may take a moment to free).
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get("http://" + w.metricsAddr + "/metrics")
		if err == nil {
			_ = resp.Body.Close()
			return ""
		}
		select {
		case <-op.exited:
			w.op = nil
			return tailFile(w.operatorLog, 3)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the operator's metrics endpoint did not answer: %v\n%s", err, tailFile(w.operatorLog, 30))
		}
	}
}

// stopOperator signals the operator (SIGKILL: a crash; SIGTERM: a
// shutdown, SIGKILL after 20 s) and waits until it has exited.
func (w *world) stopOperator(sig syscall.Signal) {
	op := w.op
	if op == nil {
		return
	}
	w.op = nil
	_ = op.cmd.Process.Signal(sig)
	select {
	case <-op.exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-op.cmd.Process.Pid, syscall.SIGKILL)
		<-op.exited
	}
}

// apply expands a manifest's ${...} placeholders and applies it with kubectl,
// as a user would.
func (w *world) apply(t *testing.T, file string) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	vars := w.vars()
	manifest := os.Expand(string(raw), func(k string) string {
		v, ok := vars[k]
		if !ok {
			t.Fatalf("%s: no value for ${%s}", file, k)
		}
		return v
	})
	w.run(t, strings.NewReader(manifest), "apply", "-f", "-")
}

// run runs kubectl and returns its standard output.
func (w *world) run(t *testing.T, stdin io.Reader, args ...string) string {
	t.Helper()
	cmd := exec.Command(w.kubectl, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+w.kubeconfig)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

func (w *world) dumpLogs(t *testing.T) {
	t.Logf("operator log (last lines):\n%s", tailFile(w.operatorLog, 60))
	t.Logf("pods log (last lines):\n%s", tailFile(filepath.Join(w.dir, "pods.log"), 30))
	t.Logf("logs kept in %s", w.dir)
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// fileServer serves the shop's CSV export over HTTP, as object storage
// would; Put replaces a file.
type fileServer struct {
	srv   *httptest.Server
	mu    sync.Mutex
	files map[string][]byte
}

func newFileServer(t *testing.T) *fileServer {
	f := &fileServer{files: map[string][]byte{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		b, ok := f.files[strings.TrimPrefix(r.URL.Path, "/")]
		f.mu.Unlock()
		if !ok {
			http.NotFound(rw, r)
			return
		}
		rw.Header().Set("Content-Type", "application/gzip")
		_, _ = rw.Write(b)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fileServer) URL() string { return f.srv.URL }

func (f *fileServer) Put(name string, b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[name] = b
}

// eventually retries check every half second until it returns nil or
// timeout passes, then fails the test with its last error.
func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
