package chart

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/retention-dev/retention-operator/test/localcluster"
)

// TestKubeconform runs the pinned kubeconform -strict on the custom
// resources: the chart's ServiceMonitor, PodMonitor and PrometheusRule
// (every value set) against JSON schemas made from the Prometheus
// Operator's CRDs, and config/samples against schemas made from the
// project's own CRDs (config/crd/bases). kubeconform cannot download the
// built-in kinds' schemas here (they live on GitHub), so those are
// skipped by name and validated by TestDryRun on a real API server. Every
// custom resource must have its schema (no -ignore-missing-schemas), and a
// misspelt field must be refused, which shows the schemas are closed.
func TestKubeconform(t *testing.T) {
	bin := filepath.Join(localcluster.DefaultBinDir(), "kubeconform")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("kubeconform is missing from %s: run `make tools` (%v)", localcluster.DefaultBinDir(), err)
	}
	schemas := t.TempDir()
	crdFiles, err := filepath.Glob(filepath.Join(root, "config/crd/bases/*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	monitoring, err := filepath.Glob(filepath.Join(filepath.Dir(localcluster.DefaultBinDir()), "crds", "monitoring.coreos.com", "*.yaml"))
	if err != nil || len(monitoring) == 0 {
		t.Fatalf("the Prometheus Operator's CRDs are missing from the tools cache: run `make tools` (%v)", err)
	}
	known := map[string]bool{} // apiVersion/Kind with a schema
	for _, f := range append(crdFiles, monitoring...) {
		for k := range writeSchemas(t, f, schemas) {
			known[k] = true
		}
	}
	location := filepath.Join(schemas, "{{ .Group }}", "{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json")

	run := func(t *testing.T, input []byte) (valid int, invalid []string) {
		t.Helper()
		var docs []map[string]any
		for _, u := range parse(t, input) {
			docs = append(docs, u.Object)
		}
		skip := map[string]bool{}
		for _, d := range docs {
			u := unstructured.Unstructured{Object: d}
			key := u.GetAPIVersion() + "/" + u.GetKind()
			switch {
			case known[key]:
			case builtIn(u.GroupVersionKind().Group):
				skip[u.GetKind()] = true
			default:
				t.Errorf("%s: a custom resource without a schema", key)
			}
		}
		args := []string{"-strict", "-summary", "-output", "json", "-schema-location", location}
		if len(skip) > 0 {
			args = append(args, "-skip", strings.Join(sortedKeys(skip), ","))
		}
		cmd := exec.Command(bin, args...)
		cmd.Stdin = bytes.NewReader(input)
		out, err := cmd.Output()
		var report struct {
			Resources []struct {
				Kind   string `json:"kind"`
				Name   string `json:"name"`
				Status string `json:"status"`
				Msg    string `json:"msg"`
			} `json:"resources"`
			Summary struct {
				Valid, Invalid, Errors, Skipped int
			} `json:"summary"`
		}
		if jerr := json.Unmarshal(out, &report); jerr != nil {
			t.Fatalf("kubeconform: %v (%v)\n%s", jerr, err, out)
		}
		for _, r := range report.Resources {
			if r.Status != "statusValid" && r.Status != "statusSkipped" {
				invalid = append(invalid, fmt.Sprintf("%s/%s: %s %s", r.Kind, r.Name, r.Status, r.Msg))
			}
		}
		return report.Summary.Valid, invalid
	}

	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			out, err := helm(t, append([]string{"template", release, chartDir, "--namespace", namespace}, vs.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			for _, u := range parse(t, out) {
				if !builtIn(u.GroupVersionKind().Group) {
					want++
				}
			}
			valid, invalid := run(t, out)
			if len(invalid) > 0 || valid != want {
				t.Errorf("kubeconform -strict: %d valid custom resources, want %d; refused: %v", valid, want, invalid)
			}
			t.Logf("%d custom resources valid", valid)
		})
	}

	t.Run("samples", func(t *testing.T) {
		var all bytes.Buffer
		n := 0
		err := filepath.WalkDir(filepath.Join(root, "config/samples"), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") || d.Name() == "kustomization.yaml" {
				return err
			}
			b, err := os.ReadFile(p)
			all.WriteString("---\n")
			all.Write(b)
			all.WriteString("\n")
			for _, u := range parse(t, b) {
				if !builtIn(u.GroupVersionKind().Group) {
					n++
				}
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		valid, invalid := run(t, all.Bytes())
		if len(invalid) > 0 || valid != n || n == 0 {
			t.Errorf("config/samples: %d of %d valid; refused: %v", valid, n, invalid)
		}
	})

	t.Run("controls", func(t *testing.T) {
		for _, doc := range []string{
			"apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: bad, namespace: x}\nspec:\n  selector: {}\n  endpoints: [{port: metrics, honourLabels: true}]\n",
			"apiVersion: retention.dev/v1alpha1\nkind: Segment\nmetadata: {name: bad, namespace: x}\nspec:\n  sourceRef: {name: shop}\n  rule: 'true'\n  descripton: misspelt\n",
		} {
			if valid, invalid := run(t, []byte(doc)); valid != 0 || len(invalid) != 1 {
				t.Errorf("a misspelt field: %d valid, refused %v; want it refused\n%s", valid, invalid, doc)
			}
		}
	})
}

// builtIn: a Kubernetes API group (core, apps, x.k8s.io), not a CRD's.
func builtIn(group string) bool {
	return group == "" || !strings.Contains(group, ".") || strings.HasSuffix(group, ".k8s.io")
}

// writeSchemas writes a JSON schema per version of the CRD in file, at
// DIR/<group>/<kind>_<version>.json (kind in lower case, kubeconform's
// {{ .ResourceKind }}), closed as kubeconform's own -strict schemas are:
// every object with properties refuses others, unless the CRD preserves
// unknown fields there.
func writeSchemas(t *testing.T, file, dir string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var crd struct {
		Spec struct {
			Group string `json:"group"`
			Names struct {
				Kind string `json:"kind"`
			} `json:"names"`
			Versions []struct {
				Name   string `json:"name"`
				Schema struct {
					OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	keys := map[string]bool{}
	for _, v := range crd.Spec.Versions {
		s := v.Schema.OpenAPIV3Schema
		if s == nil {
			t.Fatalf("%s %s: no schema", file, v.Name)
		}
		closeSchema(s)
		s["$schema"] = "http://json-schema.org/draft-07/schema#"
		out, err := json.MarshalIndent(s, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, crd.Spec.Group, strings.ToLower(crd.Spec.Names.Kind)+"_"+v.Name+".json")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, out, 0o644); err != nil {
			t.Fatal(err)
		}
		keys[crd.Spec.Group+"/"+v.Name+"/"+crd.Spec.Names.Kind] = true
	}
	return keys
}

// closeSchema turns a structural OpenAPI v3 schema into a JSON schema that
// refuses unknown fields: additionalProperties: false where there are
// properties (and the schema does not preserve unknown fields),
// int-or-string and nullable spelt in JSON schema.
func closeSchema(s map[string]any) {
	if s["x-kubernetes-int-or-string"] == true {
		delete(s, "type")
		s["anyOf"] = []any{map[string]any{"type": "integer"}, map[string]any{"type": "string"}}
	}
	if s["nullable"] == true {
		if t, ok := s["type"].(string); ok {
			s["type"] = []any{t, "null"}
		}
	}
	_, hasProps := s["properties"]
	_, hasAP := s["additionalProperties"]
	if hasProps && !hasAP && s["x-kubernetes-preserve-unknown-fields"] != true {
		s["additionalProperties"] = false
	}
	for _, k := range sortedKeys(s) {
		switch v := s[k].(type) {
		case map[string]any:
			switch k {
			case "properties":
				for _, p := range v {
					if m, ok := p.(map[string]any); ok {
						closeSchema(m)
					}
				}
			case "items", "additionalProperties", "not":
				closeSchema(v)
			}
		case []any:
			if slices.Contains([]string{"allOf", "anyOf", "oneOf"}, k) {
				for _, p := range v {
					if m, ok := p.(map[string]any); ok {
						closeSchema(m)
					}
				}
			}
		}
	}
}
