// Command localcluster runs a local Kubernetes control plane from the
// binaries `make tools` installs (etcd and kube-apiserver, through envtest's
// process management, which also makes the certificates), writes an admin
// kubeconfig, and keeps it running until it is signalled. The demo and the
// end-to-end tests use it; nothing here needs a container runtime.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

func main() {
	kubeconfig := flag.String("write-kubeconfig", "kubeconfig", "where to write the admin kubeconfig")
	crds := flag.String("crds", "", "directory of CRDs to install before the kubeconfig is written")
	flag.Parse()
	if err := run(*kubeconfig, *crds); err != nil {
		fmt.Fprintf(os.Stderr, "localcluster: %v\n", err)
		os.Exit(1)
	}
}

func run(kubeconfigPath, crdDir string) error {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return fmt.Errorf("KUBEBUILDER_ASSETS is not set (the directory with etcd and kube-apiserver; run `make tools`)")
	}
	env := &envtest.Environment{}
	if crdDir != "" {
		env.CRDDirectoryPaths = []string{crdDir}
		env.ErrorIfCRDPathMissing = true
	}
	if _, err := env.Start(); err != nil {
		return fmt.Errorf("starting control plane: %w", err)
	}
	defer func() { _ = env.Stop() }()

	user, err := env.ControlPlane.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("adding admin user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("making kubeconfig: %w", err)
	}
	// Written last, so a waiting script knows the control plane is up.
	tmp := kubeconfigPath + ".tmp"
	if err := os.WriteFile(tmp, kc, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, kubeconfigPath); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "localcluster: kube-apiserver at %s, kubeconfig %s\n", env.Config.Host, kubeconfigPath)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return nil
}
