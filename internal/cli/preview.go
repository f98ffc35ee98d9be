package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/scoring"
	"github.com/retention-dev/retention-operator/internal/segment"
)

// Preview runs `retention-operator preview`: it scores a CSV offline as
// `score` does, evaluates a Segment manifest's rule on every scored
// customer with the operator's segment code, and prints the segment's
// size, share and score distribution beside everyone's, so a marketer can
// tune a rule before applying it. Nothing is written anywhere.
func Preview(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	return exit("preview", stderr, runPreview(ctx, args, stdout, stderr))
}

// segmentManifest is the part of a Segment manifest preview reads.
type segmentManifest struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Rule string `json:"rule"`
	} `json:"spec"`
}

func runPreview(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := &scoreCmd{}
	fs := c.flags(stderr)
	var segmentPath string
	fs.StringVar(&segmentPath, "segment", "", "Segment manifest `file` (YAML) whose spec.rule is evaluated; required")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: retention-operator preview --segment FILE --csv FILE [--customers FILE] [flags]\n\n"+
			"Scores the CSV as the operator does, evaluates the segment's rule on every customer and prints\n"+
			"its size, share and score distribution (--output json: as a JSON object). Attributes are the\n"+
			"customers file's columns.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if segmentPath == "" {
		return usagef("--segment is required")
	}
	m, err := readSegment(segmentPath)
	if err != nil {
		return err
	}
	r, opts, _, err := c.options(stderr)
	if err != nil {
		return err
	}
	schema := segment.Schema{Attributes: map[string]customer.AttributeType{}}
	for _, a := range r.Mapping.Attributes {
		schema.Attributes[a.Name] = a.Type
	}
	for _, s := range opts.CustomScores {
		schema.CustomScores = append(schema.CustomScores, s.Name)
	}
	rule, err := segment.Compile(m.Spec.Rule, schema)
	if err != nil {
		return usagef("segment %s: %v", m.Metadata.Name, err)
	}
	// The rule's `now` is the end of the observed period, as for the
	// operator, whose observed period ends at the time of scoring.
	now := opts.ObservationEnd
	if now.IsZero() {
		now = opts.Clock.Now()
	}
	pv := segment.NewPreviewer(rule, now)
	res, err := scoring.Score(ctx, r, opts, func(c *customer.Scored) error {
		pv.Add(c)
		return nil
	})
	if err != nil {
		return err
	}
	st := pv.Stats()
	if c.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(previewReport(m.Metadata.Name, modelKeys[res.Selected], st))
	}
	fmt.Fprintf(stdout, "segment %s: %s\nscored %d customers with %s\n\n", m.Metadata.Name, strings.TrimSpace(m.Spec.Rule), res.Customers, res.Selected)
	return st.Print(stdout)
}

// previewReport is the object `preview --output json` prints, nested like
// score's (`jq .members.pAlive.median`). A group without customers has
// only its count.
func previewReport(name, model string, s *segment.PreviewStats) map[string]any {
	out := map[string]any{
		"segment":    name,
		"rule":       s.Rule,
		"model":      model,
		"customers":  s.Customers,
		"size":       s.Size,
		"share":      s.Share,
		"value":      s.Value,
		"totalValue": s.TotalValue,
		"errors":     s.Errors,
	}
	if s.FirstError != "" {
		out["firstError"] = s.FirstError
	}
	for key, d := range map[string]segment.Distribution{"members": s.Members, "everyone": s.Everyone} {
		g := map[string]any{}
		for field, sm := range map[string]segment.Summary{"pAlive": d.PAlive, "expectedValue": d.ExpectedValue, "recencyDays": d.RecencyDays} {
			if sm.Count == 0 {
				g[field] = map[string]any{"count": sm.Count}
				continue
			}
			g[field] = map[string]any{"count": sm.Count, "min": sm.Min, "p10": sm.P10, "p25": sm.P25, "median": sm.Median,
				"p75": sm.P75, "p90": sm.P90, "max": sm.Max, "mean": sm.Mean}
		}
		out[key] = g
	}
	return out
}

// readSegment reads a Segment manifest.
func readSegment(path string) (*segmentManifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m segmentManifest
	if err := yaml.Unmarshal(data, &m); err != nil || m.Kind != "Segment" || strings.TrimSpace(m.Spec.Rule) == "" {
		return nil, usagef("%s: not a Segment manifest with spec.rule", path)
	}
	return &m, nil
}
