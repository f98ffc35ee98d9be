// Command localcluster runs a local Kubernetes cluster from the binaries
// `make tools` installs (see package localcluster), writes an admin
// kubeconfig, and keeps it running until it is signalled. By default it is
// the control plane only (etcd and kube-apiserver), what the demo runs the
// operator's local Job runner against; -full adds kube-controller-manager,
// kube-scheduler and kwok with -nodes fake nodes.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/retention-dev/retention-operator/test/localcluster"
)

func main() {
	kubeconfig := flag.String("write-kubeconfig", "kubeconfig", "where to write the admin kubeconfig")
	crds := flag.String("crds", "", "directory of CRDs to install before the kubeconfig is written")
	full := flag.Bool("full", false, "also run kube-controller-manager (Job, garbage-collector, TTL-after-finished and namespace controllers), kube-scheduler and kwok")
	nodes := flag.Int("nodes", 1, "fake kwok nodes (with -full)")
	dir := flag.String("dir", "", "working directory for logs and component data (default: a temporary directory, removed on exit)")
	flag.Parse()
	if err := run(*kubeconfig, localcluster.Options{CRDDir: *crds, Nodes: *nodes, Dir: *dir, ControlPlaneOnly: !*full}); err != nil {
		fmt.Fprintf(os.Stderr, "localcluster: %v\n", err)
		os.Exit(1)
	}
}

func run(kubeconfigPath string, opts localcluster.Options) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, err := localcluster.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer func() { _ = c.Stop() }()

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
	fmt.Fprintf(os.Stderr, "localcluster: kube-apiserver at %s, kubeconfig %s, logs in %s\n", c.Config.Host, kubeconfigPath, c.Dir)
	<-ctx.Done()
	return nil
}
