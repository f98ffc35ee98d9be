package promcheck

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// dashboardVars are the values the dashboard's variables get in the
// checks: one namespace, one campaign, the job of Prometheus' target.
var dashboardVars = map[string]string{"namespace": "shop", "campaign": "winback", "job": "retention-operator"}

// TestDashboardLint checks the dashboard's structure: valid JSON of a
// recent schema with a stable uid, the template variables, unique panel
// ids, every panel and query on the ${datasource} variable, every query
// with an expression, panels inside the 24-column grid and not on top of
// each other.
func TestDashboardLint(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, DashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(b) {
		t.Fatalf("%s is not valid JSON", DashboardFile)
	}
	d, err := readDashboard(filepath.Join(root, DashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	if d.UID != "retention-operator" || d.Title == "" {
		t.Errorf("uid %q, title %q; want the stable uid retention-operator and a title", d.UID, d.Title)
	}
	if d.SchemaVersion < 39 {
		t.Errorf("schemaVersion %d; want at least 39", d.SchemaVersion)
	}

	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		if _, dup := vars[v.Name]; dup {
			t.Errorf("variable %s defined twice", v.Name)
		}
		vars[v.Name] = v
	}
	if ds, ok := vars["datasource"]; !ok || ds.Type != "datasource" || ds.queryString() != "prometheus" {
		t.Errorf("variable datasource = %+v; want a datasource variable of type prometheus", ds)
	}
	for _, name := range []string{"namespace", "campaign", "job"} {
		v, ok := vars[name]
		if !ok {
			t.Errorf("variable %s is missing", name)
			continue
		}
		if v.Type != "query" || !strings.HasPrefix(v.queryString(), "label_values(") {
			t.Errorf("variable %s: type %q, query %q; want a label_values query", name, v.Type, v.queryString())
		}
		if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
			t.Errorf("variable %s: data source %+v; want ${datasource}", name, v.Datasource)
		}
	}
	// Campaign is multi-valued and matched as a regex, so All must be one.
	if c := vars["campaign"]; !c.Multi || !c.IncludeAll || c.AllValue != ".*" {
		t.Errorf("variable campaign: multi %v, includeAll %v, allValue %q; want multi with All = .*", c.Multi, c.IncludeAll, c.AllValue)
	}

	ids := map[int]string{}
	rows := map[string]bool{}
	type rect struct {
		title      string
		x, y, w, h int
	}
	var placed []rect
	for _, p := range d.allPanels() {
		where := fmt.Sprintf("panel %q (id %d)", p.Title, p.ID)
		if p.ID <= 0 {
			t.Errorf("%s: id must be positive", where)
		}
		if other, dup := ids[p.ID]; dup {
			t.Errorf("%s: id also used by panel %q", where, other)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("%s: gridPos %+v outside the 24-column grid", where, g)
		}
		for _, o := range placed {
			if g.X < o.x+o.w && o.x < g.X+g.W && g.Y < o.y+o.h && o.y < g.Y+g.H {
				t.Errorf("%s overlaps panel %q", where, o.title)
			}
		}
		placed = append(placed, rect{p.Title, g.X, g.Y, g.W, g.H})
		if p.Type == "row" {
			rows[p.Title] = true
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
			t.Errorf("%s: data source %+v; want the prometheus ${datasource}", where, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no queries", where)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("%s: refId %q empty or repeated", where, tg.RefID)
			}
			refs[tg.RefID] = true
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("%s query %s: no expr", where, tg.RefID)
			}
			if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
				t.Errorf("%s query %s: data source %+v; want ${datasource}", where, tg.RefID, tg.Datasource)
			}
		}
	}
	for _, r := range []string{"Sources", "Segments", "Campaigns", "Operator"} {
		if !rows[r] {
			t.Errorf("row %q is missing", r)
		}
	}
}

// TestExpressionsParse checks that every expression of the dashboard
// (with its variables substituted) and of the rule file parses as PromQL,
// by handing them to promtool as recording rules, and that the rule file
// itself passes `promtool check rules`.
func TestExpressionsParse(t *testing.T) {
	root := repoRoot(t)
	exprs, err := Expressions(root, dashboardVars)
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) < 40 {
		t.Fatalf("only %d expressions found", len(exprs))
	}
	var rf ruleFile
	for i, e := range exprs {
		if strings.Contains(e.Raw, "datasource") {
			t.Errorf("%s: the data source belongs to the panel, not the query: %s", e, e.Raw)
		}
		rf.Groups = append(rf.Groups, ruleGroup{
			Name:  fmt.Sprintf("%03d %s", i, e),
			Rules: []rule{{Record: "promcheck:expr", Expr: e.Expr}},
		})
	}
	b, err := json.Marshal(rf) // JSON is YAML
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "exprs.rules.yaml")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	promtool(t, "check", "rules", "--lint=none", tmp)
	promtool(t, "check", "rules", "--lint=all", "--lint-fatal", filepath.Join(root, RulesFile))
}

// promtool runs promtool with args and fails the test with its output on
// an error.
func promtool(t *testing.T, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not in PATH (%v): run `make tools`, which installs it from Debian's packages", err)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}
