package chart

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// crdNames are the CRDs of config/crd/bases, by metadata.name, with their
// files.
func crdNames(t *testing.T) map[string]map[string]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "config/crd/bases/*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in config/crd/bases (%v)", err)
	}
	crds := map[string]map[string]any{}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		for _, d := range readYAMLDocs(t, rel) {
			u := unstructured.Unstructured{Object: d}
			crds[u.GetName()] = d
		}
	}
	return crds
}

// TestDefaultObjects: with the default values the chart renders what
// config/default deploys — the CRDs, the service account, the three roles
// and their bindings, the Deployment and the metrics Service — and nothing
// optional.
func TestDefaultObjects(t *testing.T) {
	got := render(t).ids()
	want := map[string]bool{
		"ServiceAccount/retention-system/retention-operator":              true,
		"ClusterRole/retention-system-retention-operator-manager":         true,
		"ClusterRoleBinding/retention-system-retention-operator-manager":  true,
		"Role/retention-system/retention-operator-jobs":                   true,
		"RoleBinding/retention-system/retention-operator-jobs":            true,
		"Role/retention-system/retention-operator-leader-election":        true,
		"RoleBinding/retention-system/retention-operator-leader-election": true,
		"Deployment/retention-system/retention-operator":                  true,
		"Service/retention-system/retention-operator-metrics":             true,
	}
	for name := range crdNames(t) {
		want["CustomResourceDefinition/"+name] = true
	}
	if !maps.Equal(got, want) {
		t.Errorf("default objects:\n got %v\nwant %v", sortedKeys(got), sortedKeys(want))
	}
}

// TestToggles: each toggle adds (or removes) exactly its objects.
func TestToggles(t *testing.T) {
	base := render(t).ids()
	crds := map[string]bool{}
	for name := range crdNames(t) {
		crds["CustomResourceDefinition/"+name] = true
	}
	for _, tc := range []struct {
		name           string
		set            []string
		added, removed []string
	}{
		{"serviceMonitor", []string{"metrics.serviceMonitor.enabled=true"}, []string{"ServiceMonitor/retention-system/retention-operator"}, nil},
		{"serviceMonitor elsewhere", []string{"metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.namespace=monitoring"}, []string{"ServiceMonitor/monitoring/retention-operator"}, nil},
		{"podMonitor", []string{"metrics.podMonitor.enabled=true"}, []string{"PodMonitor/retention-system/retention-operator"}, nil},
		{"rules", []string{"metrics.rules.enabled=true"}, []string{"PrometheusRule/retention-system/retention-operator"}, nil},
		{"dashboard", []string{"metrics.dashboard.enabled=true"}, []string{"ConfigMap/retention-system/retention-operator-dashboard"}, nil},
		{"networkPolicy", []string{"networkPolicy.enabled=true"}, []string{"NetworkPolicy/retention-system/retention-operator"}, nil},
		{"unsubscribe", []string{"unsubscribe.enabled=true", "unsubscribe.url=https://retention.example.com", "unsubscribe.keySecret.name=unsub"}, []string{"Service/retention-system/retention-operator-unsubscribe"}, nil},
		{"unsubscribe without its Service", []string{"unsubscribe.enabled=true", "unsubscribe.url=https://retention.example.com", "unsubscribe.keySecret.name=unsub", "unsubscribe.service.enabled=false"}, nil, nil},
		{"no metrics Service", []string{"metrics.service.enabled=false"}, nil, []string{"Service/retention-system/retention-operator-metrics"}},
		{"no CRDs", []string{"crds.enabled=false"}, nil, sortedKeys(crds)},
		{"existing service account", []string{"serviceAccount.create=false", "serviceAccount.name=existing"}, nil, []string{"ServiceAccount/retention-system/retention-operator"}},
		{"no leader election", []string{"leaderElection.enabled=false"}, nil, []string{"Role/retention-system/retention-operator-leader-election", "RoleBinding/retention-system/retention-operator-leader-election"}},
		{"jobs elsewhere", []string{"jobs.namespace=retention-jobs"},
			[]string{"Role/retention-jobs/retention-operator-jobs", "RoleBinding/retention-jobs/retention-operator-jobs"},
			[]string{"Role/retention-system/retention-operator-jobs", "RoleBinding/retention-system/retention-operator-jobs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			got := render(t, args...).ids()
			var added, removed []string
			for k := range got {
				if !base[k] {
					added = append(added, k)
				}
			}
			for k := range base {
				if !got[k] {
					removed = append(removed, k)
				}
			}
			slices.Sort(added)
			slices.Sort(removed)
			slices.Sort(tc.added)
			slices.Sort(tc.removed)
			if !slices.Equal(added, tc.added) || !slices.Equal(removed, tc.removed) {
				t.Errorf("--set %v:\n added %v, want %v\n removed %v, want %v", tc.set, added, tc.added, removed, tc.removed)
			}
		})
	}
}

// TestAdditionalLabels: each monitoring object carries its
// additionalLabels (a Prometheus or Grafana selects by them) and its
// annotations.
func TestAdditionalLabels(t *testing.T) {
	for _, tc := range []struct{ key, id string }{
		{"serviceMonitor", "ServiceMonitor/retention-system/retention-operator"},
		{"podMonitor", "PodMonitor/retention-system/retention-operator"},
		{"rules", "PrometheusRule/retention-system/retention-operator"},
		{"dashboard", "ConfigMap/retention-system/retention-operator-dashboard"},
	} {
		objs := render(t, "--set", "metrics."+tc.key+".enabled=true",
			"--set", "metrics."+tc.key+".additionalLabels.release=kube-prometheus-stack",
			"--set", "metrics."+tc.key+".annotations.example\\.com/owner=platform")
		u := objs.get(t, tc.id)
		if u.GetLabels()["release"] != "kube-prometheus-stack" {
			t.Errorf("%s: labels %v, want release=kube-prometheus-stack among them", tc.id, u.GetLabels())
		}
		if u.GetAnnotations()["example.com/owner"] != "platform" {
			t.Errorf("%s: annotations %v", tc.id, u.GetAnnotations())
		}
	}
}

// TestCRDs: the chart's CRDs are config/crd/bases' (what controller-gen
// makes of the markers), spec for spec, with helm.sh/resource-policy: keep
// exactly when crds.keep (the default).
func TestCRDs(t *testing.T) {
	want := crdNames(t)
	for _, keep := range []bool{true, false} {
		objs := render(t, "--set", "crds.keep="+map[bool]string{true: "true", false: "false"}[keep]).ofKind("CustomResourceDefinition")
		if len(objs) != len(want) {
			t.Fatalf("%d CRDs rendered, config/crd/bases has %d", len(objs), len(want))
		}
		for _, u := range objs {
			src, ok := want[u.GetName()]
			if !ok {
				t.Errorf("CRD %s is not in config/crd/bases", u.GetName())
				continue
			}
			if !reflect.DeepEqual(u.Object["spec"], src["spec"]) {
				t.Errorf("CRD %s: spec differs from config/crd/bases (run `make manifests`)", u.GetName())
			}
			srcU := unstructured.Unstructured{Object: src}
			for k, v := range srcU.GetAnnotations() {
				if u.GetAnnotations()[k] != v {
					t.Errorf("CRD %s: annotation %s=%q, config/crd/bases has %q", u.GetName(), k, u.GetAnnotations()[k], v)
				}
			}
			policy, has := u.GetAnnotations()["helm.sh/resource-policy"]
			if keep && policy != "keep" || !keep && has {
				t.Errorf("CRD %s with crds.keep=%v: helm.sh/resource-policy %q (present %v)", u.GetName(), keep, policy, has)
			}
			if u.GetLabels()["app.kubernetes.io/component"] != "crds" {
				t.Errorf("CRD %s: labels %v, want app.kubernetes.io/component=crds", u.GetName(), u.GetLabels())
			}
		}
	}
}

// configRoles reads the rules of config/rbac's three roles.
func configRoles(t *testing.T) map[string][]rbacv1.PolicyRule {
	t.Helper()
	roles := map[string][]rbacv1.PolicyRule{}
	for _, f := range []string{"config/rbac/role.yaml", "config/rbac/leader_election_role.yaml"} {
		for _, d := range readYAMLDocs(t, f) {
			var r rbacv1.ClusterRole // a Role reads the same
			into(t, map[string]any{"metadata": map[string]any{"name": d["metadata"].(map[string]any)["name"]}, "rules": d["rules"]}, &r)
			roles[d["kind"].(string)+"/"+r.Name] = r.Rules
		}
	}
	if len(roles) != 3 {
		t.Fatalf("config/rbac: %d roles, want 3: %v", len(roles), sortedKeys(roles))
	}
	return roles
}

// TestRBACEqualsConfig: the chart grants what config/rbac grants — the
// ClusterRole, the jobs namespace Role and the leader-election Role rule
// for rule (config/rbac/rbac_test.go holds those to least privilege) —
// bound to the chart's service account alone, the jobs Role in the jobs
// namespace and the leader-election Role in the Lease's; and no other RBAC.
func TestRBACEqualsConfig(t *testing.T) {
	cfg := configRoles(t)
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			objs := render(t, vs.args...)
			deploy := deployment(t, objs)
			sa := deploy.Spec.Template.Spec.ServiceAccountName
			jobsNS := flagValue(t, deploy, "--jobs-namespace")
			leaderNS := flagValue(t, deploy, "--leader-election-namespace")
			want := map[string]struct {
				rules []rbacv1.PolicyRule
				ns    string
			}{
				"ClusterRole/retention-system-retention-operator-manager": {cfg["ClusterRole/manager-role"], ""},
				"Role/retention-operator-jobs":                            {cfg["Role/manager-role"], jobsNS},
				"Role/retention-operator-leader-election":                 {cfg["Role/leader-election-role"], leaderNS},
			}
			roles := 0
			for _, u := range objs {
				switch u.GetKind() {
				case "ClusterRole", "Role":
					roles++
					w, ok := want[u.GetKind()+"/"+u.GetName()]
					if !ok {
						t.Errorf("%s: a role that config/rbac does not have", id(u))
						continue
					}
					var r rbacv1.ClusterRole
					into(t, map[string]any{"rules": u.Object["rules"]}, &r)
					if !reflect.DeepEqual(r.Rules, w.rules) {
						t.Errorf("%s: rules differ from config/rbac (run `make manifests`):\n got %+v\nwant %+v", id(u), r.Rules, w.rules)
					}
					if u.GetNamespace() != w.ns {
						t.Errorf("%s: in namespace %q, want %q", id(u), u.GetNamespace(), w.ns)
					}
				case "ClusterRoleBinding", "RoleBinding":
					var b rbacv1.RoleBinding
					into(t, map[string]any{"roleRef": u.Object["roleRef"], "subjects": u.Object["subjects"]}, &b)
					if _, ok := want[b.RoleRef.Kind+"/"+b.RoleRef.Name]; !ok || b.RoleRef.Name != u.GetName() {
						t.Errorf("%s binds %s/%s, not its namesake role", id(u), b.RoleRef.Kind, b.RoleRef.Name)
					}
					if u.GetKind() == "RoleBinding" && b.RoleRef.Kind != "Role" || u.GetKind() == "ClusterRoleBinding" && b.RoleRef.Kind != "ClusterRole" {
						t.Errorf("%s binds a %s", id(u), b.RoleRef.Kind)
					}
					if w := want[b.RoleRef.Kind+"/"+b.RoleRef.Name]; u.GetNamespace() != w.ns {
						t.Errorf("%s in %q, its role in %q", id(u), u.GetNamespace(), w.ns)
					}
					subjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: namespace}}
					if !reflect.DeepEqual(b.Subjects, subjects) {
						t.Errorf("%s: subjects %+v, want only the Deployment's service account %+v", id(u), b.Subjects, subjects)
					}
				}
			}
			if roles != 3 {
				t.Errorf("%d roles rendered, want config/rbac's 3", roles)
			}
		})
	}
}

// deployment returns the rendered Deployment, typed.
func deployment(t *testing.T, objs objects) *appsv1.Deployment {
	t.Helper()
	ds := objs.ofKind("Deployment")
	if len(ds) != 1 {
		t.Fatalf("%d Deployments rendered, want 1", len(ds))
	}
	var d appsv1.Deployment
	into(t, ds[0].Object, &d)
	return &d
}

func manager(t *testing.T, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	if n := len(d.Spec.Template.Spec.Containers); n != 1 || d.Spec.Template.Spec.Containers[0].Name != "manager" {
		t.Fatalf("containers %+v, want the manager alone", d.Spec.Template.Spec.Containers)
	}
	return d.Spec.Template.Spec.Containers[0]
}

// flagValue is the value of --name=value among the manager's args; "" when
// absent.
func flagValue(t *testing.T, d *appsv1.Deployment, name string) string {
	t.Helper()
	for _, a := range manager(t, d).Args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// configDeployment is config/manager/manager.yaml's Deployment.
func configDeployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	for _, d := range readYAMLDocs(t, "config/manager/manager.yaml") {
		if d["kind"] == "Deployment" {
			var dep appsv1.Deployment
			into(t, d, &dep)
			return &dep
		}
	}
	t.Fatal("no Deployment in config/manager/manager.yaml")
	return nil
}

// TestSecurityContext: with every value set the pod runs as
// config/manager's does — the restricted Pod Security Standard: non-root,
// RuntimeDefault seccomp, no privilege escalation, every capability
// dropped, a read-only root filesystem with /tmp an emptyDir.
// TestDryRun proves it on a real API server.
func TestSecurityContext(t *testing.T) {
	cfg := configDeployment(t)
	cfgC := manager(t, cfg)
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			d := deployment(t, render(t, vs.args...))
			c := manager(t, d)
			pod := d.Spec.Template.Spec
			if !reflect.DeepEqual(pod.SecurityContext, cfg.Spec.Template.Spec.SecurityContext) {
				t.Errorf("pod securityContext %+v, config/manager has %+v", pod.SecurityContext, cfg.Spec.Template.Spec.SecurityContext)
			}
			if !reflect.DeepEqual(c.SecurityContext, cfgC.SecurityContext) {
				t.Errorf("container securityContext %+v, config/manager has %+v", c.SecurityContext, cfgC.SecurityContext)
			}
			sc := c.SecurityContext
			switch {
			case pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot:
				t.Error("the pod may run as root")
			case pod.SecurityContext.SeccompProfile == nil || pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
				t.Error("the pod's seccomp profile is not RuntimeDefault")
			case sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
				t.Error("the container may escalate privileges")
			case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
				t.Error("the container's root filesystem is writable")
			case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
				t.Errorf("capabilities %+v, want every one dropped and none added", sc.Capabilities)
			case sc.Privileged != nil && *sc.Privileged:
				t.Error("the container is privileged")
			}
			if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/tmp" }) {
				t.Error("no writable /tmp")
			}
		})
	}
}

// TestDeploymentDefaults: the default Deployment is config/manager's: its
// flags (each flag config/manager passes is passed), the store DSN from
// the Secret into $RETENTION_STORE and never an argument, the same probes,
// resources, ports and replicas.
func TestDeploymentDefaults(t *testing.T) {
	cfg := configDeployment(t)
	cfgC := manager(t, cfg)
	d := deployment(t, render(t))
	c := manager(t, d)

	flagName := func(a string) string { n, _, _ := strings.Cut(a, "="); return n }
	var names []string
	for _, a := range c.Args {
		names = append(names, flagName(a))
	}
	for _, a := range cfgC.Args {
		if !slices.Contains(names, flagName(a)) {
			t.Errorf("config/manager passes %s, the chart does not", a)
		}
	}
	for _, want := range []string{"--leader-elect", "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081",
		"--jobs-namespace=retention-system", "--runner-image=retention-operator:" + appVersion(t),
		"--store-secret=retention-store", "--store-secret-key=dsn", "--leader-election-namespace=retention-system"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %v: no %s", c.Args, want)
		}
	}
	for _, a := range c.Args {
		if flagName(a) == "--store" || strings.Contains(a, "postgres://") {
			t.Errorf("the store's DSN is in the argument list: %s", a)
		}
	}
	if c.Image != "retention-operator:"+appVersion(t) {
		t.Errorf("image %s, want the chart's appVersion as the tag", c.Image)
	}
	envs := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		envs[e.Name] = e
	}
	for _, name := range []string{"POD_NAMESPACE", "RETENTION_STORE"} {
		var cfgEnv corev1.EnvVar
		for _, e := range cfgC.Env {
			if e.Name == name {
				cfgEnv = e
			}
		}
		if !reflect.DeepEqual(envs[name], cfgEnv) {
			t.Errorf("env %s = %+v, config/manager has %+v", name, envs[name], cfgEnv)
		}
	}
	if !reflect.DeepEqual(c.Resources, cfgC.Resources) {
		t.Errorf("resources %+v, config/manager has %+v", c.Resources, cfgC.Resources)
	}
	probe := func(p *corev1.Probe) *corev1.Probe {
		if p == nil {
			return nil
		}
		q := p.DeepCopy()
		// Kubernetes' defaults, which config/manager leaves out and the
		// chart writes.
		if q.TimeoutSeconds == 1 {
			q.TimeoutSeconds = 0
		}
		if q.FailureThreshold == 3 {
			q.FailureThreshold = 0
		}
		return q
	}
	if !reflect.DeepEqual(probe(c.LivenessProbe), probe(cfgC.LivenessProbe)) || !reflect.DeepEqual(probe(c.ReadinessProbe), probe(cfgC.ReadinessProbe)) {
		t.Errorf("probes %+v %+v, config/manager has %+v %+v", c.LivenessProbe, c.ReadinessProbe, cfgC.LivenessProbe, cfgC.ReadinessProbe)
	}
	if !reflect.DeepEqual(c.Ports, cfgC.Ports) {
		t.Errorf("ports %+v, config/manager has %+v", c.Ports, cfgC.Ports)
	}
	if *d.Spec.Replicas != *cfg.Spec.Replicas {
		t.Errorf("replicas %d, config/manager has %d", *d.Spec.Replicas, *cfg.Spec.Replicas)
	}
	if *d.Spec.Template.Spec.TerminationGracePeriodSeconds != *cfg.Spec.Template.Spec.TerminationGracePeriodSeconds {
		t.Error("terminationGracePeriodSeconds differs from config/manager's")
	}
}

// TestDeploymentValues: the values reach the Deployment — replicas, image,
// pull policy and secrets, leader election, the jobs namespace, the store
// Secret, the unsubscribe endpoint, probes, resources, scheduling,
// extraArgs and extraEnv.
func TestDeploymentValues(t *testing.T) {
	var values map[string]any
	b, err := os.ReadFile(filepath.Join(chartDir, "ci/all-on-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	var v struct {
		NodeSelector map[string]string           `json:"nodeSelector"`
		Tolerations  []corev1.Toleration         `json:"tolerations"`
		Affinity     *corev1.Affinity            `json:"affinity"`
		Resources    corev1.ResourceRequirements `json:"resources"`
		ExtraEnv     []corev1.EnvVar             `json:"extraEnv"`
		ExtraArgs    []string                    `json:"extraArgs"`
	}
	into(t, map[string]any{"nodeSelector": values["nodeSelector"], "tolerations": values["tolerations"], "affinity": values["affinity"],
		"resources": values["resources"], "extraEnv": values["extraEnv"], "extraArgs": values["extraArgs"]}, &v)

	d := deployment(t, render(t, "-f", chartDir+"/ci/all-on-values.yaml"))
	c := manager(t, d)
	pod := d.Spec.Template.Spec
	if *d.Spec.Replicas != 2 {
		t.Errorf("replicas %d, want 2", *d.Spec.Replicas)
	}
	if c.Image != "registry.example/retention-operator:v0.1.0-rc.1" || c.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("image %s %s", c.Image, c.ImagePullPolicy)
	}
	if !reflect.DeepEqual(pod.ImagePullSecrets, []corev1.LocalObjectReference{{Name: "regcred"}}) {
		t.Errorf("imagePullSecrets %+v", pod.ImagePullSecrets)
	}
	for _, want := range []string{"--leader-elect", "--leader-election-namespace=retention-leases", "--leader-election-lease-duration=20s",
		"--leader-election-renew-deadline=15s", "--leader-election-retry-period=3s", "--jobs-namespace=retention-jobs",
		"--runner-image=registry.example/retention-operator:v0.1.0-rc.1", "--store-secret=retention-store-dsn", "--store-secret-key=url",
		"--metrics-bind-address=:9090", "--unsubscribe-url=https://retention.example.com",
		"--unsubscribe-key-file=/var/run/secrets/retention.dev/unsubscribe/signing-key", "--unsubscribe-bind-address=:8083"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %v: no %s", c.Args, want)
		}
	}
	if !slices.Equal(c.Args[len(c.Args)-len(v.ExtraArgs):], v.ExtraArgs) {
		t.Errorf("args %v do not end with extraArgs %v", c.Args, v.ExtraArgs)
	}
	if !reflect.DeepEqual(c.Env[len(c.Env)-len(v.ExtraEnv):], v.ExtraEnv) {
		t.Errorf("env %+v does not end with extraEnv %+v", c.Env, v.ExtraEnv)
	}
	for _, e := range c.Env {
		if e.Name == "RETENTION_STORE" && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
			e.ValueFrom.SecretKeyRef.Name != "retention-store-dsn" || e.ValueFrom.SecretKeyRef.Key != "url") {
			t.Errorf("RETENTION_STORE %+v, want the store Secret's key", e)
		}
	}
	if !reflect.DeepEqual(pod.NodeSelector, v.NodeSelector) || !reflect.DeepEqual(pod.Tolerations, v.Tolerations) || !reflect.DeepEqual(pod.Affinity, v.Affinity) {
		t.Errorf("scheduling: nodeSelector %v tolerations %+v affinity %+v; values %v %+v %+v", pod.NodeSelector, pod.Tolerations, pod.Affinity, v.NodeSelector, v.Tolerations, v.Affinity)
	}
	if !reflect.DeepEqual(c.Resources, v.Resources) {
		t.Errorf("resources %+v, values %+v", c.Resources, v.Resources)
	}
	if p := c.LivenessProbe; p == nil || p.InitialDelaySeconds != 20 || p.PeriodSeconds != 30 || p.TimeoutSeconds != 2 || p.FailureThreshold != 5 {
		t.Errorf("liveness probe %+v", p)
	}
	if p := c.ReadinessProbe; p == nil || p.InitialDelaySeconds != 3 || p.PeriodSeconds != 5 || p.TimeoutSeconds != 2 || p.FailureThreshold != 2 {
		t.Errorf("readiness probe %+v", p)
	}
	if pod.PriorityClassName != "system-cluster-critical" || *pod.TerminationGracePeriodSeconds != 45 || pod.ServiceAccountName != "retention-manager" {
		t.Errorf("priorityClassName %q terminationGracePeriodSeconds %d serviceAccountName %q", pod.PriorityClassName, *pod.TerminationGracePeriodSeconds, pod.ServiceAccountName)
	}
	if d.Spec.Template.Labels["example.com/team"] != "growth" || d.Spec.Template.Annotations["example.com/scrape"] != "false" || d.Annotations["example.com/revision"] != "7" {
		t.Errorf("pod labels %v, pod annotations %v, Deployment annotations %v", d.Spec.Template.Labels, d.Spec.Template.Annotations, d.Annotations)
	}
	var key *corev1.Volume
	for i := range pod.Volumes {
		if pod.Volumes[i].Secret != nil {
			key = &pod.Volumes[i]
		}
	}
	if key == nil || key.Secret.SecretName != "retention-unsubscribe" || !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == key.Name && m.MountPath == "/var/run/secrets/retention.dev/unsubscribe" && m.ReadOnly
	}) {
		t.Errorf("the unsubscribe key Secret is not mounted read-only where --unsubscribe-key-file points: volumes %+v mounts %+v", pod.Volumes, c.VolumeMounts)
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "unsubscribe" && p.ContainerPort == 8083 }) {
		t.Errorf("ports %+v: no unsubscribe 8083", c.Ports)
	}

	// Without leader election no leader flag, and an image by digest.
	digest := "sha256:" + strings.Repeat("ab", 32)
	d = deployment(t, render(t, "--set", "leaderElection.enabled=false", "--set", "image.digest="+digest))
	c = manager(t, d)
	if slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--leader-elect") }) {
		t.Errorf("leaderElection.enabled=false, args %v", c.Args)
	}
	if c.Image != "retention-operator@"+digest || flagValue(t, d, "--runner-image") != c.Image {
		t.Errorf("image %s, runner image %s; want both retention-operator@%s", c.Image, flagValue(t, d, "--runner-image"), digest)
	}
}

// appVersion is Chart.yaml's appVersion.
func appVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		AppVersion string `json:"appVersion"`
		Version    string `json:"version"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil || c.AppVersion == "" || c.Version == "" {
		t.Fatalf("Chart.yaml: %+v %v", c, err)
	}
	return c.AppVersion
}

// TestLabels: every object carries the recommended labels
// (app.kubernetes.io/*, helm.sh/chart); the Deployment's selector picks its
// own pods and what selects the pods (the Services, the PodMonitor, the
// NetworkPolicy) selects exactly by it; the ServiceMonitor selects the
// metrics Service by its labels and port name. A release name that does
// not contain the chart's name is prefixed to the objects' names.
func TestLabels(t *testing.T) {
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			objs := render(t, vs.args...)
			checkLabels(t, objs, release)
		})
	}
	acme, err := helm(t, "template", "acme", chartDir, "--namespace", namespace)
	if err != nil {
		t.Fatal(err)
	}
	acmeObjs := parse(t, acme)
	checkLabels(t, acmeObjs, "acme")
	acmeObjs.get(t, "Deployment/retention-system/acme-retention-operator")
}

func checkLabels(t *testing.T, objs objects, release string) {
	t.Helper()
	want := map[string]string{
		"helm.sh/chart":                "retention-operator-" + chartVersion(t),
		"app.kubernetes.io/name":       "retention-operator",
		"app.kubernetes.io/instance":   release,
		"app.kubernetes.io/version":    appVersion(t),
		"app.kubernetes.io/managed-by": "Helm",
		"app.kubernetes.io/part-of":    "retention-operator",
	}
	for _, u := range objs {
		for k, v := range want {
			if u.GetLabels()[k] != v {
				t.Errorf("%s: label %s=%q, want %q", id(u), k, u.GetLabels()[k], v)
			}
		}
		if u.GetKind() == "Deployment" || u.GetKind() == "Service" || u.GetKind() == "NetworkPolicy" {
			if u.GetLabels()["app.kubernetes.io/component"] != "manager" {
				t.Errorf("%s: no app.kubernetes.io/component=manager", id(u))
			}
		}
	}
	d := deployment(t, objs)
	sel := d.Spec.Selector.MatchLabels
	wantSel := map[string]string{"app.kubernetes.io/name": "retention-operator", "app.kubernetes.io/instance": release, "app.kubernetes.io/component": "manager"}
	if !maps.Equal(sel, wantSel) || len(d.Spec.Selector.MatchExpressions) > 0 {
		t.Errorf("Deployment selector %+v, want %v", d.Spec.Selector, wantSel)
	}
	for k, v := range sel {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("the Deployment's pods do not carry its selector's %s=%s", k, v)
		}
	}
	selects := func(u *unstructured.Unstructured, path ...string) {
		m, _, _ := unstructured.NestedStringMap(u.Object, path...)
		if !maps.Equal(m, sel) {
			t.Errorf("%s: %s %v, want the Deployment's selector %v", id(u), strings.Join(path, "."), m, sel)
		}
	}
	var metricsSvc *unstructured.Unstructured
	for _, u := range objs {
		switch u.GetKind() {
		case "Service":
			selects(u, "spec", "selector")
			if strings.HasSuffix(u.GetName(), "-metrics") {
				metricsSvc = u
			}
		case "PodMonitor":
			selects(u, "spec", "selector", "matchLabels")
			checkEndpointPort(t, u, "podMetricsEndpoints", d)
		case "NetworkPolicy":
			selects(u, "spec", "podSelector", "matchLabels")
		}
	}
	for _, u := range objs.ofKind("ServiceMonitor") {
		if metricsSvc == nil {
			t.Fatalf("%s without the metrics Service", id(u))
		}
		m, _, _ := unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels")
		for k, v := range m {
			if metricsSvc.GetLabels()[k] != v {
				t.Errorf("%s selects %s=%s, which the metrics Service does not carry", id(u), k, v)
			}
		}
		ns, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "namespaceSelector", "matchNames")
		if !slices.Equal(ns, []string{metricsSvc.GetNamespace()}) {
			t.Errorf("%s: namespaceSelector %v, the Service is in %s", id(u), ns, metricsSvc.GetNamespace())
		}
		eps, _, _ := unstructured.NestedSlice(u.Object, "spec", "endpoints")
		ports, _, _ := unstructured.NestedSlice(metricsSvc.Object, "spec", "ports")
		if len(eps) != 1 || len(ports) != 1 || eps[0].(map[string]any)["port"] != ports[0].(map[string]any)["name"] || eps[0].(map[string]any)["honorLabels"] != true {
			t.Errorf("%s: endpoints %v, want the Service's port %v with honorLabels", id(u), eps, ports)
		}
	}
}

// checkEndpointPort: a PodMonitor's endpoint scrapes the container's
// metrics port by name, keeping the metrics' namespace label.
func checkEndpointPort(t *testing.T, u *unstructured.Unstructured, field string, d *appsv1.Deployment) {
	t.Helper()
	eps, _, _ := unstructured.NestedSlice(u.Object, "spec", field)
	if len(eps) != 1 {
		t.Fatalf("%s: %d endpoints", id(u), len(eps))
	}
	ep := eps[0].(map[string]any)
	if !slices.ContainsFunc(manager(t, d).Ports, func(p corev1.ContainerPort) bool { return p.Name == ep["port"] }) || ep["honorLabels"] != true {
		t.Errorf("%s: endpoint %v, want a container port's name with honorLabels", id(u), ep)
	}
}

func chartVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Version string `json:"version"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c.Version
}

// TestMonitoringEqualsConfig: the PrometheusRule is
// config/prometheus/prometheusrule.yaml's, rule for rule (the rules promtool
// tests), and the dashboard ConfigMap holds config/grafana's JSON byte for
// byte, under the sidecar's label and the folder annotation.
func TestMonitoringEqualsConfig(t *testing.T) {
	objs := render(t, "-f", chartDir+"/ci/all-on-values.yaml")
	pr := objs.get(t, "PrometheusRule/monitoring/retention-operator")
	var cfg map[string]any
	for _, d := range readYAMLDocs(t, "config/prometheus/prometheusrule.yaml") {
		cfg = d
	}
	if !reflect.DeepEqual(pr.Object["spec"], cfg["spec"]) {
		t.Error("the PrometheusRule's spec differs from config/prometheus/prometheusrule.yaml's (run `make monitoring`)")
	}
	groups, _, _ := unstructured.NestedSlice(pr.Object, "spec", "groups")
	if len(groups) == 0 {
		t.Error("the PrometheusRule has no groups")
	}

	cm := objs.get(t, "ConfigMap/monitoring/retention-operator-dashboard")
	want, err := os.ReadFile(filepath.Join(root, "config/grafana/retention-operator.json"))
	if err != nil {
		t.Fatal(err)
	}
	got, _, _ := unstructured.NestedString(cm.Object, "data", "retention-operator.json")
	if got != string(want) {
		t.Errorf("the dashboard ConfigMap's JSON (%d bytes) differs from config/grafana/retention-operator.json (%d bytes)", len(got), len(want))
	}
	if cm.GetLabels()["grafana_dashboard"] != "1" || cm.GetAnnotations()["grafana_folder"] != "Retention" {
		t.Errorf("dashboard labels %v annotations %v, want grafana_dashboard=1 and grafana_folder=Retention", cm.GetLabels(), cm.GetAnnotations())
	}
	cm = render(t, "--set", "metrics.dashboard.enabled=true", "--set", "metrics.dashboard.sidecarLabel=dashboards", "--set", "metrics.dashboard.sidecarLabelValue=retention").
		get(t, "ConfigMap/retention-system/retention-operator-dashboard")
	if cm.GetLabels()["dashboards"] != "retention" || cm.GetLabels()["grafana_dashboard"] != "" {
		t.Errorf("dashboard labels %v, want the configured sidecar label alone", cm.GetLabels())
	}

	sm := objs.get(t, "ServiceMonitor/monitoring/retention-operator")
	ep, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	e := ep[0].(map[string]any)
	if e["interval"] != "30s" || e["scrapeTimeout"] != "10s" || e["relabelings"] == nil || e["metricRelabelings"] == nil {
		t.Errorf("ServiceMonitor endpoint %v, want the values' interval, timeout and relabelings", e)
	}
}

// TestSchemaRejects: values.schema.json refuses an unknown key at every
// level and a value of the wrong type, and the chart refuses combinations
// that the schema cannot express — for helm template and helm lint alike.
func TestSchemaRejects(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want string
		// schema: refused by values.schema.json, which helm lint checks
		// too; the rest by the templates' fail, which helm lint renders
		// leniently (as it does required), so only helm template fails.
		schema bool
	}{
		{[]string{"unknownKey=1"}, "unknownKey", true},
		{[]string{"crds.kep=true"}, "kep", true},
		{[]string{"image.tagg=v1"}, "tagg", true},
		{[]string{"metrics.serviceMonitor.unknown=1"}, "unknown", true},
		{[]string{"metrics.dashboard.sidecar=x"}, "sidecar", true},
		{[]string{"networkPolicy.ingress=x"}, "ingress", true},
		{[]string{"podSecurityContext.privileged=true"}, "privileged", true},
		{[]string{"resources.request.cpu=1"}, "request", true},
		{[]string{"crds.keep=maybe"}, "keep", true},
		{[]string{"replicaCount=two"}, "replicaCount", true},
		{[]string{"image.pullPolicy=Sometimes"}, "pullPolicy", true},
		{[]string{"leaderElection.leaseDuration=15"}, "leaseDuration", true},
		{[]string{"extraArgs[0]=leader-elect"}, "extraArgs", true},
		{[]string{"metrics.serviceMonitor.enabled=true", "metrics.podMonitor.enabled=true"}, "choose one", false},
		{[]string{"metrics.serviceMonitor.enabled=true", "metrics.service.enabled=false"}, "metrics.service.enabled", false},
		{[]string{"replicaCount=2", "leaderElection.enabled=false"}, "leaderElection.enabled", false},
		{[]string{"unsubscribe.enabled=true", "unsubscribe.keySecret.name=k"}, "unsubscribe.url", false},
		{[]string{"unsubscribe.enabled=true", "unsubscribe.url=http://plain.example.com", "unsubscribe.keySecret.name=k"}, "https", false},
		{[]string{"unsubscribe.enabled=true", "unsubscribe.url=https://retention.example.com"}, "keySecret.name", false},
		{[]string{"serviceAccount.create=false"}, "serviceAccount.name", false},
	} {
		var args []string
		for _, s := range tc.set {
			args = append(args, "--set", s)
		}
		_, err := renderErr(t, args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("helm template --set %v: %v; want an error naming %q", tc.set, err, tc.want)
		}
		if !tc.schema {
			continue
		}
		if _, err := helm(t, append([]string{"lint", "--strict", chartDir}, args...)...); err == nil {
			t.Errorf("helm lint --strict --set %v passed", tc.set)
		}
	}
}

// TestSchemaMatchesValues: values.schema.json and values.yaml name the same
// keys (so neither drifts from the other), every object of the schema is
// closed (additionalProperties false, or a map whose values have a type),
// except the Kubernetes and Prometheus Operator objects passed through
// whole, which the API server validates (TestDryRun).
func TestSchemaMatchesValues(t *testing.T) {
	var schema map[string]any
	b, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	b, err = os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	// Passed through to the API server: open objects by design.
	passThrough := map[string]bool{
		"affinity.nodeAffinity": true, "affinity.podAffinity": true, "affinity.podAntiAffinity": true,
		"extraEnv[].valueFrom":                       true,
		"metrics.serviceMonitor.relabelings[]":       true,
		"metrics.serviceMonitor.metricRelabelings[]": true,
		"metrics.podMonitor.relabelings[]":           true,
		"metrics.podMonitor.metricRelabelings[]":     true,
		"networkPolicy.metricsFrom[]":                true,
		"networkPolicy.unsubscribeFrom[]":            true,
		"networkPolicy.egress[]":                     true,
	}
	// Kubernetes types whose optional fields the schema lists beyond the
	// defaults values.yaml sets.
	kubernetesTyped := []string{"affinity", "podSecurityContext", "containerSecurityContext"}
	seen := map[string]bool{}
	var walk func(path string, s map[string]any, v any, inValues bool)
	walk = func(path string, s map[string]any, v any, inValues bool) {
		switch s["type"] {
		case "object":
			props, hasProps := s["properties"].(map[string]any)
			ap, hasAP := s["additionalProperties"]
			switch {
			case hasProps && ap != false:
				t.Errorf("schema %s: an object with properties must have additionalProperties: false", path)
			case !hasProps && !hasAP && !passThrough[path]:
				t.Errorf("schema %s: an open object (give it properties and additionalProperties: false, a typed map, or list it as passed through)", path)
			case !hasProps && hasAP:
				if m, ok := ap.(map[string]any); !ok || (m["type"] == nil && m["oneOf"] == nil) {
					t.Errorf("schema %s: a map whose values have no type", path)
				}
			}
			if passThrough[path] {
				seen[path] = true
			}
			vm, _ := v.(map[string]any)
			for k, ps := range props {
				p := strings.TrimPrefix(path+"."+k, ".")
				vv, ok := vm[k]
				typed := slices.ContainsFunc(kubernetesTyped, func(k string) bool { return p == k || strings.HasPrefix(p, k+".") })
				if inValues && !ok && !typed {
					t.Errorf("values.yaml has no %s, which the schema describes: give it its default there", p)
				}
				walk(p, ps.(map[string]any), vv, inValues && ok)
			}
			if hasProps {
				for k := range vm {
					if _, ok := props[k]; !ok {
						t.Errorf("values.yaml has %s, which the schema does not describe", strings.TrimPrefix(path+"."+k, "."))
					}
				}
			}
		case "array":
			items, _ := s["items"].(map[string]any)
			if items == nil {
				t.Errorf("schema %s: an array without items", path)
				return
			}
			var first any
			if vs, ok := v.([]any); ok && len(vs) > 0 {
				first = vs[0]
			}
			walk(path+"[]", items, first, first != nil)
		case nil:
			if s["oneOf"] == nil {
				t.Errorf("schema %s: no type", path)
			}
		}
	}
	walk("", schema, values, true)
	for p := range passThrough {
		if !seen[p] {
			t.Errorf("passed-through %s is not in the schema any more: drop it from the list", p)
		}
	}
}

// TestNetworkPolicy: ingress to the metrics and health ports (and the
// unsubscribe endpoint when on) from the configured peers; egress
// restricted only when rules are given.
func TestNetworkPolicy(t *testing.T) {
	np := render(t, "-f", chartDir+"/ci/all-on-values.yaml").get(t, "NetworkPolicy/retention-system/retention-operator")
	types, _, _ := unstructured.NestedStringSlice(np.Object, "spec", "policyTypes")
	if !slices.Equal(types, []string{"Ingress", "Egress"}) {
		t.Errorf("policyTypes %v", types)
	}
	ingress, _, _ := unstructured.NestedSlice(np.Object, "spec", "ingress")
	var ports []string
	for _, r := range ingress {
		for _, p := range r.(map[string]any)["ports"].([]any) {
			ports = append(ports, p.(map[string]any)["port"].(string))
		}
	}
	if !slices.Equal(ports, []string{"metrics", "health", "unsubscribe"}) {
		t.Errorf("ingress ports %v", ports)
	}
	if ingress[0].(map[string]any)["from"] == nil || ingress[2].(map[string]any)["from"] == nil {
		t.Error("metricsFrom or unsubscribeFrom did not reach the rules")
	}
	np = render(t, "--set", "networkPolicy.enabled=true").get(t, "NetworkPolicy/retention-system/retention-operator")
	types, _, _ = unstructured.NestedStringSlice(np.Object, "spec", "policyTypes")
	if !slices.Equal(types, []string{"Ingress"}) {
		t.Errorf("without egress rules, policyTypes %v; want Ingress alone", types)
	}
}
