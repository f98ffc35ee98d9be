// Command retention-operator runs customer-retention programs declared as
// Kubernetes objects. Subcommands:
//
//	manager   (default) the operator: reconcilers, metrics, health probes
//	score     scores a CSV offline, with the operator's scoring code
//	generate  writes synthetic customers and transactions
//	preview   evaluates a Segment manifest offline against a CSV
//	version   prints the version
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/controllers"
	"github.com/retention-dev/retention-operator/internal/cli"
	"github.com/retention-dev/retention-operator/internal/metrics"
	"github.com/retention-dev/retention-operator/internal/outreach/unsubscribe"
	"github.com/retention-dev/retention-operator/internal/outreachcmd"
	"github.com/retention-dev/retention-operator/internal/store"
	// The store drivers register their URL schemes.
	_ "github.com/retention-dev/retention-operator/internal/store/postgres"
	_ "github.com/retention-dev/retention-operator/internal/store/sqlite"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	cmd, args := "manager", os.Args[1:]
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "manager":
		os.Exit(runManager(args))
	case "score":
		os.Exit(cli.Score(args, os.Stdout, os.Stderr))
	case "generate":
		os.Exit(cli.Generate(args, os.Stdout, os.Stderr))
	case "preview":
		os.Exit(cli.Preview(args, os.Stdout, os.Stderr))
	case "outreach":
		os.Exit(outreachcmd.Main(args, os.Stderr))
	case "version":
		fmt.Println(version)
	case "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "retention-operator: unknown command %q\n\n", cmd)
		usage()
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: retention-operator [command] [flags]

commands:
  manager   run the operator (default)
  score     score a CSV offline and print the fitted models (score -h)
  generate  write synthetic customers and transactions (generate -h)
  preview   evaluate a Segment manifest offline against a CSV (preview -h)
  outreach  send one shard of a campaign run: an outreach Job's entrypoint (outreach -h)
  version   print the version
`)
}

// newScheme registers the kinds the operator reads and writes.
func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(retentionv1.AddToScheme(s))
	return s
}

// runManager runs the reconcilers until the process is signalled.
func runManager(args []string) int {
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	metricsAddr := fs.String("metrics-bind-address", ":8080", "address the Prometheus metrics endpoint binds to; \"0\" disables it")
	probeAddr := fs.String("health-probe-bind-address", ":8081", "address the health probes bind to")
	leaderElect := fs.Bool("leader-elect", false, "elect a leader so that only one replica reconciles at a time")
	leaderNamespace := fs.String("leader-election-namespace", "", "namespace of the leader-election Lease; empty: the pod's own namespace (required with --leader-elect out of a cluster)")
	leaseDuration := fs.Duration("leader-election-lease-duration", 15*time.Second, "how long a follower waits after the leader's last renewal before it takes the lease over")
	renewDeadline := fs.Duration("leader-election-renew-deadline", 10*time.Second, "how long the leader keeps retrying to renew the lease before it gives up (and exits); less than the lease duration")
	retryPeriod := fs.Duration("leader-election-retry-period", 2*time.Second, "how often the leader renews the lease and a follower tries to take it")
	storeURL := fs.String("store", envOr("RETENTION_STORE", "sqlite://retention.db"), "the data-plane store: sqlite://PATH (embedded, for local runs; a relative path is in the working directory) or postgres://USER:PASSWORD@HOST:PORT/DB; default $RETENTION_STORE, which a cluster sets from a Secret (config/manager) so the password is in no argument list")
	var runner controllers.RunnerConfig
	fs.StringVar(&runner.JobsNamespace, "jobs-namespace", operatorNamespace(), "namespace of the outreach Jobs and their credential Secrets (default: the operator's own, from $POD_NAMESPACE or the service account)")
	fs.StringVar(&runner.Image, "runner-image", envOr("RETENTION_RUNNER_IMAGE", "retention-operator:dev"), "image of the outreach Jobs' pods: the operator's own image")
	fs.StringVar(&runner.StoreSecretName, "store-secret", "retention-store", "Secret in the jobs namespace whose key --store-secret-key holds the store URL for the Jobs' pods")
	fs.StringVar(&runner.StoreSecretKey, "store-secret-key", "dsn", "key of --store-secret that holds the store URL")
	fs.BoolVar(&runner.LocalProcesses, "jobs-local-processes", false, "the Jobs' pods run as processes on this machine (the local harness and demo): give them the store URL as a literal, so they may share a SQLite file")
	unsubURL := fs.String("unsubscribe-url", "", "public https base URL of the one-click unsubscribe endpoint (RFC 8058), e.g. https://retention.example.com; empty puts no unsubscribe link in messages")
	unsubKeyFile := fs.String("unsubscribe-key-file", "", "file holding the key (at least 32 bytes) that signs unsubscribe tokens: mount it from a Secret; required with --unsubscribe-url")
	unsubAddr := fs.String("unsubscribe-bind-address", ":8082", "address the unsubscribe endpoint binds to; \"0\" disables it")
	localRunner := fs.String("jobs-local-runner", "", "path of a retention-outreach binary: run the outreach Jobs' pods as local processes with it and write the Jobs' status (a local control plane without kubelets or a Job controller: the demo); implies --jobs-local-processes")
	opts := zap.Options{Development: false}
	opts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")
	if err := checkLeaderElection(*leaseDuration, *renewDeadline, *retryPeriod); err != nil {
		log.Error(err, "checking the leader-election flags")
		return 2
	}

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 newScheme(),
		Metrics:                metricsserver.Options{BindAddress: *metricsAddr},
		HealthProbeBindAddress: *probeAddr,
		// Only the leader runs the controllers (the local Job runner
		// included); the metrics, the health probes and the unsubscribe
		// endpoint run on every replica.
		LeaderElection:          *leaderElect,
		LeaderElectionID:        "retention-operator.retention.dev",
		LeaderElectionNamespace: *leaderNamespace,
		LeaseDuration:           leaseDuration,
		RenewDeadline:           renewDeadline,
		RetryPeriod:             retryPeriod,
		// A leader that is shut down (SIGTERM) gives the lease up, so a
		// follower takes over at once rather than after the lease
		// duration: safe, as runManager returns as soon as the manager
		// has stopped, and nothing acts after that.
		LeaderElectionReleaseOnCancel: true,
		// What config/rbac allows: Jobs cached in the jobs namespace
		// only, Secrets never cached (get only).
		Cache:  controllers.CacheOptions(runner.JobsNamespace),
		Client: controllers.ClientOptions(),
	})
	if err != nil {
		log.Error(err, "creating manager")
		return 1
	}
	stores := controllers.NewStoreProvider(*storeURL, store.Options{})
	defer func() { _ = stores.Close() }()
	if _, err := stores.Get(context.Background()); err != nil {
		// Not fatal: the reconcilers report StoreUnavailable and retry.
		log.Error(err, "store not reachable yet", "store", store.Redact(*storeURL))
	}
	m, err := metrics.New(crmetrics.Registry)
	if err != nil {
		log.Error(err, "registering metrics")
		return 1
	}
	if *unsubURL != "" {
		key, err := os.ReadFile(*unsubKeyFile)
		if err == nil {
			_, err = unsubscribe.URLFunc(*unsubURL, key, "namespace/channel")
		}
		if err != nil {
			log.Error(err, "checking --unsubscribe-url and --unsubscribe-key-file")
			return 2
		}
		runner.UnsubscribeBaseURL, runner.UnsubscribeKey = *unsubURL, key
		if *unsubAddr != "0" {
			if err := mgr.Add(unsubscribeServer(*unsubAddr, key, stores, m)); err != nil {
				log.Error(err, "adding the unsubscribe endpoint")
				return 1
			}
		}
	}
	if *localRunner != "" {
		runner.LocalProcesses = true
		local := &controllers.LocalJobsReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Namespace: runner.JobsNamespace, Binary: *localRunner}
		if err := local.SetupWithManager(mgr); err != nil {
			log.Error(err, "setting up the local Job runner")
			return 1
		}
	}
	if err := controllers.SetupReconcilers(mgr, stores, m, runner); err != nil {
		log.Error(err, "setting up reconcilers")
		return 1
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "adding health check")
		return 1
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "adding ready check")
		return 1
	}
	log.Info("starting manager", "version", version)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "running manager")
		return 1
	}
	return 0
}

// checkLeaderElection refuses lease timings client-go's leader elector
// would refuse only once the manager starts: the lease must outlast the
// leader's renew deadline, which must outlast a retry (with its jitter).
func checkLeaderElection(lease, renew, retry time.Duration) error {
	switch {
	case lease <= 0 || renew <= 0 || retry <= 0:
		return fmt.Errorf("the lease duration (%s), renew deadline (%s) and retry period (%s) must be positive", lease, renew, retry)
	case lease <= renew:
		return fmt.Errorf("the lease duration (%s) must be longer than the renew deadline (%s)", lease, renew)
	case float64(renew) <= 1.2*float64(retry):
		return fmt.Errorf("the renew deadline (%s) must be longer than 1.2 times the retry period (%s)", renew, retry)
	}
	return nil
}

// unsubscribeServer serves the one-click unsubscribe endpoint on every
// replica (it is not leader-only: opt-outs go straight to the store).
func unsubscribeServer(addr string, key []byte, stores *controllers.StoreProvider, m *metrics.Metrics) manager.Runnable {
	h := unsubscribe.Handler(unsubscribe.HandlerConfig{
		Key:     key,
		OptOuts: storeOptOuts{stores},
		OnOptOut: func(channel string) {
			ns, name, _ := strings.Cut(channel, "/")
			m.ChannelOptOutsTotal.WithLabelValues(ns, name).Inc()
		},
		OnRateLimited: func(scope string) {
			m.UnsubscribeRateLimitedTotal.WithLabelValues(scope).Inc()
		},
		Log: ctrl.Log.WithName("unsubscribe"),
	})
	mux := http.NewServeMux()
	mux.Handle(unsubscribe.PathPrefix, h)
	return &manager.Server{Name: "unsubscribe", Server: &http.Server{Addr: addr, Handler: mux,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}}
}

// storeOptOuts records opt-outs in the operator's store, reached when a
// request comes (the store may be down at start-up).
type storeOptOuts struct{ stores *controllers.StoreProvider }

func (s storeOptOuts) OptOutAdd(ctx context.Context, p *store.OptOutAddParams) error {
	st, err := s.stores.Get(ctx)
	if err != nil {
		return err
	}
	return st.OptOutAdd(ctx, p)
}

// operatorNamespace is the namespace the operator runs in: $POD_NAMESPACE
// (the Deployment sets it from the downward API), else the service
// account's namespace file, else "default" (a local run).
func operatorNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b))
	}
	return "default"
}

// envOr returns the environment variable, or def when it is unset.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
