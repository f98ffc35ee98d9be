package rbac_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/controllers"
	"github.com/retention-dev/retention-operator/internal/metrics"
	"github.com/retention-dev/retention-operator/internal/scoring/btyd"
	"github.com/retention-dev/retention-operator/internal/store"
	_ "github.com/retention-dev/retention-operator/internal/store/sqlite"
)

// Canaries: values that live in Secrets only and must never show in a
// log line, a status or an Event.
const (
	signingKey  = "whsec_cmJhYy1jYW5hcnktc2lnbmluZy1rZXk="
	dsnPassword = "Canary-DSN-Passw0rd"
)

// TestOperatorRunsWithItsRBAC runs the operator's reconcilers
// (controllers.SetupReconcilers, with main.go's cache and client options
// and leader election) as the operator's service account, impersonated,
// on a real kube-apiserver with RBAC and the
// OwnerReferencesPermissionEnforcement admission plugin, and with exactly
// the manifests of this directory applied as kustomize applies them. It
// takes sources (a ConfigMap CSV, a Secret CSV, a PostgreSQL DSN), a
// segment, a webhook channel and a scheduled campaign through to a run
// that launches its Job and per-run Secret, then deletes everything
// (finalizers, the run's Job and Secret). Every request the operator makes
// is recorded: none may be refused, none may list or watch Secrets, none
// may touch Jobs outside the jobs namespace; and the canaries appear in no
// log line, status or Event.
func TestOperatorRunsWithItsRBAC(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run the tests with `make test` (which installs etcd and kube-apiserver with `make tools`)")
	}
	var logs syncBuffer
	logf.SetLogger(zap.New(zap.WriteTo(&logs), zap.UseDevMode(true)))

	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	// Owner references that block deletion need update on the owner's
	// finalizers (campaigns/finalizers, jobs/finalizers) with this plugin,
	// which some distributions (OpenShift) enable.
	env.ControlPlane.GetAPIServer().Configure().Append("enable-admission-plugins", "OwnerReferencesPermissionEnforcement")
	admin, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	defer func() { _ = env.Stop() }()

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(retentionv1.AddToScheme(scheme))
	c, err := client.New(admin, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const opNS, tenant = "retention-system", "shop" // the operator's namespace is also the jobs namespace
	for _, ns := range []string{opNS, tenant} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	applyRBAC(t, c, opNS)

	// The operator's identity, with every response recorded.
	user := "system:serviceaccount:" + opNS + ":" + serviceAccount
	log := &requestLog{}
	cfg := rest.CopyConfig(admin)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	probe, err := client.New(rest.CopyConfig(cfg), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Wrap(log.wrap)
	defer func() {
		if t.Failed() {
			for _, r := range log.all() {
				if r.Status == http.StatusForbidden {
					t.Logf("forbidden: %s %s", r.Method, r.URL)
				}
			}
			t.Logf("operator log:\n%s", logs.String())
		}
	}()
	// RBAC is enforced for that identity: it may not list Secrets.
	if err := probe.List(ctx, &corev1.SecretList{}, client.InNamespace(tenant)); !apierrors.IsForbidden(err) {
		t.Fatalf("listing Secrets as %s: %v, want forbidden (is RBAC on?)", user, err)
	}

	stores := controllers.NewStoreProvider("sqlite://"+filepath.Join(t.TempDir(), "store.db"), store.Options{})
	defer func() { _ = stores.Close() }()
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	// LocalProcesses: the store is a SQLite file, which only local
	// processes could share (no pod runs here: the Job is only created).
	runner := controllers.RunnerConfig{Image: "retention-operator:test", JobsNamespace: opNS, LocalProcesses: true,
		UnsubscribeBaseURL: "https://retention.test", UnsubscribeKey: []byte("unsubscribe-key-of-the-rbac-test-32+bytes")}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         controllers.CacheOptions(runner.JobsNamespace),
		Client:                        controllers.ClientOptions(),
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		LeaderElection:                true,
		LeaderElectionID:              "retention-operator.retention.dev",
		LeaderElectionNamespace:       opNS,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := controllers.SetupReconcilers(mgr, stores, m, runner); err != nil {
		t.Fatal(err)
	}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	stopped := false
	stopManager := func() {
		if !stopped {
			stopped = true
			stop()
			if err := <-done; err != nil {
				t.Errorf("manager: %v", err)
			}
		}
	}
	defer stopManager()

	// The tenant's objects, as a marketer would apply them.
	source := func(name string, loc retentionv1.CSVLocation) *retentionv1.CustomerSource {
		return &retentionv1.CustomerSource{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: name},
			Spec: retentionv1.CustomerSourceSpec{
				CSV:     &retentionv1.CSVSource{Transactions: loc},
				Mapping: retentionv1.ColumnMapping{CustomerID: "customer_id", Timestamp: "date", Amount: "amount", TimestampLayout: "Date"},
				Scoring: retentionv1.ScoringSpec{Model: retentionv1.ModelBGNBD, ObservationEnd: &metav1.Time{Time: observationEnd}},
			}}
	}
	pg := &retentionv1.CustomerSource{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "crm"},
		Spec: retentionv1.CustomerSourceSpec{Postgres: &retentionv1.PostgresSource{
			DSNSecretRef:      retentionv1.KeySelector{Name: "crm-dsn", Key: "dsn"},
			TransactionsQuery: "select customer_id, date, amount from purchases",
		}, Mapping: retentionv1.ColumnMapping{CustomerID: "customer_id", Timestamp: "date", Amount: "amount"}}}
	objs := []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "shop-data"},
			Data: map[string]string{"transactions.csv": string(transactionsCSV(200, 1))}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "vault-data"},
			Data: map[string][]byte{"transactions.csv": transactionsCSV(150, 2)}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "crm-dsn"},
			Data: map[string][]byte{"dsn": []byte("postgres://crm:" + dsnPassword + "@127.0.0.1:1/crm?connect_timeout=2")}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "hook-key"},
			Data: map[string][]byte{"key": []byte(signingKey)}},
		source("shop", retentionv1.CSVLocation{ConfigMapKeyRef: &retentionv1.KeySelector{Name: "shop-data", Key: "transactions.csv"}}),
		source("vault", retentionv1.CSVLocation{SecretKeyRef: &retentionv1.KeySelector{Name: "vault-data", Key: "transactions.csv"}}),
		pg,
		&retentionv1.Segment{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "everyone"},
			Spec: retentionv1.SegmentSpec{SourceRef: retentionv1.LocalObjectReference{Name: "shop"}, Rule: "customer.frequency >= 0"}},
		&retentionv1.Channel{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "hook"},
			Spec: retentionv1.ChannelSpec{Webhook: &retentionv1.WebhookChannel{URL: "http://127.0.0.1:9/hook",
				SigningSecretRef: &retentionv1.KeySelector{Name: "hook-key", Key: "key"}}}},
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	ready := func(o client.Object, conds func() []metav1.Condition) func() error {
		return func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
				return err
			}
			if cond := meta.FindStatusCondition(conds(), retentionv1.ConditionReady); cond == nil || cond.Status != metav1.ConditionTrue {
				return fmt.Errorf("%T %s not Ready: %+v", o, o.GetName(), cond)
			}
			return nil
		}
	}
	shop, vault := &retentionv1.CustomerSource{}, &retentionv1.CustomerSource{}
	shop.Namespace, shop.Name, vault.Namespace, vault.Name = tenant, "shop", tenant, "vault"
	seg := &retentionv1.Segment{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "everyone"}}
	ch := &retentionv1.Channel{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "hook"}}
	eventually(t, time.Minute, ready(shop, func() []metav1.Condition { return shop.Status.Conditions }))
	eventually(t, time.Minute, ready(vault, func() []metav1.Condition { return vault.Status.Conditions }))
	eventually(t, time.Minute, ready(seg, func() []metav1.Condition { return seg.Status.Conditions }))
	eventually(t, time.Minute, ready(ch, func() []metav1.Condition { return ch.Status.Conditions }))
	// The PostgreSQL source read its DSN (the database is not there).
	eventually(t, time.Minute, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(pg), pg); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(pg.Status.Conditions, retentionv1.ConditionReady)
		if cond == nil || cond.Reason == retentionv1.ReasonSecretNotFound || cond.Status == metav1.ConditionTrue {
			return fmt.Errorf("crm: %+v, want a failed read past its Secret", cond)
		}
		return nil
	})

	// A scheduled campaign: its controller creates the run, owned by the
	// campaign; the campaign is suspended once it has.
	camp := &retentionv1.Campaign{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "win-back"},
		Spec: retentionv1.CampaignSpec{
			SegmentRef: retentionv1.LocalObjectReference{Name: "everyone"},
			ChannelRef: retentionv1.LocalObjectReference{Name: "hook"},
			Message:    retentionv1.Message{Subject: "We miss you", Body: "Hello {{.ID}}"},
			Schedule:   "@every 5s",
		}}
	if err := c.Create(ctx, camp); err != nil {
		t.Fatal(err)
	}
	var run retentionv1.CampaignRun
	eventually(t, time.Minute, func() error {
		var runs retentionv1.CampaignRunList
		if err := c.List(ctx, &runs, client.InNamespace(tenant)); err != nil {
			return err
		}
		if len(runs.Items) == 0 {
			_ = c.Get(ctx, client.ObjectKeyFromObject(camp), camp)
			return fmt.Errorf("no run yet (campaign %+v)", camp.Status.Conditions)
		}
		run = runs.Items[0]
		return nil
	})
	patch := client.MergeFrom(camp.DeepCopy())
	camp.Spec.Suspend = true
	if err := c.Patch(ctx, camp, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(&run), &run); err != nil {
			return err
		}
		if run.Status.Phase != retentionv1.RunSending {
			return fmt.Errorf("run %s in phase %q, want Sending (%+v)", run.Name, run.Status.Phase, run.Status.Conditions)
		}
		return nil
	})
	runObjects := func() (jobs, secrets int, err error) {
		sel := client.MatchingLabels{"retention.dev/run-uid": string(run.UID)}
		var jl batchv1.JobList
		if err := c.List(ctx, &jl, client.InNamespace(opNS), sel); err != nil {
			return 0, 0, err
		}
		var sl corev1.SecretList
		if err := c.List(ctx, &sl, client.InNamespace(opNS), sel); err != nil {
			return 0, 0, err
		}
		return len(jl.Items), len(sl.Items), nil
	}
	if j, s, err := runObjects(); err != nil || j != 1 || s != 1 {
		t.Fatalf("the run has %d Jobs and %d Secrets in %s (%v), want 1 and 1", j, s, opNS, err)
	}

	// Everything goes: the run's finalizer deletes its Job and Secret.
	if err := c.Delete(ctx, &run); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, func() error {
		if j, s, err := runObjects(); err != nil || j+s > 0 {
			return fmt.Errorf("%d Jobs and %d Secrets left (%v)", j, s, err)
		}
		return nil
	})
	var all []client.Object
	for _, o := range objs {
		if _, ok := o.(*corev1.ConfigMap); !ok {
			if _, ok := o.(*corev1.Secret); !ok {
				all = append(all, o)
			}
		}
	}
	all = append(all, camp)
	// Status and Events, read before everything goes.
	status := statusText(t, c, tenant)
	events := eventText(t, c)
	for _, o := range all {
		if err := c.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
			t.Fatal(err)
		}
	}
	for _, o := range append(all, &run) {
		eventually(t, time.Minute, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); !apierrors.IsNotFound(err) {
				return fmt.Errorf("%T %s still there (finalizers %v): %v", o, o.GetName(), o.GetFinalizers(), err)
			}
			return nil
		})
	}
	stopManager()

	// What the operator's identity did.
	reqs := log.all()
	checkRequests(t, reqs, opNS, tenant)
	for _, canary := range []string{signingKey, dsnPassword} {
		for what, text := range map[string]string{"the log": logs.String(), "a status": status, "an Event": events} {
			if strings.Contains(text, canary) {
				t.Errorf("a Secret's value (%.12s…) appears in %s", canary, what)
			}
		}
	}
}

// checkRequests asserts the operator's requests: none refused, no Secret
// listed or watched, no Job touched outside the jobs namespace, and what
// the run needed done through the namespaced Role.
func checkRequests(t *testing.T, reqs []request, opNS, tenant string) {
	t.Helper()
	secretCollection := regexp.MustCompile(`^/api/v1/(namespaces/[^/]+/)?secrets$`)
	jobsPath := regexp.MustCompile(`^/apis/batch/v1/(namespaces/([^/]+)/)?jobs(/|$)`)
	seen := map[string]int{}
	for _, r := range reqs {
		if r.Status == http.StatusForbidden {
			t.Errorf("forbidden: %s %s", r.Method, r.URL)
		}
		if r.Method == http.MethodGet && secretCollection.MatchString(r.Path) {
			t.Errorf("the operator listed or watched Secrets: %s %s", r.Method, r.URL)
		}
		if m := jobsPath.FindStringSubmatch(r.Path); m != nil && m[2] != opNS {
			t.Errorf("a Job request outside the jobs namespace %s: %s %s", opNS, r.Method, r.URL)
		}
		seen[r.Method+" "+r.Path]++
	}
	for _, want := range []string{
		"GET /api/v1/namespaces/" + tenant + "/secrets/hook-key",     // the channel's signing key
		"GET /api/v1/namespaces/" + tenant + "/secrets/vault-data",   // a CSV in a Secret (and its metadata)
		"GET /api/v1/namespaces/" + tenant + "/secrets/crm-dsn",      // a DSN
		"GET /api/v1/namespaces/" + tenant + "/configmaps/shop-data", // a CSV in a ConfigMap
		"POST /apis/batch/v1/namespaces/" + opNS + "/jobs",
		"POST /api/v1/namespaces/" + opNS + "/secrets",
		"DELETE /apis/batch/v1/namespaces/" + opNS + "/jobs",
		"DELETE /api/v1/namespaces/" + opNS + "/secrets",
		"POST /apis/retention.dev/v1alpha1/namespaces/" + tenant + "/campaignruns",
	} {
		if seen[want] == 0 {
			t.Errorf("no %s: the test did not exercise what it means to", want)
		}
	}
	t.Logf("%d requests as the operator's service account, none refused", len(reqs))
}

// applyRBAC creates the service account, roles and bindings of this
// directory as config/default's kustomization does (namespace "system"
// becomes the operator's; the name prefix is left out).
func applyRBAC(t *testing.T, c client.Client, opNS string) {
	t.Helper()
	for _, f := range []string{"service_account.yaml", "role.yaml", "role_binding.yaml", "leader_election_role.yaml", "leader_election_role_binding.yaml"} {
		for _, doc := range readDocs(t, f) {
			js, err := yaml.YAMLToJSON(doc)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(js); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if u.GetNamespace() == "system" {
				u.SetNamespace(opNS)
			}
			if subjects, ok, _ := unstructured.NestedSlice(u.Object, "subjects"); ok {
				for _, s := range subjects {
					if s := s.(map[string]any); s["namespace"] == "system" {
						s["namespace"] = opNS
					}
				}
				if err := unstructured.SetNestedSlice(u.Object, subjects, "subjects"); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Create(context.Background(), u); err != nil {
				t.Fatalf("%s: creating %s %s: %v", f, u.GetKind(), u.GetName(), err)
			}
		}
	}
}

// statusText is the status of every object of the operator's kinds.
func statusText(t *testing.T, c client.Client, ns string) string {
	t.Helper()
	var b strings.Builder
	for _, l := range []client.ObjectList{&retentionv1.CustomerSourceList{}, &retentionv1.SegmentList{}, &retentionv1.ChannelList{},
		&retentionv1.CampaignList{}, &retentionv1.CampaignRunList{}} {
		if err := c.List(context.Background(), l, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		items, _ := meta.ExtractList(l)
		for _, it := range items {
			u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(it)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%v\n", u["status"])
		}
	}
	return b.String()
}

// eventText is every Event's reason and note, in every namespace.
func eventText(t *testing.T, c client.Client) string {
	t.Helper()
	var evs eventsv1.EventList
	if err := c.List(context.Background(), &evs); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range evs.Items {
		fmt.Fprintf(&b, "%s %s %s\n", e.Regarding.Name, e.Reason, e.Note)
	}
	if len(evs.Items) == 0 {
		t.Error("no Event recorded: the operator could not write them?")
	}
	return b.String()
}

// request is one API request the operator made, and its response status.
type request struct {
	Method, Path, URL string
	Status            int
}

// requestLog records every request through a rest.Config's transport.
type requestLog struct {
	mu   sync.Mutex
	reqs []request
}

func (l *requestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		res, err := rt.RoundTrip(req)
		r := request{Method: req.Method, Path: req.URL.Path, URL: req.URL.RequestURI()}
		if res != nil {
			r.Status = res.StatusCode
		}
		l.mu.Lock()
		l.reqs = append(l.reqs, r)
		l.mu.Unlock()
		return res, err
	})
}

func (l *requestLog) all() []request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]request(nil), l.reqs...)
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// syncBuffer is a log sink shared by the manager's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventually retries check until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s: %v", timeout, err)
}

// observationEnd is the end of the synthetic purchase history.
var observationEnd = time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC)

// transactionsCSV is a year of BG/NBD purchases of n customers, as the
// controllers' suite makes them.
func transactionsCSV(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	m := btyd.BGNBD{R: 0.25, Alpha: 4, A: 0.8, B: 2.4}
	start := observationEnd.AddDate(-1, 0, 1)
	var b bytes.Buffer
	b.WriteString("customer_id,date,amount\n")
	for i := range n {
		first := start.AddDate(0, 0, rng.IntN(182))
		T := observationEnd.Sub(first).Hours() / 24 / 7
		fmt.Fprintf(&b, "c%05d,%s,%.2f\n", i, first.Format("2006-01-02"), 10+rng.Float64()*40)
		for _, t := range btyd.SimulateBGNBD(rng, m, T) {
			day := first.Add(time.Duration(t * 7 * 24 * float64(time.Hour)))
			fmt.Fprintf(&b, "c%05d,%s,%.2f\n", i, day.Format("2006-01-02"), 10+rng.Float64()*40)
		}
	}
	return b.Bytes()
}
