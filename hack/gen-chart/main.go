// Command gen-chart writes the generated parts of the Helm chart
// charts/retention-operator from config/, their one source of truth, so
// that the chart never carries a hand-copied, drifting copy:
//
//	templates/crd-<file>.yaml  each CRD of config/crd/bases (what
//	                           controller-gen makes of the markers) as a
//	                           template guarded by crds.enabled, with
//	                           crds.keep adding helm.sh/resource-policy: keep
//	                           (cert-manager's templates/crd-*.yaml)
//	templates/_rbac-rules.tpl  the rules of the ClusterRole and the jobs
//	                           Role (config/rbac/role.yaml, from the markers)
//	                           and of the leader-election Role
//	                           (config/rbac/leader_election_role.yaml)
//	files/retention-operator.rules.yaml
//	                           config/prometheus/rules/ byte for byte: the
//	                           PrometheusRule template reads it with
//	                           .Files.Get, so Prometheus' own {{ }} templates
//	                           are never seen by Helm's
//	files/retention-operator.json
//	                           config/grafana/ byte for byte, for the
//	                           dashboard ConfigMap
//
// `make manifests` and `make monitoring` run it; `make verify`
// (hack/verify-generated.sh) runs it with -check, which fails when a
// generated file is stale or a generated file has no source any more.
//
// Usage: go run ./hack/gen-chart [-check] [-chart DIR]
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	crdDir        = "config/crd/bases"
	roleFile      = "config/rbac/role.yaml"
	leaderFile    = "config/rbac/leader_election_role.yaml"
	rulesFile     = "config/prometheus/rules/retention-operator.rules.yaml"
	dashboardFile = "config/grafana/retention-operator.json"
)

func main() {
	check := flag.Bool("check", false, "write nothing: fail when a generated file differs from what would be written, or has no source")
	chart := flag.String("chart", "charts/retention-operator", "the chart's directory")
	flag.Parse()
	files, err := generate()
	if err == nil {
		if *check {
			err = verify(*chart, files)
		} else {
			err = write(*chart, files)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen-chart:", err)
		os.Exit(1)
	}
}

// generate returns every generated file, by its path inside the chart.
func generate() (map[string][]byte, error) {
	files := map[string][]byte{}
	crds, err := filepath.Glob(filepath.Join(crdDir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(crds) == 0 {
		return nil, fmt.Errorf("no CRDs in %s", crdDir)
	}
	for _, src := range crds {
		b, err := crdTemplate(src)
		if err != nil {
			return nil, err
		}
		files[filepath.Join("templates", "crd-"+filepath.Base(src))] = b
	}
	rules, err := rbacRules()
	if err != nil {
		return nil, err
	}
	files[filepath.Join("templates", "_rbac-rules.tpl")] = rules
	for _, src := range []string{rulesFile, dashboardFile} {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		files[filepath.Join("files", filepath.Base(src))] = b
	}
	return files, nil
}

// generatedGlobs are the chart's files that gen-chart owns: one of them
// that it would not write is stale (a CRD that is gone).
var generatedGlobs = []string{"templates/crd-*.yaml", "templates/_rbac-rules.tpl", "files/*"}

func write(chart string, files map[string][]byte) error {
	stale, err := owned(chart, files)
	if err != nil {
		return err
	}
	for _, p := range stale {
		if err := os.Remove(filepath.Join(chart, p)); err != nil {
			return err
		}
	}
	for p, b := range files {
		full := filepath.Join(chart, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if old, err := os.ReadFile(full); err == nil && bytes.Equal(old, b) {
			continue
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func verify(chart string, files map[string][]byte) error {
	var bad []string
	stale, err := owned(chart, files)
	if err != nil {
		return err
	}
	for _, p := range stale {
		bad = append(bad, p+": generated, but its source is gone")
	}
	for p, b := range files {
		old, err := os.ReadFile(filepath.Join(chart, p))
		switch {
		case errors.Is(err, os.ErrNotExist):
			bad = append(bad, p+": missing")
		case err != nil:
			return err
		case !bytes.Equal(old, b):
			bad = append(bad, p+": differs from its source")
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("the chart's generated files are out of date (run `make manifests monitoring`):\n  %s", strings.Join(bad, "\n  "))
	}
	return nil
}

// owned lists the chart's files that match generatedGlobs and are not in
// files.
func owned(chart string, files map[string][]byte) ([]string, error) {
	var stale []string
	for _, g := range generatedGlobs {
		m, err := filepath.Glob(filepath.Join(chart, g))
		if err != nil {
			return nil, err
		}
		for _, full := range m {
			p, err := filepath.Rel(chart, full)
			if err != nil {
				return nil, err
			}
			if _, ok := files[p]; !ok {
				stale = append(stale, p)
			}
		}
	}
	sort.Strings(stale)
	return stale, nil
}

const header = `{{- /* Code generated by hack/gen-chart from %s. DO NOT EDIT: change the source and run ` + "`make manifests`" + `. */ -}}
`

// crdTemplate turns one of controller-gen's CRDs into a chart template: the
// CRD's spec verbatim, its name and annotations kept, the chart's labels
// and, with crds.keep, Helm's keep policy added.
func crdTemplate(src string) ([]byte, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return nil, err
	}
	var crd struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name        string            `json:"name"`
			Annotations map[string]string `json:"annotations"`
			Labels      map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(b, &crd); err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	if crd.APIVersion != "apiextensions.k8s.io/v1" || crd.Kind != "CustomResourceDefinition" || crd.Metadata.Name == "" {
		return nil, fmt.Errorf("%s: not an apiextensions.k8s.io/v1 CustomResourceDefinition with a name", src)
	}
	if len(crd.Metadata.Labels) > 0 {
		return nil, fmt.Errorf("%s: labels in the source CRD, which the chart's labels would replace", src)
	}
	// The spec, verbatim: everything from the top-level "spec:" line on.
	i := bytes.Index(b, []byte("\nspec:\n"))
	if i < 0 {
		return nil, fmt.Errorf("%s: no top-level spec", src)
	}
	spec := b[i+1:]
	if bytes.Contains(spec, []byte("\n---")) {
		return nil, fmt.Errorf("%s: more than one document", src)
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, header, src)
	out.WriteString("{{- if .Values.crds.enabled }}\n")
	out.WriteString("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n")
	fmt.Fprintf(&out, "  name: %s\n", crd.Metadata.Name)
	out.WriteString("  annotations:\n")
	keys := make([]string, 0, len(crd.Metadata.Annotations))
	for k := range crd.Metadata.Annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, err := yaml.Marshal(crd.Metadata.Annotations[k])
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&out, "    %s: %s", k, v)
	}
	out.WriteString("    {{- if .Values.crds.keep }}\n    helm.sh/resource-policy: keep\n    {{- end }}\n")
	out.WriteString("  labels:\n    {{- include \"retention-operator.crdLabels\" . | nindent 4 }}\n")
	// Helm reads "{{" as the start of an action: a literal one is written
	// as an action printing it.
	out.Write(bytes.ReplaceAll(spec, []byte("{{"), []byte(`{{ "{{" }}`)))
	if !bytes.HasSuffix(spec, []byte("\n")) {
		out.WriteString("\n")
	}
	out.WriteString("{{- end }}\n")
	return out.Bytes(), nil
}

// rbacRules writes the three roles' rules as named templates; the chart's
// templates/rbac.yaml gives them names, namespaces and bindings.
func rbacRules() ([]byte, error) {
	roles := map[string][]rbacv1.PolicyRule{}
	for _, src := range []string{roleFile, leaderFile} {
		docs, err := readDocs(src)
		if err != nil {
			return nil, err
		}
		for _, doc := range docs {
			var r struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
				Rules []rbacv1.PolicyRule `json:"rules"`
			}
			if err := yaml.Unmarshal(doc, &r); err != nil {
				return nil, fmt.Errorf("%s: %w", src, err)
			}
			id := r.Kind + "/" + r.Metadata.Name
			if _, dup := roles[id]; dup {
				return nil, fmt.Errorf("%s: %s twice", src, id)
			}
			roles[id] = r.Rules
		}
	}
	defs := []struct{ define, role, src string }{
		{"retention-operator.rules.manager", "ClusterRole/manager-role", roleFile},
		{"retention-operator.rules.jobs", "Role/manager-role", roleFile},
		{"retention-operator.rules.leaderElection", "Role/leader-election-role", leaderFile},
	}
	var ids []string
	for id := range roles {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if !slices.ContainsFunc(defs, func(d struct{ define, role, src string }) bool { return d.role == id }) {
			return nil, fmt.Errorf("%s: a role the chart does not know (add it to hack/gen-chart and templates/rbac.yaml)", id)
		}
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, header, roleFile+" and "+leaderFile)
	for _, d := range defs {
		rules, ok := roles[d.role]
		if !ok || len(rules) == 0 {
			return nil, fmt.Errorf("%s: no %s with rules", d.src, d.role)
		}
		b, err := yaml.Marshal(rules)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&out, "{{/* The rules of %s in %s. */}}\n{{- define %q -}}\n%s{{- end }}\n", d.role, d.src, d.define, b)
	}
	return out.Bytes(), nil
}

// readDocs splits a YAML stream into its documents that hold more than
// comments.
func readDocs(file string) ([][]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		var v map[string]any
		if err := yaml.Unmarshal(doc, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if len(v) > 0 {
			docs = append(docs, doc)
		}
	}
}
