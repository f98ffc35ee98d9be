package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/plot"
	"github.com/retention-dev/retention-operator/test/localcluster"
)

// TestPlugin runs the verbs in-process against a real kube-apiserver
// (envtest, no operator): the test writes the statuses the operator would.
func TestPlugin(t *testing.T) {
	// etcd and kube-apiserver from $KUBEBUILDER_ASSETS, else the tools
	// cache `make tools` fills: missing, the test fails, it never skips.
	bin := localcluster.DefaultBinDir()
	if _, err := os.Stat(filepath.Join(bin, "kube-apiserver")); err != nil {
		t.Fatalf("kube-apiserver is missing from %s: run `make tools` (%v)", bin, err)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: bin,
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c, err := client.New(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const ns = "shop"
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}})

	// run runs one command line and returns its exit code and output.
	run := func(args ...string) (int, string, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		e := &Env{Stdout: &out, Stderr: &errOut, Poll: 50 * time.Millisecond,
			Connect: func(f ConnFlags) (*Conn, error) {
				n := f.Namespace
				if n == "" {
					n = ns
				}
				return &Conn{Client: c, Config: cfg, Namespace: n}, nil
			}}
		code := e.Run(ctx, args)
		return code, out.String(), errOut.String()
	}

	// Objects with the statuses the operator would write.
	src := &retentionv1.CustomerSource{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "warehouse"},
		Spec: retentionv1.CustomerSourceSpec{
			CSV:     &retentionv1.CSVSource{Transactions: retentionv1.CSVLocation{ConfigMapKeyRef: &retentionv1.KeySelector{Name: "data", Key: "tx.csv"}}},
			Mapping: retentionv1.ColumnMapping{CustomerID: "customer_id", Timestamp: "date", Amount: "amount", TimestampLayout: "Date"},
		}}
	mustCreate(t, c, src)
	src.Status.Customers = 400
	src.Status.Model = &retentionv1.ModelStatus{Selected: "BGNBD"}
	setReady(t, c, src, metav1.ConditionTrue, "Succeeded", "scored 400 customers")

	lapsed := &retentionv1.Segment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "lapsed"},
		Spec: retentionv1.SegmentSpec{SourceRef: retentionv1.LocalObjectReference{Name: "warehouse"}, Rule: "customer.pAlive < 0.5"}}
	broken := &retentionv1.Segment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "broken"},
		Spec: retentionv1.SegmentSpec{SourceRef: retentionv1.LocalObjectReference{Name: "warehouse"}, Rule: "customer.nope"}}
	fresh := &retentionv1.Segment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fresh"},
		Spec: retentionv1.SegmentSpec{SourceRef: retentionv1.LocalObjectReference{Name: "warehouse"}, Rule: "true"}}
	elsewhere := &retentionv1.Segment{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "elsewhere"},
		Spec: retentionv1.SegmentSpec{SourceRef: retentionv1.LocalObjectReference{Name: "warehouse"}, Rule: "true"}}
	for _, s := range []client.Object{lapsed, broken, fresh, elsewhere} {
		mustCreate(t, c, s)
	}
	lapsed.Status.Size, lapsed.Status.SharePercent, lapsed.Status.SnapshotID = 120, "30.0", 7
	setReady(t, c, lapsed, metav1.ConditionTrue, "Succeeded", "120 customers")
	setReady(t, c, broken, metav1.ConditionFalse, "InvalidRule", "no such field nope")
	setReady(t, c, elsewhere, metav1.ConditionFalse, "SourceNotFound", "no source")
	// fresh has no conditions yet.

	ch := &retentionv1.Channel{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hook"},
		Spec: retentionv1.ChannelSpec{Webhook: &retentionv1.WebhookChannel{URL: "http://127.0.0.1:9/hook"}}}
	mustCreate(t, c, ch)
	setReady(t, c, ch, metav1.ConditionTrue, "Succeeded", "ok")

	camp := &retentionv1.Campaign{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "win-back"},
		Spec: retentionv1.CampaignSpec{
			SegmentRef: retentionv1.LocalObjectReference{Name: "lapsed"},
			ChannelRef: retentionv1.LocalObjectReference{Name: "hook"},
			Message:    retentionv1.Message{Body: "We miss you"},
			Schedule:   "0 9 * * 1",
		}}
	mustCreate(t, c, camp)
	setReady(t, c, camp, metav1.ConditionTrue, "Succeeded", "scheduled")
	oldRun := &retentionv1.CampaignRun{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "win-back-29000000", Labels: map[string]string{LabelCampaign: "win-back"}},
		Spec: retentionv1.CampaignRunSpec{CampaignRef: retentionv1.LocalObjectReference{Name: "win-back"}, ScheduledTime: metav1.Now()}}
	mustCreate(t, c, oldRun)
	oldRun.Status.Phase = retentionv1.RunMeasuring
	oldRun.Status.Audience = &retentionv1.AudienceCounts{Members: 120, Treatment: 108, Holdout: 12}
	oldRun.Status.Delivery = &retentionv1.DeliveryCounts{Sent: 108}
	oldRun.Status.JobRef = &retentionv1.NamespacedReference{Namespace: "retention-jobs", Name: "win-back-29000000"}
	setReady(t, c, oldRun, metav1.ConditionFalse, "Measuring", "window open")

	// An Event as the operator's recorder writes it (events.k8s.io/v1).
	mustCreate(t, c, &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: ns, Name: "win-back.1"},
		EventTime:           metav1.NewMicroTime(time.Now().Add(-time.Minute)),
		ReportingController: "retention-operator", ReportingInstance: "retention-operator-0",
		Action: "Schedule", Reason: retentionv1.EventRunCreated, Type: corev1.EventTypeNormal,
		Note:      "created run win-back-29000000 for 2026-01-05T09:00:00Z",
		Regarding: corev1.ObjectReference{APIVersion: retentionv1.GroupVersion.String(), Kind: "Campaign", Namespace: ns, Name: "win-back", UID: camp.UID},
	})
	// An Event about another object, which status must not show.
	mustCreate(t, c, &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: ns, Name: "hook.1"},
		EventTime:           metav1.NewMicroTime(time.Now()),
		ReportingController: "retention-operator", ReportingInstance: "retention-operator-0",
		Action: "Resolve", Reason: "SecretNotFound", Type: corev1.EventTypeWarning, Note: "about the channel",
		Regarding: corev1.ObjectReference{APIVersion: retentionv1.GroupVersion.String(), Kind: "Channel", Namespace: ns, Name: "hook", UID: ch.UID},
	})

	t.Run("get table", func(t *testing.T) {
		code, out, _ := run("get", "segments")
		t.Logf("get segments:\n%s", out)
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 {
			t.Fatalf("want a header and 3 segments of namespace shop, got:\n%s", out)
		}
		if f := strings.Fields(lines[0]); strings.Join(f, " ") != "NAME READY REASON SOURCE SIZE SHARE AGE" {
			t.Errorf("header %q", lines[0])
		}
		// Sorted by name: broken, fresh, lapsed.
		wantRows := [][]string{
			{"broken", "False", "InvalidRule", "warehouse", "0", "<none>"},
			{"fresh", "Unknown", "<none>", "warehouse", "0", "<none>"},
			{"lapsed", "True", "Succeeded", "warehouse", "120", "30.0%"},
		}
		for i, want := range wantRows {
			got := strings.Fields(lines[i+1])
			if len(got) != len(want)+1 || strings.Join(got[:len(want)], " ") != strings.Join(want, " ") {
				t.Errorf("row %d: got %q, want %q and an age", i, lines[i+1], want)
			}
		}
		// Columns line up as kubectl's do.
		if strings.Index(lines[0], "SOURCE") != strings.Index(lines[3], "warehouse") {
			t.Errorf("columns not aligned:\n%s", out)
		}
	})

	t.Run("get runs and campaigns", func(t *testing.T) {
		code, out, _ := run("get", "runs")
		if code != 0 || !regexp.MustCompile(`(?m)^win-back-29000000\s+False\s+Measuring\s+win-back\s+Measuring\s+108\s+108\s+<none>\s+\S+$`).MatchString(out) {
			t.Errorf("exit %d, runs table:\n%s", code, out)
		}
		code, out, _ = run("get", "camp", "-o", "wide")
		if code != 0 || !strings.Contains(out, "0 9 * * 1") || !strings.Contains(out, "scheduled") {
			t.Errorf("exit %d, campaigns table:\n%s", code, out)
		}
	})

	t.Run("status selector", func(t *testing.T) {
		names := func(args ...string) string {
			t.Helper()
			code, out, errOut := run(append([]string{"get", "segments", "-o", "name"}, args...)...)
			if code != 0 {
				t.Fatalf("%v: exit %d: %s", args, code, errOut)
			}
			return strings.ReplaceAll(strings.TrimSpace(out), "segment.retention.dev/", "")
		}
		if got := names("--status-selector", "Ready!=True"); got != "broken\nfresh" {
			t.Errorf("Ready!=True: got %q", got)
		}
		if got := names("--status-selector", "ready=false"); got != "broken" {
			t.Errorf("ready=false (case-insensitive): got %q", got)
		}
		if got := names("--status-selector=Ready=True"); got != "lapsed" {
			t.Errorf("Ready=True: got %q", got)
		}
		// Flags after or before the kind, across namespaces.
		code, out, _ := run("get", "-A", "segments", "--status-selector", "Ready!=True")
		if code != 0 || !regexp.MustCompile(`(?m)^other\s+elsewhere\s+False\s+SourceNotFound`).MatchString(out) || !strings.HasPrefix(out, "NAMESPACE") || strings.Contains(out, "lapsed") {
			t.Errorf("-A Ready!=True: exit %d\n%s", code, out)
		}
		if code, _, errOut := run("get", "segments", "--status-selector", "Ready"); code != ExitUsage || !strings.Contains(errOut, "Type=Status") {
			t.Errorf("bad selector: exit %d, %s", code, errOut)
		}
		if code, _, _ := run("get", "widgets"); code != ExitUsage {
			t.Errorf("unknown kind: exit %d", code)
		}
	})

	t.Run("get json and yaml", func(t *testing.T) {
		code, out, _ := run("get", "segments", "-o", "json", "--status-selector", "Ready=True")
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		var list struct {
			Kind  string                `json:"kind"`
			Items []retentionv1.Segment `json:"items"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if list.Kind != "List" || len(list.Items) != 1 || list.Items[0].Name != "lapsed" || list.Items[0].Kind != "Segment" ||
			list.Items[0].APIVersion != "retention.dev/v1alpha1" || list.Items[0].Status.Size != 120 {
			t.Errorf("json list: %+v", list)
		}
		code, out, _ = run("get", "channels", "-o", "yaml")
		if code != 0 || !strings.Contains(out, "kind: Channel") || !strings.Contains(out, "url: http://127.0.0.1:9/hook") {
			t.Errorf("exit %d, yaml:\n%s", code, out)
		}
	})

	t.Run("status campaign", func(t *testing.T) {
		code, out, errOut := run("status", "campaign", "win-back")
		t.Logf("status campaign win-back:\n%s", out)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		for _, want := range []string{
			"Name: win-back", "Kind: Campaign", "Schedule: 0 9 * * 1", "Suspended: false",
			"  Ready: True, Reason: Succeeded, Message: scheduled",
			"Segment:\n  Name: lapsed\n  Size: 120\n  Conditions:\n    Ready: True, Reason: Succeeded",
			"Channel:\n  Name: hook\n  Conditions:\n    Ready: True",
			"Runs:\n  NAME",
			"retention-jobs/win-back-29000000",
			"Events:\n  TYPE",
			"created run win-back-29000000",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("status lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "about the channel") {
			t.Errorf("status shows another object's Event:\n%s", out)
		}
		code, out, _ = run("status", "campaign", "win-back", "-o", "json")
		var rep struct {
			Object  retentionv1.Campaign `json:"object"`
			Segment struct {
				Found  bool                `json:"found"`
				Object retentionv1.Segment `json:"object"`
			} `json:"segment"`
			Runs   []retentionv1.CampaignRun `json:"runs"`
			Events []Event                   `json:"events"`
		}
		if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil {
			t.Fatalf("exit %d, %v\n%s", code, err, out)
		}
		if rep.Object.Name != "win-back" || !rep.Segment.Found || rep.Segment.Object.Status.Size != 120 || len(rep.Runs) != 1 || len(rep.Events) != 1 || rep.Events[0].Reason != "RunCreated" {
			t.Errorf("json report: %+v", rep)
		}
		if code, _, errOut := run("status", "campaign", "nope"); code != ExitFailed || !strings.Contains(errOut, "not found") {
			t.Errorf("missing campaign: exit %d %s", code, errOut)
		}
	})

	t.Run("status source and segment", func(t *testing.T) {
		code, out, _ := run("status", "source", "warehouse")
		if code != 0 || !strings.Contains(out, "Customers: 400") || !strings.Contains(out, "Model: BGNBD") ||
			!regexp.MustCompile(`(?m)^  lapsed\s+True\s+Succeeded\s+120`).MatchString(out) || strings.Contains(out, "elsewhere") {
			t.Errorf("exit %d, source status:\n%s", code, out)
		}
		code, out, _ = run("status", "segment", "lapsed")
		if code != 0 || !strings.Contains(out, "CustomerSource:\n  Name: warehouse\n  Conditions:\n    Ready: True") ||
			!regexp.MustCompile(`(?m)^  win-back\s+True\s+Succeeded\s+hook\s+false`).MatchString(out) || !strings.Contains(out, "Events: <none>") {
			t.Errorf("exit %d, segment status:\n%s", code, out)
		}
		code, out, _ = run("status", "segment", "elsewhere", "-n", "other")
		if code != 0 || !strings.Contains(out, "CustomerSource:\n  Name: warehouse\n  Not found") || !strings.Contains(out, "Campaigns: <none>") {
			t.Errorf("exit %d, segment in other namespace:\n%s", code, out)
		}
	})

	t.Run("suspend and resume", func(t *testing.T) {
		code, out, _ := run("suspend", "campaign", "win-back")
		if code != 0 || strings.TrimSpace(out) != "campaign.retention.dev/win-back suspended" {
			t.Fatalf("exit %d: %q", code, out)
		}
		var got retentionv1.Campaign
		mustGet(t, c, ns, "win-back", &got)
		if !got.Spec.Suspend || got.Spec.Schedule != "0 9 * * 1" || got.Spec.Message.Body != "We miss you" {
			t.Fatalf("after suspend: %+v", got.Spec)
		}
		if code, _, _ := run("resume", "campaign", "win-back"); code != 0 {
			t.Fatalf("resume: exit %d", code)
		}
		mustGet(t, c, ns, "win-back", &got)
		if got.Spec.Suspend {
			t.Fatal("still suspended after resume")
		}
		if code, _, _ := run("suspend", "source", "warehouse"); code != 0 {
			t.Fatal("suspend source")
		}
		var s retentionv1.CustomerSource
		mustGet(t, c, ns, "warehouse", &s)
		if !s.Spec.Suspend {
			t.Fatal("source not suspended")
		}
		if code, _, errOut := run("suspend", "campaign", "nope"); code != ExitFailed || !strings.Contains(errOut, "not found") {
			t.Errorf("missing: exit %d %s", code, errOut)
		}
	})

	// finish plays the operator: it waits for the next run of the campaign
	// the plugin creates, checks its shape, and writes the phase.
	finish := func(t *testing.T, phase retentionv1.RunPhase, seen map[string]bool) <-chan *retentionv1.CampaignRun {
		done := make(chan *retentionv1.CampaignRun, 1)
		go func() {
			defer close(done)
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				var runs retentionv1.CampaignRunList
				if err := c.List(ctx, &runs, client.InNamespace(ns), client.MatchingLabels{LabelCampaign: "win-back"}); err != nil {
					t.Error(err)
					return
				}
				for i := range runs.Items {
					r := &runs.Items[i]
					if seen[r.Name] {
						continue
					}
					seen[r.Name] = true
					time.Sleep(150 * time.Millisecond) // the plugin sees Pending first
					r.Status.Phase = phase
					if err := c.Status().Update(ctx, r); err != nil {
						t.Error(err)
					}
					done <- r
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Error("the plugin created no run")
		}()
		return done
	}

	t.Run("run --wait", func(t *testing.T) {
		seen := map[string]bool{oldRun.Name: true}
		for _, tc := range []struct {
			phase retentionv1.RunPhase
			args  []string
			code  int
		}{
			{retentionv1.RunSucceeded, nil, ExitOK},
			{retentionv1.RunMeasuring, nil, ExitOK},
			{retentionv1.RunFailed, nil, ExitFailed},
			{retentionv1.RunCancelled, nil, ExitFailed},
			{retentionv1.RunMeasuring, []string{"--for", "measured", "--timeout", "1s"}, ExitTimeout},
		} {
			done := finish(t, tc.phase, seen)
			code, out, errOut := run(append([]string{"run", "campaign", "win-back", "--wait", "--timeout", "15s"}, tc.args...)...)
			r := <-done
			t.Logf("%s %v: exit %d, stderr:\n%s", tc.phase, tc.args, code, errOut)
			if r == nil {
				t.Fatal("no run")
			}
			if code != tc.code {
				t.Errorf("%s %v: exit %d, want %d\nstdout: %s\nstderr: %s", tc.phase, tc.args, code, tc.code, out, errOut)
			}
			if !strings.HasPrefix(r.Name, "win-back-manual-") || r.Spec.CampaignRef.Name != "win-back" || r.Spec.ScheduledTime.IsZero() ||
				!strings.Contains(out, "campaignrun.retention.dev/"+r.Name+" created") {
				t.Errorf("run %s: %+v, stdout %q", r.Name, r.Spec, out)
			}
			if !strings.Contains(errOut, "run "+r.Name+": "+string(tc.phase)) {
				t.Errorf("no progress line for %s:\n%s", tc.phase, errOut)
			}
		}
	})

	t.Run("run --wait timeout", func(t *testing.T) {
		start := time.Now()
		code, out, errOut := run("run", "campaign", "win-back", "--wait", "--timeout", "300ms", "--name", "stuck", "-o", "json")
		if code != ExitTimeout || !strings.Contains(errOut, "timed out after 300ms waiting for run stuck (phase Pending)") {
			t.Errorf("exit %d: %s", code, errOut)
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("took %s", time.Since(start))
		}
		var r retentionv1.CampaignRun
		if err := json.Unmarshal([]byte(out), &r); err != nil || r.Name != "stuck" || r.Labels[LabelCampaign] != "win-back" {
			t.Errorf("json run: %v %+v", err, r)
		}
		if code, _, errOut := run("run", "campaign", "nope"); code != ExitFailed || !strings.Contains(errOut, "not found") {
			t.Errorf("missing campaign: exit %d %s", code, errOut)
		}
	})

	t.Run("erase", func(t *testing.T) {
		// The operator's part: complete (or fail) the next erasure.
		finishErasure := func(phase retentionv1.ErasurePhase) <-chan *retentionv1.CustomerErasure {
			done := make(chan *retentionv1.CustomerErasure, 1)
			go func() {
				defer close(done)
				for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
					var l retentionv1.CustomerErasureList
					if err := c.List(ctx, &l, client.InNamespace(ns)); err != nil {
						t.Error(err)
						return
					}
					for i := range l.Items {
						e := &l.Items[i]
						if e.Status.Phase != "" {
							continue
						}
						time.Sleep(150 * time.Millisecond)
						e.Status.Phase = phase
						if err := c.Status().Update(ctx, e); err != nil {
							t.Error(err)
						}
						done <- e
						return
					}
				}
				t.Error("the plugin created no erasure")
			}()
			return done
		}
		ids := filepath.Join(t.TempDir(), "ids")
		if err := os.WriteFile(ids, []byte("c00003\n\n c00004 \n"), 0o600); err != nil {
			t.Fatal(err)
		}
		done := finishErasure(retentionv1.ErasureCompleted)
		code, out, errOut := run("erase", "customer", "c00001", "c00002", "--source", "warehouse", "--from-file", ids, "--wait", "--timeout", "15s")
		e := <-done
		if code != ExitOK || e == nil || !strings.Contains(out, "customererasure.retention.dev/"+e.Name+" created (4 customers of source warehouse)") ||
			!strings.Contains(errOut, "erasure "+e.Name+": Completed") {
			t.Fatalf("erase: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		if e.Spec.SourceRef.Name != "warehouse" || e.Spec.CustomerIDsSecretRef.Name != e.Name || e.Spec.CustomerIDsSecretRef.Key != "ids" {
			t.Errorf("erasure spec %+v", e.Spec)
		}
		var sec corev1.Secret
		mustGet(t, c, ns, e.Name, &sec)
		if got := string(sec.Data["ids"]); got != "c00001\nc00002\nc00003\nc00004\n" {
			t.Errorf("secret ids %q", got)
		}
		if len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].UID != e.UID {
			t.Errorf("secret owners %+v", sec.OwnerReferences)
		}
		// The ids are in the Secret only.
		b, _ := json.Marshal(e)
		if strings.Contains(string(b), "c00001") {
			t.Errorf("the erasure names a customer: %s", b)
		}

		done = finishErasure(retentionv1.ErasureFailed)
		if code, _, errOut := run("erase", "customer", "c9", "--source", "warehouse", "--wait", "--timeout", "15s"); code != ExitFailed || !strings.Contains(errOut, "failed") {
			t.Errorf("failed erasure: exit %d %s", code, errOut)
		}
		<-done
		for _, tc := range []struct {
			args []string
			code int
			msg  string
		}{
			{[]string{"erase", "customer", "c1"}, ExitUsage, "--source is required"},
			{[]string{"erase", "customer", "--source", "warehouse"}, ExitUsage, "no customer id"},
			{[]string{"erase", "campaign", "x", "--source", "warehouse"}, ExitUsage, "usage"},
			{[]string{"erase", "customer", "c1", "--source", "nope"}, ExitOK, "does not exist"},
		} {
			if code, _, errOut := run(tc.args...); code != tc.code || !strings.Contains(errOut, tc.msg) {
				t.Errorf("%v: exit %d, %s", tc.args, code, errOut)
			}
		}
		code, out, _ = run("get", "erasures")
		if code != 0 || !strings.Contains(out, "SOURCE") || !strings.Contains(out, e.Name) || !strings.Contains(out, "Completed") {
			t.Errorf("get erasures: exit %d\n%s", code, out)
		}
	})

	t.Run("abort and report", func(t *testing.T) {
		rc := &retentionv1.Campaign{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reactivate"},
			Spec: retentionv1.CampaignSpec{SegmentRef: retentionv1.LocalObjectReference{Name: "lapsed"}, ChannelRef: retentionv1.LocalObjectReference{Name: "hook"},
				Message: retentionv1.Message{Body: "Come back"}, Schedule: "0 9 * * 1", Suspend: true}}
		mustCreate(t, c, rc)
		newRun := func(name string, day int, phase retentionv1.RunPhase) *retentionv1.CampaignRun {
			r := &retentionv1.CampaignRun{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec: retentionv1.CampaignRunSpec{CampaignRef: retentionv1.LocalObjectReference{Name: "reactivate"},
					ScheduledTime: metav1.NewTime(time.Date(2026, 11, day, 9, 0, 0, 0, time.UTC))}}
			mustCreate(t, c, r)
			r.Status.Phase = phase
			setReady(t, c, r, metav1.ConditionFalse, string(phase), "")
			return r
		}
		done := newRun("reactivate-done", 2, retentionv1.RunSucceeded)
		sending := newRun("reactivate-sending", 9, retentionv1.RunSending)

		// abort: the annotation the operator acts on; --wait until it ends.
		go func() {
			time.Sleep(300 * time.Millisecond)
			var r retentionv1.CampaignRun
			mustGet(t, c, ns, sending.Name, &r)
			r.Status.Phase = retentionv1.RunCancelled
			if err := c.Status().Update(ctx, &r); err != nil {
				t.Error(err)
			}
		}()
		code, out, errOut := run("abort", "run", sending.Name, "--wait", "--timeout", "10s")
		if code != ExitOK || !strings.Contains(out, "campaignrun.retention.dev/"+sending.Name+" abort requested") || !strings.Contains(errOut, "run "+sending.Name+": Cancelled") {
			t.Errorf("abort: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		var r retentionv1.CampaignRun
		mustGet(t, c, ns, sending.Name, &r)
		if r.Annotations[retentionv1.CancelRequestedAnnotation] != retentionv1.AbortRequest {
			t.Errorf("annotations after abort: %v", r.Annotations)
		}
		if code, _, errOut := run("abort", "run", done.Name); code != ExitFailed || !strings.Contains(errOut, "already ended (Succeeded)") {
			t.Errorf("abort of a finished run: exit %d %s", code, errOut)
		}
		if code, _, errOut := run("abort", "campaign", "reactivate"); code != ExitUsage || !strings.Contains(errOut, "usage") {
			t.Errorf("abort campaign: exit %d %s", code, errOut)
		}

		// retry: only a Failed run; --wait until the operator handled the
		// request and the run has sent.
		failed := newRun("reactivate-failed", 5, retentionv1.RunFailed)
		go func() {
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				var r retentionv1.CampaignRun
				mustGet(t, c, ns, failed.Name, &r)
				if v := r.Annotations[retentionv1.RetryRequestedAnnotation]; v != "" {
					r.Status.LastHandledRetryAt, r.Status.Phase = v, retentionv1.RunMeasuring
					if err := c.Status().Update(ctx, &r); err != nil {
						t.Error(err)
					}
					return
				}
			}
			t.Error("no retry requested")
		}()
		code, out, errOut = run("retry", "run", failed.Name, "--wait", "--timeout", "10s")
		if code != ExitOK || !strings.Contains(out, "campaignrun.retention.dev/"+failed.Name+" retry requested") || !strings.Contains(errOut, "run "+failed.Name+": Measuring") {
			t.Errorf("retry: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		if code, _, errOut := run("retry", "run", done.Name); code != ExitFailed || !strings.Contains(errOut, "only a Failed run is retried") {
			t.Errorf("retry of a succeeded run: exit %d %s", code, errOut)
		}

		// report: each run's groups, uplift, MDE and SRM, then the pooled line.
		mustGet(t, c, ns, done.Name, &r)
		r.Status.Experiment = &retentionv1.ExperimentDesign{MinimumDetectableEffect: "2.10", SampleRatioPValue: "0.41", PlannedHoldoutPercent: 10}
		r.Status.Measurement = &retentionv1.Measurement{Final: true,
			Treatment: retentionv1.GroupConversion{Customers: 900, Converted: 90, RatePercent: "10.00"},
			Holdout:   retentionv1.GroupConversion{Customers: 100, Converted: 6, RatePercent: "6.00"},
			Uplift:    &retentionv1.Uplift{PercentagePoints: "4.00", Lower: "-1.20", Upper: "8.10", PValue: "0.18", Method: retentionv1.UpliftNewcombe},
			Verdict:   "no significant difference: +4.00 pp"}
		if err := c.Status().Update(ctx, &r); err != nil {
			t.Fatal(err)
		}
		rc.Status.Measurement = &retentionv1.Measurement{Runs: 1, Final: true, Treatment: r.Status.Measurement.Treatment, Holdout: r.Status.Measurement.Holdout,
			Uplift: r.Status.Measurement.Uplift, Verdict: "pooled verdict"}
		setReady(t, c, rc, metav1.ConditionTrue, "Succeeded", "")
		code, out, errOut = run("report", "campaign", "reactivate")
		t.Logf("report:\n%s", out)
		for _, want := range []string{"RUN", "UPLIFT (95% CI)", "reactivate-done", "Succeeded", "90/900 (10.00%)", "6/100 (6.00%)", "4.00pp [-1.20, 8.10]", "0.18", "2.10pp", "0.41",
			"reactivate-sending", "Cancelled", "pooled (1 runs)", "reactivate-done: no significant difference: +4.00 pp", "campaign reactivate: pooled verdict"} {
			if code != ExitOK || !strings.Contains(out, want) {
				t.Errorf("report: exit %d, no %q in\n%s%s", code, want, out, errOut)
			}
		}
		if i, j := strings.Index(out, "reactivate-done"), strings.Index(out, "reactivate-sending"); i < 0 || j < i {
			t.Errorf("runs not in schedule order:\n%s", out)
		}
		png := filepath.Join(t.TempDir(), "uplift.png")
		if code, _, errOut := run("report", "campaign", "reactivate", "--plot", png); code != ExitOK || !strings.Contains(errOut, "uplift plot written to "+png) {
			t.Errorf("report --plot: exit %d %s", code, errOut)
		}
		checkUpliftPlot(t, png)
		code, out, _ = run("report", "campaign", "reactivate", "-o", "json")
		var rep CampaignReport
		if err := json.Unmarshal([]byte(out), &rep); code != ExitOK || err != nil || len(rep.Runs) != 3 || rep.Pooled == nil || rep.Runs[0].Measurement == nil {
			t.Errorf("report json: exit %d, %v, %+v", code, err, rep)
		}
		if code, _, errOut := run("report", "campaign", "nope"); code != ExitFailed || !strings.Contains(errOut, "not found") {
			t.Errorf("report of a missing campaign: exit %d %s", code, errOut)
		}
	})

	t.Run("preview", func(t *testing.T) {
		manifest := filepath.Join(t.TempDir(), "lapsed.yaml")
		if err := os.WriteFile(manifest, []byte(`apiVersion: retention.dev/v1alpha1
kind: Segment
metadata:
  name: lapsed
spec:
  sourceRef: {name: warehouse}
  rule: customer.pAlive < 0.4
`), 0o600); err != nil {
			t.Fatal(err)
		}
		// The operator's part: evaluate the preview Segment the plugin makes.
		seen := make(chan retentionv1.Segment, 1)
		go func() {
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				var l retentionv1.SegmentList
				if err := c.List(ctx, &l, client.InNamespace(ns), client.MatchingLabels{retentionv1.PreviewLabel: "true"}); err != nil {
					t.Error(err)
					return
				}
				if len(l.Items) == 0 {
					continue
				}
				p := l.Items[0]
				seen <- *p.DeepCopy()
				p.Status = retentionv1.SegmentStatus{Size: 90, Entered: 5, Exited: 35, SharePercent: "22.5", ExpectedValue: "1234.50", SnapshotID: 7}
				p.Status.Conditions = []metav1.Condition{{Type: retentionv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Succeeded",
					Message: "90 customers", ObservedGeneration: p.Generation, LastTransitionTime: metav1.Now()}}
				if err := c.Status().Update(ctx, &p); err != nil {
					t.Error(err)
				}
				return
			}
			t.Error("the plugin made no preview Segment")
		}()
		code, out, errOut := run("preview", "segment", "-f", manifest)
		t.Logf("preview:\n%s%s", out, errOut)
		p := <-seen
		if code != ExitOK || p.Spec.Rule != "customer.pAlive < 0.4" || p.Spec.SourceRef.Name != "warehouse" ||
			p.Annotations[retentionv1.PreviewOfAnnotation] != "lapsed" || !strings.HasPrefix(p.Name, "lapsed-preview-") {
			t.Fatalf("preview: exit %d; the Segment made: %s %v %+v", code, p.Name, p.Annotations, p.Spec)
		}
		for _, want := range []string{"SOURCE", "ENTERING", "warehouse", "90", "22.5%", "1234.50", "lapsed", "120", "5", "35"} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in the preview:\n%s", want, out)
			}
		}
		var gone retentionv1.Segment
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: p.Name}, &gone); err == nil {
			t.Errorf("the preview Segment %s is still there", p.Name)
		}
		for _, tc := range []struct {
			args []string
			code int
			msg  string
		}{
			{[]string{"preview", "segment"}, ExitUsage, "usage"},
			{[]string{"preview", "campaign", "-f", manifest}, ExitUsage, "usage"},
			{[]string{"preview", "segment", "-f", filepath.Join(t.TempDir(), "none.yaml")}, ExitFailed, "no such file"},
		} {
			if code, _, errOut := run(tc.args...); code != tc.code || !strings.Contains(errOut, tc.msg) {
				t.Errorf("%v: exit %d %s", tc.args, code, errOut)
			}
		}
	})

	t.Run("check api", func(t *testing.T) {
		code, out, errOut := run("check", "api", "--wait", "5s")
		if code != 0 || strings.TrimSpace(out) != "The retention API is ready" {
			t.Errorf("exit %d: %s %s", code, out, errOut)
		}
		var o, eo bytes.Buffer
		down := &Env{Stdout: &o, Stderr: &eo, Poll: 50 * time.Millisecond, Connect: func(ConnFlags) (*Conn, error) {
			return &Conn{Client: c, Config: &rest.Config{Host: "http://127.0.0.1:1"}, Namespace: ns}, nil
		}}
		if code := down.Run(ctx, []string{"check", "api", "--wait", "200ms"}); code != ExitFailed || !strings.Contains(eo.String(), "error: not ready") {
			t.Errorf("unreachable API: exit %d: %s", code, eo.String())
		}
	})
}

func mustCreate(t *testing.T, c client.Client, o client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), o); err != nil {
		t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
	}
}

func mustGet(t *testing.T, c client.Client, ns, name string, o client.Object) {
	t.Helper()
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, o); err != nil {
		t.Fatal(err)
	}
}

// setReady writes the object's status (what the test set on it) with a
// Ready condition through the status subresource.
func setReady(t *testing.T, c client.Client, o client.Object, status metav1.ConditionStatus, reason, msg string) {
	t.Helper()
	h := o.(interface{ GetConditions() *[]metav1.Condition })
	*h.GetConditions() = []metav1.Condition{{Type: retentionv1.ConditionReady, Status: status, Reason: reason, Message: msg, LastTransitionTime: metav1.Now()}}
	if err := c.Status().Update(context.Background(), o); err != nil {
		t.Fatalf("status of %s: %v", o.GetName(), err)
	}
}

// checkUpliftPlot decodes the report's PNG and looks for the run's
// interval (blue) and the pooled one (red).
func checkUpliftPlot(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	inks := map[color.RGBA]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			inks[color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8), uint8(a >> 8)}]++
		}
	}
	if b.Dx() != 1000 || b.Dy() < 500 || inks[plot.Blue] < 300 || inks[plot.Red] < 300 || inks[plot.Black] < 300 {
		t.Errorf("uplift plot %v: %d blue, %d red, %d black pixels", b, inks[plot.Blue], inks[plot.Red], inks[plot.Black])
	}
}
