package controllers

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
)

// TestShortNamesUnique asks the suite's kube-apiserver, through discovery,
// for every resource of every group and version, and fails when a short
// name of this API is also a short name or a name of a resource in another
// group: `kubectl get cs` must keep listing ComponentStatuses.
func TestShortNamesUnique(t *testing.T) {
	dc, err := discovery.NewDiscoveryClientForConfig(restConfig)
	if err != nil {
		t.Fatal(err)
	}
	_, lists, err := dc.ServerGroupsAndResources()
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	ours := map[string]string{}     // short name -> our resource
	others := map[string][]string{} // short name, name or singular name -> resources of other groups
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			t.Fatalf("group version %q: %v", l.GroupVersion, err)
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") { // a subresource
				continue
			}
			res := r.Name + "." + gv.String()
			if gv.Group == retentionv1.GroupVersion.Group {
				for _, s := range r.ShortNames {
					ours[s] = res
				}
				continue
			}
			names := append([]string{r.Name}, r.ShortNames...)
			if r.SingularName != "" {
				names = append(names, r.SingularName)
			}
			for _, n := range names {
				others[n] = append(others[n], res)
			}
		}
	}
	if len(ours) == 0 {
		t.Fatalf("discovery lists no short names of %s: are the CRDs installed?", retentionv1.GroupVersion.Group)
	}
	// The check is only as good as the list of built-in names it reads.
	if !slices.Contains(others["cs"], "componentstatuses.v1") {
		t.Fatalf("discovery does not list the built-in short name cs of componentstatuses: %v", others["cs"])
	}
	short := slices.Sorted(maps.Keys(ours))
	for _, s := range short {
		if clash := others[s]; len(clash) > 0 {
			t.Errorf("short name %q of %s is also used by %s", s, ours[s], strings.Join(clash, ", "))
		}
	}
	t.Logf("short names of %s: %v", retentionv1.GroupVersion.Group, short)
}
