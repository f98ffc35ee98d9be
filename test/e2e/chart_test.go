package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/retention-dev/retention-operator/test/localcluster"
	"github.com/retention-dev/retention-operator/test/promcheck"
)

// TestChartInstall installs the Helm chart into a local control plane
// (etcd and kube-apiserver, with the Prometheus Operator's CRDs so the
// monitoring toggles have their kinds) as a platform team would: `helm
// install` with the monitoring toggles and the NetworkPolicy on. Every
// object of the release's manifest must then exist in the cluster and the
// six CRDs be established; an upgrade that turns the monitoring off
// removes those objects; `helm uninstall` removes the rest but keeps the
// CRDs (crds.keep, the default), and with them the custom resources.
// There are no kubelets: the operator's pod is not run here (the story
// runs the operator itself), this checks what the chart makes.
func TestChartInstall(t *testing.T) {
	ctx := context.Background()
	root, err := promcheck.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := localcluster.DefaultBinDir()
	helm := filepath.Join(bin, "helm")
	if _, err := os.Stat(helm); err != nil {
		t.Fatalf("helm is missing from %s: run `make tools` (%v)", bin, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cluster, err := localcluster.Start(cctx, localcluster.Options{
		ControlPlaneOnly: true,
		CRDDir:           filepath.Join(filepath.Dir(bin), "crds", "monitoring.coreos.com"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cluster.Stop(); err != nil {
			t.Errorf("stopping the cluster: %v", err)
		}
	})
	scheme := runtime.NewScheme()
	_ = apiextensionsv1.AddToScheme(scheme)
	k8s, err := client.New(cluster.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	chart := filepath.Join(root, "charts", "retention-operator")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(helm, append(args, "--kubeconfig", cluster.Kubeconfig)...)
		cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
		}
		return out.String()
	}
	const ns = "retention-system"
	monitoring := []string{"--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.rules.enabled=true",
		"--set", "metrics.dashboard.enabled=true", "--set", "networkPolicy.enabled=true"}

	run(append([]string{"install", "retention-operator", chart, "-n", ns, "--create-namespace"}, monitoring...)...)
	installed := objectsOf(t, run("get", "manifest", "retention-operator", "-n", ns), ns)
	kinds := map[string]int{}
	for _, o := range installed {
		kinds[o.GetKind()]++
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(o), probe(o)); err != nil {
			t.Errorf("%s %s/%s of the release: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
	for kind, want := range map[string]int{
		"CustomResourceDefinition": 5, "Deployment": 1, "ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 1,
		"Role": 2, "RoleBinding": 2, "ServiceMonitor": 1, "PrometheusRule": 1, "NetworkPolicy": 1,
	} {
		if kinds[kind] < want {
			t.Errorf("the release has %d %s, want at least %d (kinds: %v)", kinds[kind], kind, want, kinds)
		}
	}
	t.Logf("installed: %d objects %v", len(installed), kinds)
	crds := retentionCRDs(t, installed)
	eventually(t, time.Minute, "the chart's CRDs established", func() error {
		for _, name := range crds {
			var crd apiextensionsv1.CustomResourceDefinition
			if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &crd); err != nil {
				return err
			}
			if !established(&crd) {
				return fmt.Errorf("%s not established", name)
			}
		}
		return nil
	})

	// An upgrade back to the defaults (--reset-values: without values, helm
	// upgrade reuses the last ones) turns the monitoring off: its objects go.
	run("upgrade", "retention-operator", chart, "-n", ns, "--reset-values")
	for _, o := range installed {
		switch o.GetKind() {
		case "ServiceMonitor", "PrometheusRule", "NetworkPolicy":
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(o), probe(o)); !apierrors.IsNotFound(err) {
				t.Errorf("%s %s/%s after the upgrade turned it off: %v, want it gone", o.GetKind(), o.GetNamespace(), o.GetName(), err)
			}
		}
	}

	// Uninstall: the release's objects go, the CRDs stay (crds.keep).
	run("uninstall", "retention-operator", "-n", ns)
	for _, o := range installed {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(o), probe(o))
		switch {
		case o.GetKind() == "CustomResourceDefinition" && err != nil:
			t.Errorf("CRD %s removed by helm uninstall; crds.keep should keep it: %v", o.GetName(), err)
		case o.GetKind() != "CustomResourceDefinition" && o.GetKind() != "Namespace" && !apierrors.IsNotFound(err):
			t.Errorf("%s %s/%s still there after helm uninstall: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
}

// objectsOf splits a rendered manifest into objects, defaulting the
// namespace of namespaced ones to ns.
func objectsOf(t *testing.T, manifest, ns string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading the release's manifest: %v", err)
		}
		if len(m) == 0 {
			continue
		}
		o := &unstructured.Unstructured{Object: m}
		if o.GetNamespace() == "" && !clusterScoped(o.GetKind()) {
			o.SetNamespace(ns)
		}
		out = append(out, o)
	}
}

func clusterScoped(kind string) bool {
	switch kind {
	case "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Namespace":
		return true
	}
	return false
}

// probe is an empty object of o's kind to Get into.
func probe(o *unstructured.Unstructured) *unstructured.Unstructured {
	p := &unstructured.Unstructured{}
	p.SetGroupVersionKind(o.GroupVersionKind())
	return p
}

// retentionCRDs names the release's CRDs of the retention.dev group.
func retentionCRDs(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	var names []string
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" && strings.HasSuffix(o.GetName(), ".retention.dev") {
			names = append(names, o.GetName())
		}
	}
	if len(names) != 6 {
		t.Fatalf("the release has %d retention.dev CRDs %v, want 6", len(names), names)
	}
	return names
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}
