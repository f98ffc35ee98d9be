package controllers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/clock"
	"github.com/retention-dev/retention-operator/internal/metrics"
	"github.com/retention-dev/retention-operator/internal/store"
	_ "github.com/retention-dev/retention-operator/internal/store/postgres"
	_ "github.com/retention-dev/retention-operator/internal/store/sqlite"
)

// The envtest suite runs the reconcilers in one manager against a real
// etcd and kube-apiserver (KUBEBUILDER_ASSETS, installed by `make tools`).
// manualLabel marks objects that the suite's manager does not see.
const manualLabel = "retention.dev/test-manual"

var (
	// suiteStores is the SQLite store of the suite's manager.
	suiteStores *StoreProvider
	testScheme  = runtime.NewScheme()
	k8sClient   client.Client
	restConfig  *rest.Config
	// suiteClock drives the suite's Campaign and CampaignRun reconcilers:
	// it starts at the real time and tests move it forward (a conversion
	// window's end, a schedule's next slot).
	suiteClock = clock.NewFake(time.Now())
	// suiteMetrics are the reconcilers' metrics, on a registry of their
	// own (suiteRegistry), beside controller-runtime's global one.
	suiteMetrics  *metrics.Metrics
	suiteRegistry *prometheus.Registry
)

// suiteJobsNamespace is where the suite's runs make their Jobs.
const suiteJobsNamespace = "retention-jobs"

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run the tests with `make test` (which installs etcd and kube-apiserver with `make tools`)")
		return 1
	}
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true), zap.Level(zapLevel())))
	utilruntime.Must(clientgoscheme.AddToScheme(testScheme))
	utilruntime.Must(retentionv1.AddToScheme(testScheme))

	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting envtest: %v\n", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	restConfig = cfg

	// Objects labelled manualLabel are invisible to the suite's manager, so
	// a test can drive a reconciler by hand (with its own clock) on them.
	manual, err := labels.Parse(manualLabel + " notin (true)")
	if err != nil {
		fmt.Fprintf(os.Stderr, "label selector: %v\n", err)
		return 1
	}
	storeDir, err := os.MkdirTemp("", "retention-envtest-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "temp dir: %v\n", err)
		return 1
	}
	defer os.RemoveAll(storeDir)
	suiteStores = NewStoreProvider("sqlite://"+filepath.Join(storeDir, "store.db"), store.Options{})
	suiteStores.open = func(ctx context.Context, url string, opts store.Options) (store.Store, error) {
		s, err := store.Open(ctx, url, opts)
		if err != nil {
			return nil, err
		}
		return &scanCountingStore{Store: s, scans: &suiteScans}, nil
	}
	// The outreach runner the local Job runner starts for each index, as
	// a pod would run it.
	suiteRunnerBinary = filepath.Join(storeDir, "retention-outreach")
	if out, err := exec.Command("go", "build", "-o", suiteRunnerBinary, "../cmd/retention-outreach").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the outreach runner: %v\n%s", err, out)
		return 1
	}
	defer func() { _ = suiteStores.Close() }()

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 testScheme,
		Cache:                  cache.Options{DefaultLabelSelector: manual},
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "creating manager: %v\n", err)
		return 1
	}
	if err := setupTestReconcilers(mgr); err != nil {
		fmt.Fprintf(os.Stderr, "setting up reconcilers: %v\n", err)
		return 1
	}
	k8sClient, err = client.New(cfg, client.Options{Scheme: testScheme})
	if err != nil {
		fmt.Fprintf(os.Stderr, "creating client: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "manager: %v\n", err)
		}
	}()
	if err := k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: suiteJobsNamespace}}); err != nil {
		fmt.Fprintf(os.Stderr, "creating the jobs namespace: %v\n", err)
		cancel()
		<-done
		return 1
	}
	code := m.Run()
	cancel()
	<-done
	return code
}

func zapLevel() zapcore.Level {
	if os.Getenv("TEST_VERBOSE_LOGS") != "" {
		return -2
	}
	return 1 // warnings and errors only
}

// setupTestReconcilers registers the reconcilers as main.go does, with a
// short retry so missing dependencies that no watch reports are retried fast.
func setupTestReconcilers(mgr ctrl.Manager) error {
	rec := mgr.GetEventRecorder("retention-operator")
	suiteRegistry = prometheus.NewRegistry()
	m, err := metrics.New(suiteRegistry)
	if err != nil {
		return err
	}
	suiteMetrics = m
	retry := 2 * time.Second
	for _, s := range []interface{ SetupWithManager(ctrl.Manager) error }{
		&CustomerSourceReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: rec, RetryAfter: retry, Stores: suiteStores, Metrics: suiteMetrics},
		&ChannelReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: rec, RetryAfter: retry, Metrics: suiteMetrics},
		&SegmentReconciler{Client: mgr.GetClient(), Recorder: rec, RetryAfter: retry, Stores: suiteStores, Metrics: suiteMetrics},
		&CampaignReconciler{Client: mgr.GetClient(), Recorder: rec, RetryAfter: retry, Clock: suiteClock, Stores: suiteStores, Metrics: suiteMetrics},
		&CampaignRunReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: rec, RetryAfter: retry,
			Clock: suiteClock, Stores: suiteStores, Runner: suiteRunner, Metrics: suiteMetrics},
		&CustomerErasureReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: rec, RetryAfter: retry, Stores: suiteStores},
	} {
		if err := s.SetupWithManager(mgr); err != nil {
			return err
		}
	}
	return nil
}

// suiteRunner is how the suite's runs make Jobs: the harness would run the
// pods' commands on this machine, so they may share the SQLite store.
var suiteRunner = RunnerConfig{Image: "retention-operator:test", JobsNamespace: suiteJobsNamespace, LocalProcesses: true,
	UnsubscribeBaseURL: "https://retention.test", UnsubscribeKey: []byte("unsubscribe-key-of-the-test-suite-32+bytes")}

// suiteRunnerBinary is the retention-outreach binary built for the suite.
var suiteRunnerBinary string

// newNamespace creates a namespace of its own for one test.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"}}
	if err := k8sClient.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}

// eventually retries check until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s: %v", timeout, err)
}
