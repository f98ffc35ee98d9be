package chart

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/retention-dev/retention-operator/test/localcluster"
)

const (
	// root is the repository, from this package's directory.
	root      = "../.."
	chartDir  = root + "/charts/retention-operator"
	release   = "retention-operator"
	namespace = "retention-system"
)

// valueSets are the chart's CI values: the defaults, and every toggle on
// (the ServiceMonitor and the PodMonitor exclude each other, so two files).
var valueSets = []struct {
	name string
	args []string
}{
	{"defaults", nil},
	{"all-on", []string{"-f", chartDir + "/ci/all-on-values.yaml"}},
	{"podmonitor", []string{"-f", chartDir + "/ci/podmonitor-values.yaml"}},
}

// helmBin is the pinned helm of the tools cache: the directory of the
// other tools ($KUBEBUILDER_ASSETS, else hack/tools.sh's cache). A missing
// helm fails the test: a skipped chart test would pass without testing.
func helmBin(t *testing.T) string {
	t.Helper()
	p := filepath.Join(localcluster.DefaultBinDir(), "helm")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("helm is missing from %s: run `make tools` (%v)", localcluster.DefaultBinDir(), err)
	}
	return p
}

// helm runs the pinned helm and returns its stdout, or an error with its
// stderr.
func helm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// No repositories, no plugins, no cache of the user's.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// objects is a rendered chart.
type objects []*unstructured.Unstructured

// render runs helm template with the release name and namespace of the
// README's install, and the args (-f, --set).
func render(t *testing.T, args ...string) objects {
	t.Helper()
	objs, err := renderErr(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func renderErr(t *testing.T, args ...string) (objects, error) {
	t.Helper()
	out, err := helm(t, append([]string{"template", release, chartDir, "--namespace", namespace}, args...)...)
	if err != nil {
		return nil, err
	}
	return parse(t, out), nil
}

// parse splits helm's output into its objects.
func parse(t *testing.T, b []byte) objects {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var objs objects
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" || u.GetName() == "" {
			t.Fatalf("rendered object without kind, apiVersion or name:\n%s", doc)
		}
		objs = append(objs, u)
	}
}

// id names an object: Kind/namespace/name (cluster-scoped: Kind/name).
func id(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetKind() + "/" + u.GetName()
	}
	return u.GetKind() + "/" + u.GetNamespace() + "/" + u.GetName()
}

func (o objects) ids() map[string]bool {
	m := map[string]bool{}
	for _, u := range o {
		m[id(u)] = true
	}
	return m
}

// get returns the object of the id, failing the test without it.
func (o objects) get(t *testing.T, want string) *unstructured.Unstructured {
	t.Helper()
	for _, u := range o {
		if id(u) == want {
			return u
		}
	}
	t.Fatalf("no %s in the rendered chart; it has %v", want, sortedKeys(o.ids()))
	return nil
}

func (o objects) ofKind(kind string) objects {
	var out objects
	for _, u := range o {
		if u.GetKind() == kind {
			out = append(out, u)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// into converts an unstructured object (or part of one) into a typed value.
func into(t *testing.T, v any, out any) {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, out); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
}

// readYAMLDocs reads the non-empty documents of a file of the repository.
func readYAMLDocs(t *testing.T, file string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var docs []map[string]any
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(m) > 0 {
			docs = append(docs, m)
		}
	}
}
