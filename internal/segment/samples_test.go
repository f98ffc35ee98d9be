// The sample Segments are checked from outside the package: internal/cli
// (which generates the data) may import this package for its preview
// command, and an external test package can import both.
package segment_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/retention-dev/retention-operator/internal/cli"
	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/scoring"
	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
	"github.com/retention-dev/retention-operator/internal/segment"
	"github.com/retention-dev/retention-operator/internal/source"
)

const (
	samplesDir   = "../../config/samples/segments"
	sourceSample = "../../config/samples/retention_v1alpha1_customersource.yaml"
	docsPath     = "../../docs/segments.md"
)

// segmentManifest is the part of a Segment the samples set.
type segmentManifest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		SourceRef struct {
			Name string `json:"name"`
		} `json:"sourceRef"`
		Rule        string `json:"rule"`
		Description string `json:"description"`
	} `json:"spec"`
}

// sourceManifest is the part of the CustomerSource sample scoring needs.
type sourceManifest struct {
	Spec struct {
		Mapping struct {
			CustomerID      string `json:"customerID"`
			Timestamp       string `json:"timestamp"`
			TimestampLayout string `json:"timestampLayout"`
			Amount          string `json:"amount"`
			Attributes      []struct {
				Name string `json:"name"`
				Type string `json:"type"`
			} `json:"attributes"`
			Contact struct {
				Email    string `json:"email"`
				Timezone string `json:"timezone"`
				Locale   string `json:"locale"`
				OptOut   string `json:"optOut"`
			} `json:"contact"`
		} `json:"mapping"`
		Scoring struct {
			Model         string `json:"model"`
			Horizon       string `json:"horizon"`
			HoldoutPeriod string `json:"holdoutPeriod"`
			CustomScores  []struct {
				Name       string `json:"name"`
				Expression string `json:"expression"`
			} `json:"customScores"`
		} `json:"scoring"`
	} `json:"spec"`
}

// readYAML parses a manifest; strict makes a field the struct does not
// know (a misspelt one) an error.
func readYAML(t *testing.T, path string, into any, strict bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	unmarshal := func(b []byte, into any) error { return yaml.Unmarshal(b, into) }
	if strict {
		unmarshal = func(b []byte, into any) error { return yaml.UnmarshalStrict(b, into) }
	}
	if err := unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

type sample struct {
	file string
	m    segmentManifest
}

func samples(t *testing.T) []sample {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(samplesDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples in %s: %v", samplesDir, err)
	}
	var out []sample
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		var m segmentManifest
		readYAML(t, f, &m, true)
		out = append(out, sample{file: f, m: m})
	}
	return out
}

// sourceSetup turns the CustomerSource sample into a reader mapping, a
// segment schema and scoring options.
func sourceSetup(t *testing.T) (source.Mapping, segment.Schema, scoring.Options) {
	t.Helper()
	var src sourceManifest
	readYAML(t, sourceSample, &src, false)
	mp := src.Spec.Mapping
	m := source.Mapping{CustomerID: mp.CustomerID, Timestamp: mp.Timestamp, Amount: mp.Amount, DateLayout: source.LayoutDate,
		Contact: source.ContactColumns{Email: mp.Contact.Email, Timezone: mp.Contact.Timezone, Locale: mp.Contact.Locale, OptOut: mp.Contact.OptOut}}
	if mp.TimestampLayout != "Date" {
		t.Fatalf("the source sample's timestamp layout %q: this test reads Date", mp.TimestampLayout)
	}
	schema := segment.Schema{Attributes: map[string]customer.AttributeType{}}
	for _, a := range mp.Attributes {
		typ := customer.AttributeType(a.Type)
		if typ == "" {
			typ = customer.String
		}
		m.Attributes = append(m.Attributes, source.Attribute{Name: a.Name, Type: typ})
		schema.Attributes[a.Name] = typ
	}
	sc := src.Spec.Scoring
	horizon, err := time.ParseDuration(sc.Horizon)
	if err != nil {
		t.Fatal(err)
	}
	holdout, err := time.ParseDuration(sc.HoldoutPeriod)
	if err != nil {
		t.Fatal(err)
	}
	o := scoring.Options{TimeUnit: 7, Model: btyd.ModelName(sc.Model), HorizonDays: horizon.Hours() / 24, HoldoutPeriod: holdout}
	for _, s := range sc.CustomScores {
		o.CustomScores = append(o.CustomScores, scoring.CustomScore{Name: s.Name, Expression: s.Expression})
		schema.CustomScores = append(schema.CustomScores, s.Name)
	}
	return m, schema, o
}

// scored generates customers as `retention-operator generate` does and
// scores them as the CustomerSource sample says.
func scored(t *testing.T, synth cli.SynthOptions, m source.Mapping, o scoring.Options) ([]*customer.Scored, *scoring.Result) {
	t.Helper()
	var tx, cust bytes.Buffer
	if _, err := cli.Synthesize(synth, &tx, &cust); err != nil {
		t.Fatal(err)
	}
	r := &source.CSV{Transactions: source.FromBytes(tx.Bytes()), Customers: source.FromBytes(cust.Bytes()), Mapping: m}
	o.ObservationEnd = synth.End
	var out []*customer.Scored
	res, err := scoring.Score(context.Background(), r, o, func(c *customer.Scored) error {
		cp := *c // the record is reused: copy it and its maps
		cp.Attributes = customer.Attributes{}
		for k, v := range c.Attributes {
			cp.Attributes[k] = v
		}
		cp.Scores.Custom = map[string]float64{}
		for k, v := range c.Scores.Custom {
			cp.Scores.Custom[k] = v
		}
		out = append(out, &cp)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, res
}

var kebab = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// TestSampleManifests checks the shape of every sample.
func TestSampleManifests(t *testing.T) {
	t.Parallel()
	kust, err := os.ReadFile(filepath.Join(samplesDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range samples(t) {
		m := s.m
		base := filepath.Base(s.file)
		switch {
		case m.APIVersion != "retention.dev/v1alpha1" || m.Kind != "Segment":
			t.Errorf("%s: %s %s, want retention.dev/v1alpha1 Segment", base, m.APIVersion, m.Kind)
		case !kebab.MatchString(m.Metadata.Name) || len(m.Metadata.Name) > 63:
			t.Errorf("%s: name %q is not kebab case", base, m.Metadata.Name)
		case base != m.Metadata.Name+".yaml":
			t.Errorf("%s: name %q does not match the file", base, m.Metadata.Name)
		case m.Spec.SourceRef.Name != "shop":
			t.Errorf("%s: sourceRef %q, want shop", base, m.Spec.SourceRef.Name)
		case m.Spec.Description == "" || len(m.Spec.Description) > 1024:
			t.Errorf("%s: description of %d bytes", base, len(m.Spec.Description))
		case m.Spec.Rule == "" || len(m.Spec.Rule) > 8192:
			t.Errorf("%s: rule of %d bytes", base, len(m.Spec.Rule))
		case !bytes.Contains(kust, []byte("  - "+base+"\n")):
			t.Errorf("%s is not in kustomization.yaml", base)
		}
	}
}

// TestSamplesOnGeneratedData scores data made by `retention-operator
// generate` as the CustomerSource sample says (and with other models), and
// checks that every sample compiles against the sample's schema and selects
// a sensible, non-empty share.
func TestSamplesOnGeneratedData(t *testing.T) {
	t.Parallel()
	m, schema, opts := sourceSetup(t)
	env, err := segment.NewEnv(schema, segment.EnvOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type compiled struct {
		name string
		rule *segment.Rule
	}
	var rules []compiled
	for _, s := range samples(t) {
		r, err := env.Compile(s.m.Spec.Rule)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(s.file), err)
		}
		rules = append(rules, compiled{s.m.Metadata.Name, r})
	}
	demo := cli.DefaultSynth() // hack/demo.sh: 5000 customers, seed 42
	demo.Seed, demo.Customers = 42, 5000
	for _, tc := range []struct {
		name  string
		synth cli.SynthOptions
		model btyd.ModelName
	}{
		{"demo data, the sample's model (Auto)", demo, opts.Model},
		{"default data, Pareto/NBD", cli.DefaultSynth(), btyd.NameParetoNBD},
		{"default data, BG/NBD", cli.DefaultSynth(), btyd.NameBGNBD},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := opts
			o.Model = tc.model
			cs, res := scored(t, tc.synth, m, o)
			var report strings.Builder
			fmt.Fprintf(&report, "%d customers, model %s; share of customers and of expected value:\n", len(cs), res.Selected)
			for _, r := range rules {
				st, err := segment.Preview(context.Background(), r.rule, slices.Values(cs), tc.synth.End)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&report, "  %-16s %5.1f%%  %5.1f%% of value  (%d)\n", r.name, 100*st.Share, 100*st.Value/st.TotalValue, st.Size)
				if st.Size == 0 || st.Size == st.Customers {
					t.Errorf("%s selects %d of %d customers", r.name, st.Size, st.Customers)
				}
				if st.Errors > 0 {
					t.Errorf("%s failed for %d customers: %s", r.name, st.Errors, st.FirstError)
				}
			}
			t.Log(report.String())
		})
	}
}

// TestSamplesDocumented: docs/segments.md has a section per sample with
// its rule, and the field reference names every field.
func TestSamplesDocumented(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	docs := string(b)
	norm := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	sections := strings.Split(docs, "\n## ")
	for _, s := range samples(t) {
		var section string
		for _, sec := range sections {
			if strings.HasPrefix(sec, s.m.Metadata.Name+"\n") || strings.HasPrefix(sec, s.m.Metadata.Name+" ") {
				section = sec
			}
		}
		if section == "" {
			t.Errorf("docs: no section \"## %s\"", s.m.Metadata.Name)
			continue
		}
		if !strings.Contains(norm(section), norm(s.m.Spec.Rule)) {
			t.Errorf("docs: section %s does not show the sample's rule %q", s.m.Metadata.Name, norm(s.m.Spec.Rule))
		}
	}
	_, schema, _ := sourceSetup(t)
	env, err := segment.NewEnv(schema, segment.EnvOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range env.Fields() {
		if !strings.Contains(docs, "`"+f.Name+"`") {
			t.Errorf("docs: field %s (%s) is not in the reference", f.Name, f.Type)
		}
	}
}
