package customer

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDomainPackagesStayOutOfKubernetes keeps the layout's promise: the
// internal/ packages know nothing of controller-runtime, client-go or the
// API types; controllers turn custom resources into plain values for them.
func TestDomainPackagesStayOutOfKubernetes(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "-test=false", "../...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	// go list -deps over ../... lists the internal packages and all they
	// import; list each internal package's own deps to name the culprit.
	pkgs, err := exec.Command("go", "list", "../...").Output()
	if err != nil {
		t.Fatal(err)
	}
	forbidden := []string{"sigs.k8s.io/controller-runtime", "k8s.io/client-go", "github.com/retention-dev/retention-operator/api/", "github.com/retention-dev/retention-operator/controllers"}
	for _, pkg := range strings.Fields(string(pkgs)) {
		deps, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, d := range strings.Fields(string(deps)) {
			for _, f := range forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("%s depends on %s", pkg, d)
				}
			}
		}
	}
	if !strings.Contains(string(out), "github.com/retention-dev/retention-operator/internal/store") {
		t.Fatalf("go list found no internal packages:\n%s", out)
	}
}
