// Package localcluster runs a local Kubernetes cluster from the binaries
// `make tools` installs, with no container runtime: etcd and kube-apiserver
// (through controller-runtime's envtest, which also makes the certificates),
// kube-controller-manager with the Job, garbage-collector, TTL-after-finished
// and namespace controllers, kube-scheduler, and kwok, which plays the
// kubelets of fake nodes. Pods on those nodes run nothing until a PodRunner
// runs their command as a local process and reports its exit code, so the
// real Job controller counts completions, retries indexes and applies pod
// failure policies.
//
// Every port is chosen at random, so several clusters can run side by side
// in one process (parallel tests).
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Labels and annotations of the nodes the cluster makes.
const (
	NodeLabelKey      = "type"
	NodeLabelValue    = "kwok"
	NodeAnnotationKey = "kwok.x-k8s.io/node"
)

// Controllers are the kube-controller-manager controllers the cluster runs.
var Controllers = []string{"job-controller", "garbage-collector-controller", "ttl-after-finished-controller", "namespace-controller"}

// Options configure Start.
type Options struct {
	// CRDDir is a directory of CRDs to install before Start returns; optional.
	CRDDir string
	// Nodes is how many fake (kwok) nodes to make; default 1.
	Nodes int
	// Dir is the working directory for the kubeconfig, the kwok config,
	// the components' data and logs. Default: a temporary directory, removed
	// by Stop. A given Dir is kept (its etcd and apiserver subdirectories are
	// made afresh).
	Dir string
	// Log, if set, also receives every component's output, each line
	// prefixed with the component's name. The log files in Dir are always
	// written.
	Log io.Writer
	// BinDir is the directory with etcd, kube-apiserver,
	// kube-controller-manager, kube-scheduler and kwok. Default:
	// $KUBEBUILDER_ASSETS, else hack/tools.sh's cache
	// ($RETENTION_TOOLS_DIR or ${XDG_CACHE_HOME:-~/.cache}/retention-operator/tools, + /bin).
	BinDir string
	// ControlPlaneOnly starts etcd and kube-apiserver only (no controllers,
	// scheduler, kwok or nodes): what the demo runs the operator's local Job
	// runner against.
	ControlPlaneOnly bool
	// StartTimeout bounds Start (each wait within it); default 90s.
	StartTimeout time.Duration
}

// Cluster is a running local cluster.
type Cluster struct {
	// Kubeconfig is the path of an admin (system:masters) kubeconfig.
	Kubeconfig string
	// Config is the same admin identity as a rest.Config.
	Config *rest.Config
	// Dir is the working directory (logs are Dir/*.log).
	Dir string
	// NodeNames are the fake nodes, all Ready when Start returned.
	NodeNames []string

	env       *envtest.Environment
	envPids   []int
	procs     []*process
	removeDir bool
	stopOnce  sync.Once
	stopErr   error
}

// DefaultBinDir is where Start looks for the binaries when Options.BinDir is
// empty.
func DefaultBinDir() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	tools := os.Getenv("RETENTION_TOOLS_DIR")
	if tools == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache")
		}
		tools = filepath.Join(cache, "retention-operator", "tools")
	}
	return filepath.Join(tools, "bin")
}

// Start starts a cluster and returns once every component runs and every
// node is Ready. On error, whatever was started has been stopped.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Nodes <= 0 {
		opts.Nodes = 1
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 90 * time.Second
	}
	if opts.BinDir == "" {
		opts.BinDir = DefaultBinDir()
	}
	bins := []string{"etcd", "kube-apiserver"}
	if !opts.ControlPlaneOnly {
		bins = append(bins, "kube-controller-manager", "kube-scheduler", "kwok")
	}
	for _, b := range bins {
		if _, err := os.Stat(filepath.Join(opts.BinDir, b)); err != nil {
			return nil, fmt.Errorf("%s is missing from %s (run `make tools`, and set KUBEBUILDER_ASSETS to $(hack/tools.sh dir)/bin): %w", b, opts.BinDir, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()

	c := &Cluster{Dir: opts.Dir}
	if c.Dir == "" {
		d, err := os.MkdirTemp("", "localcluster-")
		if err != nil {
			return nil, err
		}
		c.Dir, c.removeDir = d, true
	} else if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := c.start(ctx, opts); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) logPath(name string) string { return filepath.Join(c.Dir, name+".log") }

func (c *Cluster) logWriter(name string, extra io.Writer) (io.Writer, error) {
	f, err := os.OpenFile(c.logPath(name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	// Left open: envtest writes until Stop; closed with the process.
	if extra != nil {
		return io.MultiWriter(f, &prefixWriter{prefix: name + ": ", w: extra}), nil
	}
	return f, nil
}

func (c *Cluster) start(ctx context.Context, opts Options) error {
	etcdDir, apiDir := filepath.Join(c.Dir, "etcd"), filepath.Join(c.Dir, "apiserver")
	for _, d := range []string{etcdDir, apiDir} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	etcdLog, err := c.logWriter("etcd", opts.Log)
	if err != nil {
		return err
	}
	apiLog, err := c.logWriter("kube-apiserver", opts.Log)
	if err != nil {
		return err
	}
	timeout := opts.StartTimeout
	c.env = &envtest.Environment{
		BinaryAssetsDirectory:    opts.BinDir,
		ControlPlaneStartTimeout: timeout,
		ControlPlaneStopTimeout:  stopGrace,
	}
	c.env.ControlPlane.Etcd = &envtest.Etcd{DataDir: etcdDir, Out: etcdLog, Err: etcdLog, StartTimeout: timeout, StopTimeout: stopGrace}
	c.env.ControlPlane.APIServer = &envtest.APIServer{CertDir: apiDir, Out: apiLog, Err: apiLog, StartTimeout: timeout, StopTimeout: stopGrace}
	if opts.CRDDir != "" {
		c.env.CRDDirectoryPaths = []string{opts.CRDDir}
		c.env.ErrorIfCRDPathMissing = true
	}
	_, err = c.env.Start()
	c.envPids = childPids(etcdDir, apiDir)
	if err != nil {
		return fmt.Errorf("starting etcd and kube-apiserver: %w\n--- etcd.log (tail) ---\n%s\n--- kube-apiserver.log (tail) ---\n%s",
			err, tail(c.logPath("etcd"), 20), tail(c.logPath("kube-apiserver"), 30))
	}

	user, err := c.env.ControlPlane.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("adding the admin user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("making the kubeconfig: %w", err)
	}
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kc, 0o600); err != nil {
		return err
	}
	c.Config = user.Config()
	c.Config.QPS, c.Config.Burst = 100, 200
	if opts.ControlPlaneOnly {
		return nil
	}

	kwokConfig := filepath.Join(c.Dir, "kwok.yaml")
	if err := os.WriteFile(kwokConfig, []byte(kwokStages), 0o600); err != nil {
		return err
	}
	kwokPort, err := freePort()
	if err != nil {
		return err
	}
	components := []struct {
		name string
		args []string
	}{
		{"kube-controller-manager", []string{
			"--kubeconfig=" + c.Kubeconfig,
			"--controllers=" + strings.Join(Controllers, ","),
			"--leader-elect=false",
			"--secure-port=0",
			"--use-service-account-credentials=false",
			"--kube-api-qps=100", "--kube-api-burst=200",
		}},
		{"kube-scheduler", []string{
			"--kubeconfig=" + c.Kubeconfig,
			"--leader-elect=false",
			"--secure-port=0",
		}},
		{"kwok", []string{
			"--kubeconfig=" + c.Kubeconfig,
			"--manage-nodes-with-label-selector=" + NodeLabelKey + "=" + NodeLabelValue,
			"--server-address=127.0.0.1:" + strconv.Itoa(kwokPort),
			"--config=" + kwokConfig,
		}},
	}
	for _, comp := range components {
		p, err := startProcess(comp.name, filepath.Join(opts.BinDir, comp.name), comp.args, c.logPath(comp.name), opts.Log)
		if err != nil {
			return err
		}
		c.procs = append(c.procs, p)
	}

	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	for i := 0; i < opts.Nodes; i++ {
		name := fmt.Sprintf("kwok-node-%d", i)
		if _, err := cs.CoreV1().Nodes().Create(ctx, fakeNode(name), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating node %s: %w", name, err)
		}
		c.NodeNames = append(c.NodeNames, name)
	}
	if err := c.waitNodesReady(ctx, cs); err != nil {
		return err
	}
	return c.checkAlive()
}

// Alive reports, with its log, a component (kube-controller-manager,
// kube-scheduler, kwok) that has exited.
func (c *Cluster) Alive() error { return c.checkAlive() }

// checkAlive fails, with the component's log, if a component has exited.
func (c *Cluster) checkAlive() error {
	for _, p := range c.procs {
		if done, err := p.exited(); done {
			return fmt.Errorf("%s exited (%v)\n--- %s (tail) ---\n%s", p.name, err, filepath.Base(p.logPath), tail(p.logPath, 30))
		}
	}
	return nil
}

func (c *Cluster) waitNodesReady(ctx context.Context, cs kubernetes.Interface) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := c.checkAlive(); err != nil {
			return err
		}
		ready := 0
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: NodeLabelKey + "=" + NodeLabelValue})
		if err == nil {
			for _, n := range nodes.Items {
				for _, cond := range n.Status.Conditions {
					if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
						ready++
					}
				}
			}
			if ready >= len(c.NodeNames) {
				return c.untaintNodes(ctx, cs)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d nodes to be Ready (%d are; last error %v): %w\n--- kwok.log (tail) ---\n%s",
				len(c.NodeNames), ready, err, ctx.Err(), tail(c.logPath("kwok"), 30))
		case <-tick.C:
		}
	}
}

// untaintNodes removes the node.kubernetes.io/not-ready taint the API
// server's TaintNodesByCondition admission puts on new nodes: the
// node-lifecycle controller that would lift it once the node is Ready is not
// run (it would also evict pods whenever kwok's heartbeat is late).
func (c *Cluster) untaintNodes(ctx context.Context, cs kubernetes.Interface) error {
	for _, name := range c.NodeNames {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			var keep []corev1.Taint
			for _, t := range n.Spec.Taints {
				if t.Key != corev1.TaintNodeNotReady {
					keep = append(keep, t)
				}
			}
			if len(keep) == len(n.Spec.Taints) {
				return nil
			}
			n.Spec.Taints = keep
			_, err = cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			return fmt.Errorf("removing the not-ready taint from node %s: %w", name, err)
		}
	}
	return nil
}

func fakeNode(name string) *corev1.Node {
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("1000"),
		corev1.ResourceMemory: resource.MustParse("1Ti"),
		corev1.ResourcePods:   resource.MustParse("1000"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				NodeLabelKey:             NodeLabelValue,
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"kubernetes.io/role":     "agent",
			},
			Annotations: map[string]string{
				NodeAnnotationKey:              "fake",
				"node.alpha.kubernetes.io/ttl": "0",
			},
		},
		Status: corev1.NodeStatus{Allocatable: res, Capacity: res},
	}
}

// Pids are the processes the cluster started (etcd and kube-apiserver
// included), for checking that Stop left none behind.
func (c *Cluster) Pids() []int {
	pids := append([]int(nil), c.envPids...)
	for _, p := range c.procs {
		pids = append(pids, p.pid())
	}
	return pids
}

// StopAPIServer stops kube-apiserver (SIGTERM, SIGKILL after a few
// seconds) and waits until it is gone, leaving etcd and every other
// component running: an API server outage, which the clients must ride out.
// StartAPIServer brings it back.
func (c *Cluster) StopAPIServer() error {
	api := c.env.ControlPlane.APIServer
	pids := childPids(api.CertDir)
	// envtest reports a timeout once it had to SIGKILL (kube-apiserver
	// waits for its clients' watches to end): no failure here.
	if err := api.Stop(); err != nil && !strings.Contains(err.Error(), "timeout waiting for process") {
		return fmt.Errorf("stopping kube-apiserver: %w", err)
	}
	if left := waitGone(pids, stopGrace); len(left) > 0 {
		return fmt.Errorf("kube-apiserver (pids %v) still running after SIGKILL", left)
	}
	return nil
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, on the
// same port with the same etcd, certificates and flags (the Config and
// Kubeconfig stay valid), and returns once it answers /healthz.
func (c *Cluster) StartAPIServer() error {
	api := c.env.ControlPlane.APIServer
	if err := api.Start(); err != nil {
		return fmt.Errorf("starting kube-apiserver again: %w\n--- kube-apiserver.log (tail) ---\n%s", err, tail(c.logPath("kube-apiserver"), 30))
	}
	// The new process replaces the old one among those Stop waits for.
	c.envPids = childPids(filepath.Join(c.Dir, "etcd"), api.CertDir)
	return nil
}

// Stop stops every process the cluster started (SIGTERM, then SIGKILL after
// a few seconds), waits for them, and removes the working directory if Start
// made it. It is safe to call more than once.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		var errs []error
		var wg sync.WaitGroup
		for _, p := range c.procs {
			wg.Add(1)
			go func() { defer wg.Done(); p.stop() }()
		}
		wg.Wait()
		if c.env != nil {
			// envtest sends SIGTERM and, after stopGrace, SIGKILL (and
			// reports a timeout, which is no failure here: kube-apiserver
			// waits for its clients' watches to end, and the cluster's
			// users may still be watching). Then wait for the processes to
			// be gone.
			if err := c.env.Stop(); err != nil && !strings.Contains(err.Error(), "timeout waiting for process") {
				errs = append(errs, fmt.Errorf("stopping etcd and kube-apiserver: %w", err))
			}
			if left := waitGone(c.envPids, stopGrace); len(left) > 0 {
				for _, pid := range left {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
				errs = append(errs, fmt.Errorf("etcd or kube-apiserver (pids %v) still running after SIGKILL", left))
			}
		}
		if c.removeDir {
			if err := os.RemoveAll(c.Dir); err != nil {
				errs = append(errs, err)
			}
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// waitGone waits up to timeout for the processes to end (and be reaped),
// returning those that have not.
func waitGone(pids []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		var left []int
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// childPids finds this process's children whose command line mentions one
// of dirs (envtest does not expose the pids of etcd and kube-apiserver).
func childPids(dirs ...string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[1] != strconv.Itoa(self) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		for _, d := range dirs {
			if strings.Contains(string(cmdline), d) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}
