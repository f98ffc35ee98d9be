package chart

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/retention-dev/retention-operator/test/localcluster"
)

// warnings collects the API server's warnings (a PodSecurity "would
// violate" among them).
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs
	w.msgs = nil
	return m
}

// TestDryRun applies every object the chart renders, with the default
// values and with every toggle on, to a real kube-apiserver (envtest) by
// server-side apply with dryRun=All and strict field validation: the API
// server's own schemas for the built-in kinds, the CRDs' structural
// schemas for the chart's CRDs, and for ServiceMonitor, PodMonitor and
// PrometheusRule the Prometheus Operator's CRDs (hack/tools.sh generates
// them from its Go API types). This replaces kubeconform: the machine
// reaches no schema registry, and the API server is stricter and current.
// The release namespace enforces (and warns on) the restricted Pod
// Security Standard: the Deployment's pod template must pass it, and an
// unknown field and a privileged pod are refused, which shows the checks
// are on.
func TestDryRun(t *testing.T) {
	bin := localcluster.DefaultBinDir()
	monitoringCRDs := filepath.Join(filepath.Dir(bin), "crds", "monitoring.coreos.com")
	if _, err := os.Stat(filepath.Join(monitoringCRDs, "monitoring.coreos.com_servicemonitors.yaml")); err != nil {
		t.Fatalf("the Prometheus Operator's CRDs are missing from %s: run `make tools` (%v)", monitoringCRDs, err)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: bin,
		CRDDirectoryPaths:     []string{monitoringCRDs},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting kube-apiserver from %s (run `make tools`): %v", bin, err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	})
	warn := &warnings{}
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler = warn
	ctx := context.Background()
	kube := kubernetes.NewForConfigOrDie(cfg)
	dyn := dynamic.NewForConfigOrDie(cfg)
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper, err := apiutil.NewDynamicRESTMapper(cfg, httpClient)
	if err != nil {
		t.Fatal(err)
	}

	// The namespaces the value sets use. Only these are created for real.
	for _, ns := range []string{namespace, "retention-jobs", "retention-leases", "monitoring"} {
		labels := map[string]string{}
		if ns == namespace {
			labels = map[string]string{"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted"}
		}
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	warn.take()

	apply := func(u *unstructured.Unstructured) error {
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return err
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == "namespace" {
			if u.GetNamespace() == "" {
				t.Errorf("%s: a namespaced kind without a namespace (helm would put it in the release's; say which)", id(u))
			}
			ri = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
		} else if u.GetNamespace() != "" {
			t.Errorf("%s: a cluster-scoped kind with a namespace", id(u))
		}
		b, err := json.Marshal(u.Object)
		if err != nil {
			return err
		}
		_, err = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, b, metav1.PatchOptions{
			DryRun: []string{metav1.DryRunAll}, FieldManager: "retention-chart-test", Force: ptr.To(true), FieldValidation: "Strict",
		})
		return err
	}

	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			objs := render(t, vs.args...)
			kinds := map[string]int{}
			for _, u := range objs {
				if err := apply(u); err != nil {
					t.Errorf("%s: refused by the API server: %v", id(u), err)
				}
				if w := warn.take(); len(w) > 0 {
					t.Errorf("%s: API server warnings: %v", id(u), w)
				}
				kinds[u.GetKind()]++
			}
			t.Logf("%d objects accepted (dry run): %v", len(objs), kinds)

			// The Deployment's pod, as its ReplicaSet would create it, in
			// the namespace that enforces the restricted standard.
			d := deployment(t, objs)
			pod := &corev1.Pod{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
				ObjectMeta: metav1.ObjectMeta{Name: "manager-probe", Namespace: namespace, Labels: d.Spec.Template.Labels},
				Spec:       d.Spec.Template.Spec,
			}
			if _, err := kube.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
				t.Errorf("the Deployment's pod in a namespace enforcing the restricted Pod Security Standard: %v", err)
			}
			if w := warn.take(); len(w) > 0 {
				t.Errorf("the Deployment's pod: warnings %v", w)
			}
		})
	}

	// The controls: the same checks refuse what they should.
	objs := render(t)
	var dep *unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == "Deployment" {
			dep = u.DeepCopy()
		}
	}
	containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	containers[0].(map[string]any)["securityContex"] = map[string]any{"privileged": true}
	if err := unstructured.SetNestedSlice(dep.Object, containers, "spec", "template", "spec", "containers"); err != nil {
		t.Fatal(err)
	}
	if err := apply(dep); err == nil || !strings.Contains(err.Error(), "securityContex") {
		t.Errorf("a Deployment with an unknown field: %v; want it refused by strict field validation", err)
	}
	warn.take()
	privileged := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "privileged-probe", Namespace: namespace},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox",
			SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)}}}},
	}
	_, err = kube.CoreV1().Pods(namespace).Create(ctx, privileged, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "PodSecurity") {
		t.Errorf("a privileged pod in %s: %v; want it refused by PodSecurity (restricted)", namespace, err)
	}
	sm := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
		"metadata": map[string]any{"name": "bad", "namespace": namespace},
		"spec":     map[string]any{"selector": map[string]any{}, "endpoints": []any{map[string]any{"port": "metrics", "honourLabels": true}}},
	}}
	if err := apply(sm); err == nil || !strings.Contains(err.Error(), "honourLabels") {
		t.Errorf("a ServiceMonitor with a misspelt field: %v; want it refused by the CRD's schema", err)
	}
}
