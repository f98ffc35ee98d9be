package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPreview evaluates a sample Segment manifest against generated data
// through the command, and checks the usage errors.
func TestPreview(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tx, cust := filepath.Join(dir, "tx.csv"), filepath.Join(dir, "customers.csv")
	o := DefaultSynth()
	o.Customers, o.Seed = 2000, 5
	var txBuf, custBuf bytes.Buffer
	if _, err := Synthesize(o, &txBuf, &custBuf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tx, txBuf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cust, custBuf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join("..", "..", "config", "samples", "segments", "high-value.yaml")
	end := o.End.Format("2006-01-02")

	var out, errOut bytes.Buffer
	code := Preview([]string{"--segment", seg, "--csv", tx, "--customers", cust, "--calibration-end", end}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"segment high-value", "scored 2000 customers", "members", "P(alive)", "expected value"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	// --output json: the same numbers as nested objects (`jq .members.pAlive.median`).
	out.Reset()
	errOut.Reset()
	code = Preview([]string{"--segment", seg, "--csv", tx, "--customers", cust, "--calibration-end", end, "--output", "json"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("--output json: exit %d: %s", code, errOut.String())
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("--output json is not JSON: %v\n%s", err, out.String())
	}
	if m["segment"] != "high-value" || m["customers"] != 2000.0 {
		t.Errorf("segment %v, customers %v; want high-value, 2000", m["segment"], m["customers"])
	}
	size, _ := m["size"].(float64)
	members, _ := m["members"].(map[string]any)
	pAlive, _ := members["pAlive"].(map[string]any)
	if size <= 0 || pAlive["count"] != size {
		t.Errorf(`size %v, ["members"]["pAlive"]["count"] %v; want the same positive number`, m["size"], pAlive["count"])
	}
	if _, ok := pAlive["median"].(float64); !ok {
		t.Errorf(`["members"]["pAlive"]["median"] missing: %v`, members)
	}
	everyone, _ := m["everyone"].(map[string]any)
	if rec, _ := everyone["recencyDays"].(map[string]any); rec["count"] != 2000.0 {
		t.Errorf(`["everyone"]["recencyDays"] = %v, want count 2000`, rec)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no segment", []string{"--csv", tx}, "--segment is required"},
		{"not a segment", []string{"--segment", tx, "--csv", tx}, "not a Segment manifest"},
		{"attribute without customers file", []string{"--segment", filepath.Join("..", "..", "config", "samples", "segments", "unprofitable.yaml"), "--csv", tx}, "cost_to_serve"},
	} {
		var out, errOut bytes.Buffer
		if code := Preview(tc.args, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", tc.name, code, errOut.String(), tc.want)
		}
	}
}
