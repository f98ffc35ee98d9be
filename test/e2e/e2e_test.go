// Package e2e is the end-to-end tier: the whole job on a local simulated
// cluster, set up with YAML only, checked against the receivers' own
// records, the store, the objects' status and a real Prometheus. Run it with
// `make test-e2e`.
package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/store"
	"github.com/retention-dev/retention-operator/test/promcheck"
)

const (
	shopCustomers = 100_000
	crmCustomers  = 3_000
	// newcomers join the CRM during the story and enter the crm-new segment.
	newcomers = 200
)

// TestEndToEnd tells the whole story, each step building on the last.
func TestEndToEnd(t *testing.T) {
	w := startWorld(t)
	ctx := context.Background()
	today := time.Now().UTC().Truncate(24 * time.Hour)
	shopTx, shopOptedOut := w.generateShop(t, today)
	w.loadCRM(t, today)

	// The platform team's manifests, then the marketer's.
	w.apply(t, "testdata/platform.yaml")
	shop := w.waitSourceScored(t, "shop", shopCustomers, 0)
	crm := w.waitSourceScored(t, "crm", crmCustomers, 0)
	w.run(t, nil, "wait", "-n", namespace, "--for=condition=Ready", "--timeout=60s", "channel/shop-webhook", "channel/crm-email")
	w.run(t, nil, "apply", "-n", namespace, "-k", filepath.Join(w.root, "config", "samples", "segments"))
	w.apply(t, "testdata/marketer.yaml")
	w.checkSegments(t, map[string]int64{"shop": shop.Status.SnapshotID, "crm": crm.Status.SnapshotID})

	// The scheduled win-back campaign: a first run, then one-click opt-outs
	// from its messages, then two more runs.
	// Suspended as soon as a run exists, so no next slot slips in while
	// the test looks at it.
	w.waitRunsCreated(t, "win-back", 1)
	w.patchSuspend(t, "win-back", true)
	first := w.waitRuns(t, "win-back", 1)[0]
	run1 := w.checkDelivery(t, first, webhookDelivery(w))
	w.checkExclusions(t, run1, shopOptedOut, 800)
	optedOut := w.optOut(t, run1.sent[:40])
	w.patchSuspend(t, "win-back", false)
	w.waitRunsCreated(t, "win-back", 3)
	w.patchSuspend(t, "win-back", true)
	runs := w.waitRuns(t, "win-back", 3)
	run2 := w.checkDelivery(t, runs[1], webhookDelivery(w))
	run3 := w.checkDelivery(t, runs[2], webhookDelivery(w))
	// Created on schedule: each run for a slot of "@every 30s", within the
	// starting deadline of 20 s, one slot per run.
	for i, r := range runs {
		slot, created := r.Spec.ScheduledTime.Time, r.CreationTimestamp.Time
		if slot.IsZero() || created.Before(slot.Add(-time.Second)) || created.After(slot.Add(21*time.Second)) {
			t.Errorf("run %s created at %s for the slot %s", r.Name, created, slot)
		}
		if i > 0 && slot.Sub(runs[i-1].Spec.ScheduledTime.Time)%(30*time.Second) != 0 {
			t.Errorf("run %s: slot %s is not 30 s steps after %s", r.Name, slot, runs[i-1].Spec.ScheduledTime.Time)
		}
	}
	if got, want := run2.status.Audience.OptedOut, run1.status.Audience.OptedOut+int64(len(optedOut)); got != want {
		t.Errorf("run 2 excluded %d opted-out customers, want %d: the %d opted out in the CSV and the %d who unsubscribed", got, want, run1.status.Audience.OptedOut, len(optedOut))
	}
	// Capped in run 3: those contacted in both runs, and those held out of
	// both (two ghost contacts each: the holdout is capped alike).
	twice := len(intersect(run1.sent, run2.sent))
	heldTwice := len(intersect(run1.group(store.GroupHoldout), run2.group(store.GroupHoldout)))
	if got := run3.status.Audience.Capped; got != int64(twice+heldTwice) {
		t.Errorf("run 3 capped %d customers, want the %d contacted twice and the %d held out twice", got, twice, heldTwice)
	}
	w.checkWinBackAcrossRuns(t, []*runResult{run1, run2, run3}, optedOut)

	// The OnEnter welcome email: newcomers join the CRM and enter crm-new.
	w.addNewcomers(t, today)
	w.requestScoring(t, "crm")
	welcomeRuns := w.waitRuns(t, "welcome", 1)
	welcome := w.checkDelivery(t, welcomeRuns[0], smtpDelivery(w))
	w.checkWelcome(t, welcome)

	// Purchases arrive: the same share of every group buys (the messages
	// reach no one real), the sources rescore and each run counts its
	// conversions by intent to treat.
	buyers := func(id string) bool { return hashShare(id) < 0.3 }
	w.files.Put("transactions.csv.gz", appendPurchases(t, shopTx, today, buyers))
	w.requestScoring(t, "shop")
	w.addPurchases(t, today, welcome.group(store.GroupTreatment), welcome.group(store.GroupHoldout), buyers)
	w.requestScoring(t, "crm")
	for _, r := range []*runResult{run1, run2, run3, welcome} {
		w.checkMeasurement(t, r, buyers)
	}

	// What Prometheus sees agrees with the receivers, and every shipped
	// dashboard query and alert expression has data.
	w.checkMetrics(t, ctx, "win-back", []*runResult{run1, run2, run3}, len(w.webhookKeys()))
	w.checkMetrics(t, ctx, "welcome", []*runResult{welcome}, w.smtp.Stats().Unique)
	w.checkShippedExpressions(t, ctx, "win-back")

	// A customer the story messaged asks to be forgotten.
	w.checkErasure(t, run1.sent[50], []*runResult{run1, run2, run3})

	// What the operator must never do, checked on everything the story
	// left behind: write personal data outside its store, run a pod that
	// the restricted Pod Security Standard refuses, or keep writing to the
	// API server when nothing changes.
	w.checkNoPersonalData(t)
	w.checkPodSecurity(t)
	w.checkQuiet(t, time.Minute)
}

// generateShop writes the shop's purchase history (two years up to
// yesterday, so nothing is dated today before the story's own purchases)
// with `retention-operator generate` and serves it; it returns the
// uncompressed transactions and the customers opted out in the export.
func (w *world) generateShop(t *testing.T, today time.Time) ([]byte, map[string]bool) {
	t.Helper()
	end := today.AddDate(0, 0, -1)
	tx, cust := filepath.Join(w.dir, "transactions.csv.gz"), filepath.Join(w.dir, "customers.csv.gz")
	w.generate(t, shopCustomers, 42, end, tx, cust)
	plantNames(t, cust)
	for name, path := range map[string]string{"transactions.csv.gz": tx, "customers.csv.gz": cust} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		w.files.Put(name, b)
	}
	optedOut := map[string]bool{}
	for _, f := range csvRows(t, gunzip(t, cust)) {
		if f[5] == "true" {
			optedOut[f[0]] = true
		}
	}
	return gunzip(t, tx), optedOut
}

// checkExclusions recomputes a first run's exclusions from the segments'
// memberships and the export's opt-out column: opted out first, then
// suppressed, then over maxPerRun (nobody is capped in a first run).
func (w *world) checkExclusions(t *testing.T, r *runResult, optedOutInExport map[string]bool, maxPerRun int64) {
	t.Helper()
	members := w.members(t, "at-risk")
	dissatisfied := map[string]bool{}
	for _, id := range w.members(t, "dissatisfied") {
		dissatisfied[id] = true
	}
	var optedOut, suppressed int64
	for _, id := range members {
		switch {
		case optedOutInExport[id]:
			optedOut++
		case dissatisfied[id]:
			suppressed++
		}
	}
	eligible := int64(len(members)) - optedOut - suppressed
	overMax := max(eligible-maxPerRun, 0)
	a := r.status.Audience
	if a.Members != int64(len(members)) || a.OptedOut != optedOut || a.Suppressed != suppressed || a.Capped != 0 ||
		a.OverMax != overMax || a.Treatment+a.Holdout != eligible-overMax {
		t.Errorf("run %s: audience %+v; from the data: %d members, %d opted out, %d suppressed, %d over maxPerRun", r.run.Name, *a, len(members), optedOut, suppressed, overMax)
	}
	if optedOut == 0 || suppressed == 0 || overMax == 0 {
		t.Errorf("the data leaves nobody to exclude (%d opted out, %d suppressed, %d over maxPerRun): the check proves less than it should", optedOut, suppressed, overMax)
	}
}

// members lists a segment's members from the store.
func (w *world) members(t *testing.T, segment string) []string {
	t.Helper()
	var ids []string
	if err := w.store.MembershipScan(context.Background(), &store.MembershipScanParams{Segment: namespace + "/" + segment}, func(m *store.Member) error {
		ids = append(ids, m.CustomerID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ids
}

func (w *world) generate(t *testing.T, customers int, seed int, end time.Time, tx, cust string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(w.dir, "retention-operator"), "generate",
		"--customers", fmt.Sprint(customers), "--seed", fmt.Sprint(seed),
		"--start", end.AddDate(-2, 0, 0).Format(time.DateOnly), "--end", end.Format(time.DateOnly),
		"--transactions", tx, "--customers-file", cust)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generate: %v\n%s", err, out)
	}
}

// loadCRM fills the CRM database the PostgreSQL source reads.
func (w *world) loadCRM(t *testing.T, today time.Time) {
	t.Helper()
	tx, cust := filepath.Join(w.dir, "crm-tx.csv.gz"), filepath.Join(w.dir, "crm-customers.csv.gz")
	w.generate(t, crmCustomers, 7, today.AddDate(0, 0, -1), tx, cust)
	ctx := context.Background()
	conn := w.crm(t)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `
CREATE TABLE purchases (customer_id text NOT NULL, purchased_on date NOT NULL, amount float8 NOT NULL);
CREATE TABLE customers (customer_id text PRIMARY KEY, email text, phone text, opt_out boolean NOT NULL, complaints int NOT NULL);`); err != nil {
		t.Fatal(err)
	}
	var purchases, customers [][]any
	for _, f := range csvRows(t, gunzip(t, tx)) {
		d, err := time.Parse(time.DateOnly, f[1])
		if err != nil {
			t.Fatal(err)
		}
		var amount float64
		fmt.Sscan(f[2], &amount)
		purchases = append(purchases, []any{f[0], d, amount})
	}
	for _, f := range csvRows(t, gunzip(t, cust)) {
		var complaints int
		fmt.Sscan(f[6], &complaints)
		customers = append(customers, []any{f[0], f[2], f[5] == "true", complaints})
	}
	copyRows(t, conn, "purchases", []string{"customer_id", "purchased_on", "amount"}, purchases)
	copyRows(t, conn, "customers", []string{"customer_id", "email", "opt_out", "complaints"}, customers)
}

func (w *world) crm(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), w.crmDSN)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func copyRows(t *testing.T, conn *pgx.Conn, table string, cols []string, rows [][]any) {
	t.Helper()
	if _, err := conn.CopyFrom(context.Background(), pgx.Identifier{table}, cols, pgx.CopyFromRows(rows)); err != nil {
		t.Fatalf("copy into %s: %v", table, err)
	}
}

// newcomerID names the i-th newcomer; every tenth has opted out in the CRM
// and every seventh has complained (suppressed by crm-complainers).
func newcomerID(i int) string         { return fmt.Sprintf("n%04d", i) }
func newcomerOptedOut(i int) bool     { return i%10 == 0 }
func newcomerComplained(i int) bool   { return i%7 == 0 }
func newcomerIndex(id string) (i int) { fmt.Sscanf(id, "n%04d", &i); return i }

func (w *world) addNewcomers(t *testing.T, today time.Time) {
	t.Helper()
	var purchases, customers [][]any
	for i := 1; i <= newcomers; i++ {
		id := newcomerID(i)
		purchases = append(purchases, []any{id, today, 25.0})
		complaints := 0
		if newcomerComplained(i) {
			complaints = 1
		}
		customers = append(customers, []any{id, id + "@example.net", canaryPhone, newcomerOptedOut(i), complaints})
	}
	conn := w.crm(t)
	defer conn.Close(context.Background())
	copyRows(t, conn, "purchases", []string{"customer_id", "purchased_on", "amount"}, purchases)
	copyRows(t, conn, "customers", []string{"customer_id", "email", "phone", "opt_out", "complaints"}, customers)
}

// addPurchases records a second purchase today for the welcome run's
// customers that buy.
func (w *world) addPurchases(t *testing.T, today time.Time, treatment, holdout []string, buys func(string) bool) {
	t.Helper()
	var purchases [][]any
	for _, id := range append(slices.Clone(treatment), holdout...) {
		if buys(id) {
			purchases = append(purchases, []any{id, today, 40.0})
		}
	}
	conn := w.crm(t)
	defer conn.Close(context.Background())
	copyRows(t, conn, "purchases", []string{"customer_id", "purchased_on", "amount"}, purchases)
}

// requestScoring asks for a scoring now, as `kubectl annotate` would.
func (w *world) requestScoring(t *testing.T, source string) {
	t.Helper()
	var cs retentionv1.CustomerSource
	if err := w.k8s.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: source}, &cs); err != nil {
		t.Fatal(err)
	}
	w.run(t, nil, "annotate", "-n", namespace, "--overwrite", "customersource/"+source,
		retentionv1.ReconcileRequestedAnnotation+"="+time.Now().UTC().Format(time.RFC3339Nano))
	w.waitSourceScored(t, source, 0, cs.Status.SnapshotID)
}

// waitSourceScored waits until the source is Ready with a snapshot newer
// than after, of customers customers when that is not 0.
func (w *world) waitSourceScored(t *testing.T, name string, customers int64, after int64) *retentionv1.CustomerSource {
	t.Helper()
	var cs retentionv1.CustomerSource
	eventually(t, 3*time.Minute, "source "+name+" scored", func() error {
		if err := w.k8s.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: name}, &cs); err != nil {
			return err
		}
		ready := meta.FindStatusCondition(cs.Status.Conditions, retentionv1.ConditionReady)
		switch {
		case ready == nil || ready.Status != metav1.ConditionTrue:
			return fmt.Errorf("not Ready: %+v", ready)
		case cs.Status.SnapshotID <= after:
			return fmt.Errorf("snapshot %d, waiting for one after %d", cs.Status.SnapshotID, after)
		case customers != 0 && cs.Status.Customers != customers:
			return fmt.Errorf("%d customers, want %d", cs.Status.Customers, customers)
		}
		return nil
	})
	return &cs
}

// checkSegments waits until every segment is evaluated on its source's
// snapshot and checks that its status agrees with the store.
func (w *world) checkSegments(t *testing.T, snapshots map[string]int64) {
	t.Helper()
	ctx := context.Background()
	var list retentionv1.SegmentList
	eventually(t, 2*time.Minute, "segments evaluated", func() error {
		if err := w.k8s.List(ctx, &list, client.InNamespace(namespace)); err != nil {
			return err
		}
		if len(list.Items) != 11 {
			return fmt.Errorf("%d segments, want the 9 samples and 2 of the CRM", len(list.Items))
		}
		for _, s := range list.Items {
			if want := snapshots[s.Spec.SourceRef.Name]; s.Status.SnapshotID != want {
				return fmt.Errorf("segment %s at snapshot %d, want %d", s.Name, s.Status.SnapshotID, want)
			}
		}
		return nil
	})
	for _, s := range list.Items {
		n := len(w.members(t, s.Name))
		if s.Status.Size != int64(n) {
			t.Errorf("segment %s: status says %d members, the store holds %d", s.Name, s.Status.Size, n)
		}
		t.Logf("segment %-16s %6d members", s.Name, n)
	}
	for _, name := range []string{"at-risk", "dissatisfied", "crm-new", "crm-complainers"} {
		if i := slices.IndexFunc(list.Items, func(s retentionv1.Segment) bool { return s.Name == name }); i < 0 || list.Items[i].Status.Size == 0 {
			t.Errorf("segment %s is empty: the story needs its members", name)
		}
	}
}

func (w *world) patchSuspend(t *testing.T, campaign string, suspend bool) {
	t.Helper()
	w.run(t, nil, "patch", "-n", namespace, "campaign/"+campaign, "--type=merge", "-p", fmt.Sprintf(`{"spec":{"suspend":%t}}`, suspend))
}

// waitRunsCreated waits until the campaign has n runs.
func (w *world) waitRunsCreated(t *testing.T, campaign string, n int) {
	t.Helper()
	eventually(t, 3*time.Minute, fmt.Sprintf("%d runs of %s", n, campaign), func() error {
		if got := len(w.runsOf(t, campaign)); got < n {
			return fmt.Errorf("%d runs", got)
		}
		return nil
	})
}

// runsOf lists the campaign's runs, oldest first.
func (w *world) runsOf(t *testing.T, campaign string) []retentionv1.CampaignRun {
	t.Helper()
	var list retentionv1.CampaignRunList
	if err := w.k8s.List(context.Background(), &list, client.InNamespace(namespace)); err != nil {
		t.Fatal(err)
	}
	var runs []retentionv1.CampaignRun
	for _, r := range list.Items {
		if r.Spec.CampaignRef.Name == campaign {
			runs = append(runs, r)
		}
	}
	slices.SortFunc(runs, func(a, b retentionv1.CampaignRun) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	return runs
}

// waitRuns waits until the campaign has n runs that finished sending and
// returns them oldest first.
func (w *world) waitRuns(t *testing.T, campaign string, n int) []retentionv1.CampaignRun {
	t.Helper()
	var runs []retentionv1.CampaignRun
	eventually(t, 4*time.Minute, fmt.Sprintf("%d runs of %s sent", n, campaign), func() error {
		runs = w.runsOf(t, campaign)
		if len(runs) < n {
			return fmt.Errorf("%d runs", len(runs))
		}
		for _, r := range runs[:n] {
			if !pastSending(r) {
				return fmt.Errorf("run %s is %s", r.Name, r.Status.Phase)
			}
		}
		return nil
	})
	if len(runs) != n {
		t.Fatalf("%s has %d runs, want %d", campaign, len(runs), n)
	}
	return runs
}

// pastSending reports whether a run has finished sending.
func pastSending(r retentionv1.CampaignRun) bool {
	return r.Status.Phase == retentionv1.RunMeasuring || r.Status.Phase == retentionv1.RunSucceeded
}

// runResult is one run as the store, its status and the receiver saw it.
type runResult struct {
	run     retentionv1.CampaignRun
	status  retentionv1.CampaignRunStatus
	targets []*store.Target
	// sent are the customers the receiver got a message for, sorted.
	sent []string
	// keys are the idempotency keys the receiver got for this run.
	keys map[string]bool
}

func (r *runResult) group(g store.TargetGroup) []string {
	var ids []string
	for _, tg := range r.targets {
		if tg.Group == g {
			ids = append(ids, tg.CustomerID)
		}
	}
	return ids
}

func (r *runResult) reason(reason string) []string {
	var ids []string
	for _, tg := range r.targets {
		if tg.Group == store.GroupExcluded && tg.Reason == reason {
			ids = append(ids, tg.CustomerID)
		}
	}
	return ids
}

// delivered is what a receiver recorded for a run: customer id → the
// distinct idempotency keys of its messages.
type delivered func(r *runResult) map[string][]string

func webhookDelivery(w *world) delivered {
	return func(r *runResult) map[string][]string {
		out := map[string][]string{}
		for _, m := range w.webhook.Messages() {
			if m.Run != string(r.run.UID) || !m.SignatureValid {
				continue
			}
			if !slices.Contains(out[m.CustomerID], m.Key) {
				out[m.CustomerID] = append(out[m.CustomerID], m.Key)
			}
		}
		return out
	}
}

// smtpDelivery maps recipients back to customers by the address frozen in
// the run's targets.
func smtpDelivery(w *world) delivered {
	return func(r *runResult) map[string][]string {
		byAddress := map[string]string{}
		for _, tg := range r.targets {
			if tg.Data.Address != "" {
				byAddress[tg.Data.Address] = tg.CustomerID
			}
		}
		out := map[string][]string{}
		for _, m := range w.smtp.Messages() {
			id, ok := byAddress[strings.Trim(m.To, "<>")]
			if !ok {
				continue
			}
			if !slices.Contains(out[id], m.IdempotencyKey) {
				out[id] = append(out[id], m.IdempotencyKey)
			}
		}
		return out
	}
}

// checkDelivery checks one run that finished sending: every treatment
// target received exactly one message, nobody else received any, the
// status counts what the receiver got, and its Job completed through the
// Job controller.
func (w *world) checkDelivery(t *testing.T, run retentionv1.CampaignRun, got delivered) *runResult {
	t.Helper()
	ctx := context.Background()
	r := &runResult{run: run, status: run.Status, keys: map[string]bool{}}
	if err := w.store.TargetScan(ctx, &store.TargetScanParams{RunID: string(run.UID)}, func(tg *store.Target) error {
		c := *tg // the store reuses tg between calls
		r.targets = append(r.targets, &c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	messages := got(r)
	treatment := map[string]bool{}
	for _, id := range r.group(store.GroupTreatment) {
		treatment[id] = true
		switch keys := messages[id]; len(keys) {
		case 1:
			r.sent = append(r.sent, id)
			r.keys[keys[0]] = true
		case 0:
			t.Errorf("run %s: treatment customer got no message", run.Name)
		default:
			t.Errorf("run %s: a treatment customer got %d distinct messages", run.Name, len(keys))
		}
	}
	for id := range messages {
		if !treatment[id] {
			t.Errorf("run %s: a customer outside the treatment group got a message", run.Name)
		}
	}
	slices.Sort(r.sent)
	a, d := run.Status.Audience, run.Status.Delivery
	if a == nil || d == nil {
		t.Fatalf("run %s: no audience or delivery in status", run.Name)
	}
	if a.Treatment != int64(len(treatment)) || a.Holdout != int64(len(r.group(store.GroupHoldout))) {
		t.Errorf("run %s: status says %d treatment / %d holdout, the store holds %d / %d", run.Name, a.Treatment, a.Holdout, len(treatment), len(r.group(store.GroupHoldout)))
	}
	if d.Sent != int64(len(r.sent)) || d.Failed != 0 || d.Pending != 0 {
		t.Errorf("run %s: status says sent %d failed %d pending %d, the receiver got %d", run.Name, d.Sent, d.Failed, d.Pending, len(r.sent))
	}
	if len(r.sent) == 0 {
		t.Errorf("run %s sent nothing", run.Name)
	}
	// Caps, suppression and opt-outs apply to both groups alike (a held-out
	// customer's ghost contacts count against its own campaign's cap), so
	// the split stays the planned one run after run.
	if c := meta.FindStatusCondition(run.Status.Conditions, retentionv1.ConditionSampleRatioMismatch); c != nil && c.Status == metav1.ConditionTrue {
		t.Errorf("run %s: %s", run.Name, c.Message)
	}
	w.checkJob(t, run)
	t.Logf("run %s: %d members, treatment %d (received %d), holdout %d, opted out %d, suppressed %d, capped %d, over max %d",
		run.Name, a.Members, a.Treatment, len(r.sent), a.Holdout, a.OptedOut, a.Suppressed, a.Capped, a.OverMax)
	return r
}

// checkJob checks that the run's Job completed through the Job
// controller: every index succeeded, its pods ran and exited 0.
func (w *world) checkJob(t *testing.T, run retentionv1.CampaignRun) {
	t.Helper()
	ctx := context.Background()
	if run.Status.JobRef == nil {
		t.Errorf("run %s: no jobRef", run.Name)
		return
	}
	var job batchv1.Job
	if err := w.k8s.Get(ctx, client.ObjectKey{Namespace: run.Status.JobRef.Namespace, Name: run.Status.JobRef.Name}, &job); err != nil {
		t.Errorf("run %s: %v", run.Name, err)
		return
	}
	complete := slices.ContainsFunc(job.Status.Conditions, func(c batchv1.JobCondition) bool {
		return c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue
	})
	if !complete || job.Status.Succeeded != *job.Spec.Completions {
		t.Errorf("run %s: Job %s not complete (succeeded %d of %d, conditions %+v)", run.Name, job.Name, job.Status.Succeeded, *job.Spec.Completions, job.Status.Conditions)
	}
	var pods corev1.PodList
	if err := w.k8s.List(ctx, &pods, client.InNamespace(job.Namespace), client.MatchingLabels{batchv1.JobNameLabel: job.Name}); err != nil {
		t.Fatal(err)
	}
	succeeded := 0
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodSucceeded && p.Spec.NodeName != "" {
			succeeded++
		}
	}
	if succeeded < int(*job.Spec.Completions) {
		t.Errorf("run %s: %d pods of Job %s succeeded on a node, want %d", run.Name, succeeded, job.Name, *job.Spec.Completions)
	}
}

// optOut follows the one-click unsubscribe links (RFC 8058) of the given
// customers' messages and returns them.
func (w *world) optOut(t *testing.T, customers []string) []string {
	t.Helper()
	want := map[string]bool{}
	for _, id := range customers {
		want[id] = true
	}
	done := map[string]bool{}
	for _, m := range w.webhook.Messages() {
		if !want[m.CustomerID] || done[m.CustomerID] {
			continue
		}
		u, err := url.Parse(m.UnsubscribeURL)
		if err != nil || m.UnsubscribeURL == "" {
			t.Fatalf("message without an unsubscribe URL: %q", m.UnsubscribeURL)
		}
		// The link names the public host; the endpoint listens here.
		resp, err := http.Post("http://"+w.unsubscribeAddr+u.Path, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("unsubscribe answered %s", resp.Status)
		}
		done[m.CustomerID] = true
	}
	if len(done) != len(want) {
		t.Fatalf("opted out %d customers, want %d", len(done), len(want))
	}
	return customers
}

// checkWinBackAcrossRuns checks what only the runs together show: nobody
// got more than the frequency cap, an opted-out customer got nothing after
// opting out, a holdout or suppressed customer got nothing at all.
func (w *world) checkWinBackAcrossRuns(t *testing.T, runs []*runResult, optedOut []string) {
	t.Helper()
	keys := map[string]map[string]bool{} // customer → distinct idempotency keys
	for _, m := range w.webhook.Messages() {
		if !m.SignatureValid {
			continue
		}
		if keys[m.CustomerID] == nil {
			keys[m.CustomerID] = map[string]bool{}
		}
		keys[m.CustomerID][m.Key] = true
	}
	for _, k := range keys {
		if len(k) > 2 {
			t.Errorf("a customer got %d messages within the 24h window, above the cap of 2", len(k))
		}
	}
	for _, id := range optedOut {
		if len(keys[id]) != 1 {
			t.Errorf("an opted-out customer got %d messages, want only the one before opting out", len(keys[id]))
		}
	}
	for _, r := range runs {
		for _, id := range r.group(store.GroupHoldout) {
			if len(keys[id]) != 0 {
				t.Errorf("run %s: a holdout customer got %d messages", r.run.Name, len(keys[id]))
			}
		}
	}
	for _, id := range w.members(t, "dissatisfied") {
		if len(keys[id]) != 0 {
			t.Errorf("a suppressed (dissatisfied) customer got %d messages", len(keys[id]))
		}
	}
	if len(w.webhook.Messages()) == 0 || w.webhook.Stats().BadSignatures != 0 {
		t.Errorf("receiver: %+v", w.webhook.Stats())
	}
}

// checkWelcome checks the OnEnter run against the newcomers it was for.
func (w *world) checkWelcome(t *testing.T, r *runResult) {
	t.Helper()
	a := r.status.Audience
	if a.Members != newcomers {
		t.Errorf("welcome run: %d members, want the %d newcomers", a.Members, newcomers)
	}
	var optedOut, suppressed int
	for i := 1; i <= newcomers; i++ {
		switch {
		case newcomerOptedOut(i):
			optedOut++
		case newcomerComplained(i):
			suppressed++
		}
	}
	if a.OptedOut != int64(optedOut) || a.Suppressed != int64(suppressed) {
		t.Errorf("welcome run: opted out %d, suppressed %d; want %d and %d", a.OptedOut, a.Suppressed, optedOut, suppressed)
	}
	for _, m := range w.smtp.Messages() {
		id := strings.TrimSuffix(strings.Trim(m.To, "<>"), "@example.net")
		i := newcomerIndex(id)
		if i < 1 || i > newcomers || newcomerOptedOut(i) || newcomerComplained(i) {
			t.Errorf("an email went to %s, who is not an eligible newcomer", m.To)
		}
		if m.ListUnsubscribe == "" {
			t.Errorf("an email without a one-click unsubscribe link")
		}
	}
}

// checkMeasurement waits until the run has measured the purchases and
// checks its conversions against who was made to buy.
func (w *world) checkMeasurement(t *testing.T, r *runResult, buys func(string) bool) {
	t.Helper()
	count := func(ids []string) (n int64) {
		for _, id := range ids {
			if buys(id) {
				n++
			}
		}
		return n
	}
	treatment, holdout := r.group(store.GroupTreatment), r.group(store.GroupHoldout)
	wantT, wantH := count(treatment), count(holdout)
	var run retentionv1.CampaignRun
	eventually(t, 2*time.Minute, "run "+r.run.Name+" measured", func() error {
		if err := w.k8s.Get(context.Background(), client.ObjectKeyFromObject(&r.run), &run); err != nil {
			return err
		}
		m := run.Status.Measurement
		if m == nil || m.Treatment.Converted != wantT || m.Holdout.Converted != wantH {
			return fmt.Errorf("measurement %+v, want %d treatment and %d holdout conversions", m, wantT, wantH)
		}
		return nil
	})
	m := run.Status.Measurement
	if m.Treatment.Customers != int64(len(treatment)) || m.Holdout.Customers != int64(len(holdout)) {
		t.Errorf("run %s measured %d / %d customers, want %d / %d", r.run.Name, m.Treatment.Customers, m.Holdout.Customers, len(treatment), len(holdout))
	}
	if m.Holdout.Customers >= 10 && m.Uplift == nil {
		t.Errorf("run %s: no uplift with %d holdout customers", r.run.Name, m.Holdout.Customers)
	}
	r.status = run.Status
	t.Logf("run %s: treatment %d/%d, holdout %d/%d converted; %s", r.run.Name, wantT, len(treatment), wantH, len(holdout), m.Verdict)
}

// checkMetrics compares what Prometheus scraped with the receiver's and
// the runs' counts.
func (w *world) checkMetrics(t *testing.T, ctx context.Context, campaign string, runs []*runResult, received int) {
	t.Helper()
	var converted int64
	for _, r := range runs {
		converted += r.status.Measurement.Treatment.Converted + r.status.Measurement.Holdout.Converted
	}
	sel := fmt.Sprintf(`namespace=%q,campaign=%q`, namespace, campaign)
	for expr, want := range map[string]float64{
		`retention_campaign_messages_total{` + sel + `,outcome="sent"}`:   float64(received),
		`sum(retention_campaign_conversions_total{` + sel + `})`:          float64(converted),
		`retention_campaign_messages_total{` + sel + `,outcome="failed"}`: 0,
	} {
		eventually(t, time.Minute, expr, func() error {
			s, err := w.prom.Samples(ctx, expr)
			if err != nil {
				return err
			}
			if want == 0 && len(s) == 0 {
				return nil // a counter never incremented may be absent
			}
			if len(s) != 1 || s[0].Value != want {
				return fmt.Errorf("%v, want %v", s, want)
			}
			return nil
		})
	}
}

// checkShippedExpressions: every dashboard query and recording rule returns
// data, every alert evaluates and the metrics it reads have series.
func (w *world) checkShippedExpressions(t *testing.T, ctx context.Context, campaign string) {
	t.Helper()
	promcheck.CheckShipped(ctx, t, w.prom, w.root, map[string]string{"namespace": namespace, "campaign": campaign, "job": "retention-operator"})
}

func (w *world) webhookKeys() map[string]bool {
	keys := map[string]bool{}
	for _, m := range w.webhook.Messages() {
		if m.SignatureValid && m.Status/100 == 2 {
			keys[m.Key] = true
		}
	}
	return keys
}

// appendPurchases adds a purchase dated today for every customer of the
// history that buys.
func appendPurchases(t *testing.T, history []byte, today time.Time, buys func(string) bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.Write(history)
	seen := map[string]bool{}
	for _, f := range csvRows(t, history) {
		if id := f[0]; !seen[id] && buys(id) {
			seen[id] = true
			fmt.Fprintf(&buf, "%s,%s,%.2f\n", id, today.Format(time.DateOnly), 30.0)
		}
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(buf.Bytes())
	_ = zw.Close()
	return gz.Bytes()
}

// hashShare maps a customer id to [0, 1), the same on every call.
func hashShare(id string) float64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	return float64(h.Sum64()%10_000) / 10_000
}

func intersect(a, b []string) []string {
	in := map[string]bool{}
	for _, id := range a {
		in[id] = true
	}
	var out []string
	for _, id := range b {
		if in[id] {
			out = append(out, id)
		}
	}
	return out
}

func gunzip(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// csvRows splits a generated CSV (no quoting) into fields, header skipped.
func csvRows(t *testing.T, b []byte) [][]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	rows := make([][]string, 0, len(lines))
	for _, l := range lines[1:] {
		rows = append(rows, strings.Split(l, ","))
	}
	return rows
}
