// Command localcluster runs a local Kubernetes cluster from the binaries
// `make tools` installs (see package localcluster), writes an admin
// kubeconfig, and keeps it running until it is signalled: etcd,
// kube-apiserver, kube-controller-manager (Job, garbage-collector,
// TTL-after-finished and namespace controllers), kube-scheduler and kwok with
// -nodes fake nodes. Each -run CMD=PATH makes it the container runtime for
// pods whose command is CMD: it runs PATH locally with the pod's environment
// and reports the exit code as the pod's phase (localcluster.PodRunner), so
// the real Job controller counts completions. -control-plane-only starts
// etcd and kube-apiserver alone.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"k8s.io/client-go/kubernetes"

	"github.com/retention-dev/retention-operator/test/localcluster"
)

// commandFlag collects -run CMD=PATH pairs.
type commandFlag map[string]string

func (c commandFlag) String() string { return fmt.Sprint(map[string]string(c)) }

func (c commandFlag) Set(v string) error {
	cmd, path, ok := strings.Cut(v, "=")
	if !ok || cmd == "" || path == "" {
		return fmt.Errorf("want CMD=PATH, got %q", v)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	c[cmd] = abs
	return nil
}

func main() {
	kubeconfig := flag.String("write-kubeconfig", "kubeconfig", "where to write the admin kubeconfig")
	crds := flag.String("crds", "", "directory of CRDs to install before the kubeconfig is written")
	controlPlaneOnly := flag.Bool("control-plane-only", false, "run etcd and kube-apiserver only (no controllers, scheduler, kwok, nodes or pods)")
	nodes := flag.Int("nodes", 1, "fake kwok nodes")
	dir := flag.String("dir", "", "working directory for logs and component data (default: a temporary directory, removed on exit)")
	commands := commandFlag{}
	flag.Var(commands, "run", "CMD=PATH: run pods whose container command is CMD as local processes of PATH (repeatable)")
	flag.Parse()
	opts := localcluster.Options{CRDDir: *crds, Nodes: *nodes, Dir: *dir, ControlPlaneOnly: *controlPlaneOnly}
	if err := run(*kubeconfig, opts, commands); err != nil {
		fmt.Fprintf(os.Stderr, "localcluster: %v\n", err)
		os.Exit(1)
	}
}

func run(kubeconfigPath string, opts localcluster.Options, commands map[string]string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, err := localcluster.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer func() { _ = c.Stop() }()

	runnerDone := make(chan error, 1)
	if len(commands) > 0 && !opts.ControlPlaneOnly {
		cs, err := kubernetes.NewForConfig(c.Config)
		if err != nil {
			return err
		}
		log, err := os.Create(filepath.Join(c.Dir, "pods.log"))
		if err != nil {
			return err
		}
		defer func() { _ = log.Close() }()
		r := &localcluster.PodRunner{Client: cs, Commands: commands, Log: log}
		go func() { runnerDone <- r.Run(ctx) }()
		defer func() { <-runnerDone }()
	}

	kc, err := os.ReadFile(c.Kubeconfig)
	if err != nil {
		return err
	}
	// Written last, so a waiting script knows the cluster is up.
	tmp := kubeconfigPath + ".tmp"
	if err := os.WriteFile(tmp, kc, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, kubeconfigPath); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "localcluster: kube-apiserver at %s, kubeconfig %s, logs in %s (pods' output in pods.log)\n", c.Config.Host, kubeconfigPath, c.Dir)
	<-ctx.Done()
	return nil
}
