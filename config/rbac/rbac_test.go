// Package rbac_test checks the operator's RBAC (issue #19, least
// privilege): TestLeastPrivilege reads the manifests in this directory and
// fails on any grant that is not in its allow-list, where each grant names
// the code that uses it; TestOperatorRunsWithItsRBAC runs the operator's
// reconcilers as its service account, with exactly these grants, on a
// real kube-apiserver.
package rbac_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// grant is one verb on one resource in one of the operator's roles.
type grant struct {
	Role     string // "ClusterRole/manager-role", "Role/manager-role" (the jobs namespace), "Role/leader-election-role"
	Group    string // "" is the core group
	Resource string // with its subresource: "jobs/finalizers"
	Verb     string
}

func (g grant) String() string {
	group := g.Group
	if group == "" {
		group = "core"
	}
	return fmt.Sprintf("%s: %s %s/%s", g.Role, g.Verb, group, g.Resource)
}

const (
	clusterRole = "ClusterRole/manager-role"
	jobsRole    = "Role/manager-role"
	leaderRole  = "Role/leader-election-role"
)

// allowed is every grant the operator needs, with the code that uses it.
// A grant in the manifests and not here fails the test: add it here only
// with the code that needs it.
var allowed = []struct {
	grant
	why string
}{
	// The ClusterRole: the operator's kinds in every namespace, and what
	// they refer to there.
	{grant{clusterRole, "", "configmaps", "get"}, "refs.go secrets.configMapKey: a CSV source's data from a ConfigMap, read uncached (APIReader)"},
	{grant{clusterRole, "", "configmaps", "list"}, "customersource_controller.go SetupWithManager WatchesMetadata(ConfigMap): new data is scored at once; inputRevision reads that metadata cache"},
	{grant{clusterRole, "", "configmaps", "watch"}, "the same metadata-only ConfigMap watch"},
	{grant{clusterRole, "", "secrets", "get"}, "refs.go secrets.secretData (Channel and CustomerSource Secrets), campaignrun_job.go secretValue (a run's credentials), customersource_input.go inputRevision (metadata), customererasure_controller.go erase (the ids): all uncached (APIReader)"},
	{grant{clusterRole, "", "secrets", "patch"}, "customererasure_controller.go clearSecret: removes the data of a CustomerErasure's Secret once the customers are erased (issue #20), only of Secrets of type retention.dev/customer-ids"},
	{grant{clusterRole, "retention.dev", "customererasures", "list"}, "customererasure_controller.go For(CustomerErasure)"},
	{grant{clusterRole, "retention.dev", "customererasures", "watch"}, "the same informer"},
	{grant{clusterRole, "retention.dev", "customererasures/status", "patch"}, "common.go statusPatcher.Patch"},
	{grant{clusterRole, "events.k8s.io", "events", "create"}, "common.go eventForTransition and the reconcilers' Eventf (mgr.GetEventRecorder, events.k8s.io/v1)"},
	{grant{clusterRole, "events.k8s.io", "events", "patch"}, "the same recorder, when an Event repeats (its series)"},
	{grant{clusterRole, "retention.dev", "campaignruns", "create"}, "campaign_controller.go startRun: a scheduled or on-enter run"},
	{grant{clusterRole, "retention.dev", "campaignruns", "delete"}, "campaign_controller.go prune: finished runs beyond the history limits"},
	{grant{clusterRole, "retention.dev", "campaignruns", "list"}, "campaignrun_controller.go For(CampaignRun), campaign_controller.go Watches(CampaignRun) and its runs listed from the cache"},
	{grant{clusterRole, "retention.dev", "campaignruns", "watch"}, "the same informer"},
	{grant{clusterRole, "retention.dev", "campaignruns", "patch"}, "campaignrun_controller.go ensureRunMetadata and its finalizer; campaign_controller.go requestCancel"},
	{grant{clusterRole, "retention.dev", "campaignruns/status", "patch"}, "common.go statusPatcher.Patch"},
	{grant{clusterRole, "retention.dev", "campaigns", "list"}, "campaign_controller.go For(Campaign); campaignrun_controller.go Watches(Campaign) and reads it from the cache"},
	{grant{clusterRole, "retention.dev", "campaigns", "watch"}, "the same informer"},
	{grant{clusterRole, "retention.dev", "campaigns/status", "patch"}, "common.go statusPatcher.Patch"},
	{grant{clusterRole, "retention.dev", "campaigns/finalizers", "update"}, "campaign_controller.go startRun SetControllerReference: blockOwnerDeletion on the Campaign (OwnerReferencesPermissionEnforcement)"},
	{grant{clusterRole, "retention.dev", "channels", "list"}, "channel_controller.go For(Channel) and secretRecheck; campaign and campaignrun controllers watch Channels and read them from the cache"},
	{grant{clusterRole, "retention.dev", "channels", "watch"}, "the same informer"},
	{grant{clusterRole, "retention.dev", "channels/status", "patch"}, "common.go statusPatcher.Patch"},
	{grant{clusterRole, "retention.dev", "customersources", "get"}, "customersource_controller.go latest: the source read uncached before a scoring"},
	{grant{clusterRole, "retention.dev", "customersources", "list"}, "customersource_controller.go For(CustomerSource) and secretRecheck; segment and campaignrun controllers watch sources"},
	{grant{clusterRole, "retention.dev", "customersources", "watch"}, "the same informer"},
	{grant{clusterRole, "retention.dev", "customersources", "patch"}, "common.go ensureFinalizer and releaseFinalizer (snapshots finalizer)"},
	{grant{clusterRole, "retention.dev", "customersources/status", "patch"}, "common.go statusPatcher.Patch"},
	{grant{clusterRole, "retention.dev", "segments", "list"}, "segment_controller.go For(Segment); campaign and campaignrun controllers watch Segments"},
	{grant{clusterRole, "retention.dev", "segments", "watch"}, "the same informer"},
	{grant{clusterRole, "retention.dev", "segments", "patch"}, "common.go ensureFinalizer and releaseFinalizer (membership finalizer)"},
	{grant{clusterRole, "retention.dev", "segments/status", "patch"}, "common.go statusPatcher.Patch"},

	// The namespaced Role: the jobs namespace (--jobs-namespace, the
	// operator's own by default) and nothing else.
	{grant{jobsRole, "batch", "jobs", "create"}, "campaignrun_job.go launch: a run's outreach Job"},
	{grant{jobsRole, "batch", "jobs", "list"}, "campaignrun_controller.go Watches(Job) and currentJob's cached read, in the jobs namespace only (controllers.CacheOptions)"},
	{grant{jobsRole, "batch", "jobs", "watch"}, "the same informer"},
	{grant{jobsRole, "batch", "jobs", "deletecollection"}, "campaignrun_job.go deleteJobs: DeleteAllOf the run's Jobs (finalizer, cancellation)"},
	{grant{jobsRole, "batch", "jobs/finalizers", "update"}, "campaignrun_job.go ensureSecret: the per-run Secret's owner reference blocks its Job's deletion (OwnerReferencesPermissionEnforcement)"},
	{grant{jobsRole, "", "secrets", "create"}, "campaignrun_job.go ensureSecret: the per-run credentials Secret"},
	{grant{jobsRole, "", "secrets", "deletecollection"}, "campaignrun_job.go deleteJobs: DeleteAllOf the run's Secret"},

	// Leader election, in the operator's namespace (hand-written).
	{grant{leaderRole, "coordination.k8s.io", "leases", "get"}, "main.go --leader-elect: client-go's LeaseLock reads the Lease"},
	{grant{leaderRole, "coordination.k8s.io", "leases", "create"}, "LeaseLock: the first leader creates it"},
	{grant{leaderRole, "coordination.k8s.io", "leases", "update"}, "LeaseLock: renewals, and the release on shutdown (LeaderElectionReleaseOnCancel)"},
	{grant{leaderRole, "", "events", "create"}, "the elector's \"became leader\" Event (controller-runtime's core/v1 recorder)"},
	{grant{leaderRole, "", "events", "patch"}, "the same recorder, when an Event repeats"},
}

// TestLeastPrivilege: the roles grant exactly the allow-list, no wildcard,
// no Secret list or watch anywhere, Secret writes and Jobs only in the
// namespaced Role, and the bindings give these roles, and only these, to
// the operator's service account.
func TestLeastPrivilege(t *testing.T) {
	roles := readRoles(t, "role.yaml", "leader_election_role.yaml")
	granted := map[grant]bool{}
	for _, r := range roles {
		for _, rule := range r.Rules {
			if len(rule.NonResourceURLs) > 0 || len(rule.ResourceNames) > 0 {
				t.Errorf("%s: a rule with nonResourceURLs or resourceNames, which the allow-list does not know: %+v", r.id(), rule)
			}
			for _, g := range rule.APIGroups {
				for _, res := range rule.Resources {
					for _, v := range rule.Verbs {
						if g == "*" || res == "*" || v == "*" {
							t.Errorf("%s: wildcard grant %q %q %q", r.id(), g, res, v)
						}
						granted[grant{r.id(), g, res, v}] = true
					}
				}
			}
		}
	}
	want := map[grant]string{}
	for _, a := range allowed {
		if _, dup := want[a.grant]; dup {
			t.Errorf("allow-list: %s twice", a.grant)
		}
		want[a.grant] = a.why
	}
	var extra, missing []string
	for g := range granted {
		if _, ok := want[g]; !ok {
			extra = append(extra, g.String())
		}
	}
	for g := range want {
		if !granted[g] {
			missing = append(missing, g.String())
		}
	}
	sort.Strings(extra)
	sort.Strings(missing)
	for _, g := range extra {
		t.Errorf("granted but not in the allow-list (no code is known to use it; remove its marker, or add it to the allow-list naming the code): %s", g)
	}
	for _, g := range missing {
		t.Errorf("in the allow-list but not granted (the code that uses it would be forbidden; restore its marker or drop the entry): %s", g)
	}
	if len(extra)+len(missing) == 0 {
		t.Logf("%d grants, all in the allow-list", len(granted))
	}

	// What issue #19 names, asserted on its own so that no allow-list edit
	// can let it through quietly.
	for g := range granted {
		switch {
		case g.Resource == "secrets" && g.Role == clusterRole && g.Verb != "get" && g.Verb != "patch":
			t.Errorf("the ClusterRole grants %s on Secrets: cluster-wide, Secrets are read with get, and an erasure's ids cleared with patch, only", g.Verb)
		case g.Resource == "secrets" && (g.Verb == "list" || g.Verb == "watch"):
			t.Errorf("%s: the operator never lists or watches Secrets", g)
		case g.Resource == "secrets" && g.Role != clusterRole && g.Role != jobsRole:
			t.Errorf("%s: Secrets are written in the jobs namespace only", g)
		case (g.Group == "batch" || strings.HasPrefix(g.Resource, "jobs")) && g.Role != jobsRole:
			t.Errorf("%s: Jobs are touched in the jobs namespace only (the namespaced Role)", g)
		case g.Group == "rbac.authorization.k8s.io" || g.Resource == "pods/exec" || g.Resource == "serviceaccounts/token" ||
			g.Verb == "escalate" || g.Verb == "bind" || g.Verb == "impersonate":
			t.Errorf("%s: a grant that can escalate", g)
		}
	}

	// Both namespaced roles are in the namespace that config/default's
	// kustomization renames to the operator's (and the service account's).
	sa := readServiceAccountNamespace(t)
	for _, r := range roles {
		if r.Kind == "Role" && r.Namespace != sa {
			t.Errorf("%s is in namespace %q, the service account in %q: kustomize would not put them together", r.id(), r.Namespace, sa)
		}
		if r.Kind == "ClusterRole" && r.Namespace != "" {
			t.Errorf("%s has a namespace", r.id())
		}
	}
	checkBindings(t, roles, sa)
	checkKustomization(t)
}

// role is a ClusterRole or a Role as read from a manifest.
type role struct {
	Kind      string
	Name      string
	Namespace string
	Rules     []rbacv1.PolicyRule
}

func (r role) id() string { return r.Kind + "/" + r.Name }

// readRoles reads every ClusterRole and Role of the files.
func readRoles(t *testing.T, files ...string) []role {
	t.Helper()
	var roles []role
	for _, f := range files {
		for _, doc := range readDocs(t, f) {
			var meta struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Name      string `json:"name"`
					Namespace string `json:"namespace"`
				} `json:"metadata"`
				Rules []rbacv1.PolicyRule `json:"rules"`
			}
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			switch meta.Kind {
			case "ClusterRole", "Role":
				roles = append(roles, role{meta.Kind, meta.Metadata.Name, meta.Metadata.Namespace, meta.Rules})
			default:
				t.Fatalf("%s: unexpected kind %q", f, meta.Kind)
			}
		}
	}
	ids := map[string]bool{}
	for _, r := range roles {
		ids[r.id()] = true
	}
	for _, id := range []string{clusterRole, jobsRole, leaderRole} {
		if !ids[id] {
			t.Fatalf("no %s in %v", id, files)
		}
	}
	if len(roles) != 3 {
		t.Fatalf("%d roles, want the 3 the allow-list knows (%s, %s, %s)", len(roles), clusterRole, jobsRole, leaderRole)
	}
	return roles
}

// readDocs splits a YAML stream into its non-empty documents.
func readDocs(t *testing.T, file string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
}

func stripComments(doc []byte) []byte {
	var out []byte
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}

func readServiceAccountNamespace(t *testing.T) string {
	t.Helper()
	docs := readDocs(t, "service_account.yaml")
	if len(docs) != 1 {
		t.Fatalf("service_account.yaml: %d documents, want 1", len(docs))
	}
	var sa struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(docs[0], &sa); err != nil || sa.Kind != "ServiceAccount" || sa.Metadata.Name != serviceAccount {
		t.Fatalf("service_account.yaml: want ServiceAccount %s, got %+v (%v)", serviceAccount, sa, err)
	}
	return sa.Metadata.Namespace
}

// serviceAccount is the operator's service account (before kustomize's prefix).
const serviceAccount = "controller-manager"

// checkBindings: each role is bound, to the operator's service account
// alone, and no binding refers to anything else.
func checkBindings(t *testing.T, roles []role, saNamespace string) {
	t.Helper()
	bound := map[string]bool{}
	for _, f := range []string{"role_binding.yaml", "leader_election_role_binding.yaml"} {
		for _, doc := range readDocs(t, f) {
			var b struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Namespace string `json:"namespace"`
				} `json:"metadata"`
				RoleRef  rbacv1.RoleRef   `json:"roleRef"`
				Subjects []rbacv1.Subject `json:"subjects"`
			}
			if err := yaml.Unmarshal(doc, &b); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			id := b.RoleRef.Kind + "/" + b.RoleRef.Name
			if !slices.ContainsFunc(roles, func(r role) bool { return r.id() == id }) {
				t.Errorf("%s: %s binds %s, which is not one of the operator's roles", f, b.Kind, id)
			}
			if b.Kind == "ClusterRoleBinding" && b.RoleRef.Kind != "ClusterRole" || b.Kind == "RoleBinding" && b.RoleRef.Kind != "Role" {
				t.Errorf("%s: a %s for a %s: a ClusterRole is bound cluster-wide, a Role in its namespace", f, b.Kind, b.RoleRef.Kind)
			}
			if b.Kind == "RoleBinding" && b.Metadata.Namespace != saNamespace {
				t.Errorf("%s: RoleBinding in %q, want %q", f, b.Metadata.Namespace, saNamespace)
			}
			want := []rbacv1.Subject{{Kind: "ServiceAccount", Name: serviceAccount, Namespace: saNamespace}}
			if !slices.Equal(b.Subjects, want) {
				t.Errorf("%s: %s subjects %+v, want only %+v", f, id, b.Subjects, want)
			}
			bound[id] = true
		}
	}
	for _, r := range roles {
		if !bound[r.id()] {
			t.Errorf("%s is not bound to the operator's service account", r.id())
		}
	}
}

// checkKustomization: config/rbac's kustomization deploys every manifest
// of this directory.
func checkKustomization(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".yaml") && e.Name() != "kustomization.yaml" && !slices.Contains(k.Resources, e.Name()) {
			t.Errorf("kustomization.yaml does not deploy %s", e.Name())
		}
	}
}
