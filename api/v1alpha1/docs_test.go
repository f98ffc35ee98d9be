package v1alpha1

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestEveryFieldDocumented walks the generated CRD schemas and fails on any
// property without a description: the description is what `kubectl
// explain` shows.
func TestEveryFieldDocumented(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "config", "crd", "bases", "*.yaml"))
	if err != nil || len(files) != 6 {
		t.Fatalf("want the six CRDs, found %v (%v)", files, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd map[string]any
		if err := yaml.Unmarshal(data, &crd); err != nil {
			t.Fatal(err)
		}
		versions := crd["spec"].(map[string]any)["versions"].([]any)
		for _, v := range versions {
			schema := v.(map[string]any)["schema"].(map[string]any)["openAPIV3Schema"].(map[string]any)
			props := schema["properties"].(map[string]any)
			for _, top := range []string{"spec", "status"} {
				var missing []string
				walkSchema(top, props[top].(map[string]any), &missing)
				sort.Strings(missing)
				for _, m := range missing {
					t.Errorf("%s: %s has no description", filepath.Base(f), m)
				}
			}
		}
	}
}

func walkSchema(path string, s map[string]any, missing *[]string) {
	if d, _ := s["description"].(string); d == "" {
		*missing = append(*missing, path)
	}
	if props, ok := s["properties"].(map[string]any); ok {
		for name, p := range props {
			// metav1.Condition's fields are documented upstream.
			if path == "status.conditions[]" {
				continue
			}
			walkSchema(path+"."+name, p.(map[string]any), missing)
		}
	}
	if items, ok := s["items"].(map[string]any); ok {
		if _, hasProps := items["properties"]; hasProps {
			walkSchema(path+"[]", items, missing)
		}
	}
}
