package e2e

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/store"
)

const (
	// storeOutage is how long PostgreSQL stays down in TestStoreStopped: a
	// minute, long enough that every run's Job meets it (its pods fail
	// and are recreated after the Job controller's 10 s and 20 s
	// backoffs), the source's failed scoring is retried while it lasts
	// (30 s backoff), and controller-runtime's per-object backoff, which
	// doubles from 5 ms, reaches several seconds: a spin would show.
	storeOutage = 60 * time.Second
	// apiOutage is how long kube-apiserver stays down in
	// TestAPIServerRestarted: longer than a watch reconnect's first
	// backoffs and client-go's request retries, shorter than anything that
	// would time out on purpose (a Job's deadline, the runners' claim TTL
	// matters only to the store).
	apiOutage = 15 * time.Second
	// crawlRuns is how many runs of the crawl campaign the restart tests
	// send at once.
	crawlRuns = 4
	// crawlShards is the crawl campaign's parallelism: its Jobs' indexes.
	crawlShards = 3
	// backoffLimitPerIndex is what the operator sets on its Jobs: how
	// often a shard's pod is replaced before the index fails.
	backoffLimitPerIndex = 3
)

// TestStoreStopped: PostgreSQL is stopped for storeOutage while 4 runs
// send through a crawling channel and a rescoring of the shop writes its
// snapshot, then started again on the same port and data. While it is
// down, the runs, their campaign and the source say so in their Ready
// condition (reason StoreUnavailable, whichever store call failed), the
// operator stays up and backs off (its reconciles, API writes and the
// runner pods made are bounded), and the source keeps its last complete
// snapshot. Once it is back every run finishes sending with nothing lost
// or sent twice (beyond the idempotency key), its Job completed, no Job
// or Secret orphaned, the conditions recover, and the source's snapshot
// is a complete one, the interrupted snapshot never visible.
func TestStoreStopped(t *testing.T) {
	start := time.Now()
	// A runner cut off by the outage leaves its last batch claimed (sent,
	// not recorded); the next pod of its shard takes it over after the
	// claim TTL: 10 s here, 5 min by default.
	w := startFaultsWorld(t, "--claim-ttl=10s")
	ctx := context.Background()
	pid, starts := w.op.cmd.Process.Pid, w.operatorStarts

	w.createRuns(t, "crawl", crawlRuns)
	w.waitSending(t, "crawl", crawlRuns)
	shopBefore := w.source(t, "shop")
	w.run(t, nil, "annotate", "-n", namespace, "--overwrite", "customersource/shop",
		retentionv1.ReconcileRequestedAnnotation+"="+time.Now().UTC().Format(time.RFC3339Nano))
	inFlight, copied := w.snapshotInFlight(t)

	before := w.counters(t)
	midSend := w.stillSending(t, "crawl")
	if err := w.pg.Down(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	t.Logf("PostgreSQL down at %s: snapshot %d in flight (%d rows copied when seen), %d of %d runs mid-send (%s)",
		down.Sub(start).Round(time.Second), inFlight, copied, midSend, crawlRuns, w.phases(t, "crawl"))
	if midSend == 0 {
		t.Errorf("no run was sending when PostgreSQL stopped: the test proves less than it should")
	}

	// While it is down: conditions, liveness, and the source's snapshot.
	seen := conditionsSeen{}
	for time.Since(down) < storeOutage {
		time.Sleep(2 * time.Second)
		w.checkOperatorUp(t, pid, starts)
		seen.record(w.readyConditions(t, "crawl"))
		for _, r := range w.runsOf(t, "crawl") {
			if r.Status.Phase.Finished() {
				t.Fatalf("run %s ended %s while the store was down", r.Name, r.Status.Phase)
			}
		}
		if id := w.source(t, "shop").Status.SnapshotID; id != shopBefore.Status.SnapshotID {
			t.Fatalf("while the store is down the source's status moved from snapshot %d to %d", shopBefore.Status.SnapshotID, id)
		}
	}
	during := w.counters(t).minus(before)
	pods := w.podsCreatedSince(t, down)
	if err := w.pg.Up(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	t.Logf("PostgreSQL up again after %s", up.Sub(down).Round(time.Second))
	seen.log(t)
	t.Logf("during the outage: %s; %d runner pods created", during, pods)

	// What the objects said: each run, the campaign and the source said
	// StoreUnavailable, and no object blamed the store's connection under
	// another reason (Progressing with the driver's error, or ReadFailed for
	// a snapshot write cut off).
	for _, key := range append(runKeys("crawl", crawlRuns), "Campaign/crawl", "CustomerSource/shop") {
		if !slices.Contains(seen.reasons(key), retentionv1.ReasonStoreUnavailable) {
			t.Errorf("%s: no Ready=False %s during the outage; saw %v", key, retentionv1.ReasonStoreUnavailable, seen[key])
		}
	}
	for key, conds := range seen.misblamed(w.storeMentioned()) {
		t.Errorf("%s blamed the store's outage under another reason than %s: %v", key, retentionv1.ReasonStoreUnavailable, conds)
	}
	// Backing off, not spinning. The operator tries an object whose store
	// is unreachable again after 10 s (controllers.storeRetry; the source
	// on its failure backoff, from 30 s): 6 retries in a minute, plus one
	// per event (a pod of its Job failing: a few per shard). Other errors
	// go back to controller-runtime, which retries after 5 ms, doubling:
	// about 14 retries in a minute. A reconciler that requeued at once
	// would be held only by the queue's 10/s bucket, about 600 a minute
	// per controller, and one that retried every second would reconcile
	// each run 60 times. Status is written on change only, with an Event:
	// a write or two for each distinct error message (the first few
	// differ: a pooled connection cut, then refused), about 10 per object
	// the outage reaches (the runs, their campaign, the source).
	if maxReconciles := float64(crawlRuns * 40); during.reconciles["campaignrun"] > maxReconciles {
		t.Errorf("%v campaignrun reconciles during the %s outage, want at most %v (%d runs backing off)", during.reconciles["campaignrun"], storeOutage, maxReconciles, crawlRuns)
	}
	if total, maxTotal := during.allReconciles(), float64(crawlRuns*40+60); total > maxTotal {
		t.Errorf("%v reconciles in all during the %s outage, want at most %v", total, storeOutage, maxTotal)
	}
	if maxWrites := float64(10 * (crawlRuns + 2)); during.writes > maxWrites {
		t.Errorf("%v API writes during the %s outage, want at most %v", during.writes, storeOutage, maxWrites)
	}
	// The runners exit when the store is unreachable and the Job
	// controller replaces them after its backoff: no more pods than the
	// Jobs' backoff limits allow.
	if maxPods := crawlRuns * crawlShards * (backoffLimitPerIndex + 1); pods > maxPods {
		t.Errorf("%d runner pods created during the outage, want at most %d", pods, maxPods)
	}

	// Everything resumes: the test's own store connections died with the
	// server too.
	w.reopenStore(t)
	list := w.waitRuns(t, "crawl", crawlRuns)
	t.Logf("every run finished sending %s after PostgreSQL came back", time.Since(up).Round(time.Second))
	uids := map[string]retentionv1.CampaignRun{}
	for _, run := range list {
		w.checkDelivery(t, run, webhookDelivery(w))
		uids[string(run.UID)] = run
	}
	w.checkNoOrphans(t, uids)
	t.Logf("follow-up Jobs (a shard's index failed its backoff limit during the outage): %d", followUps(list))
	w.checkRecovered(t, "crawl")
	shop := w.waitSourceScored(t, "shop", shopCustomers, shopBefore.Status.SnapshotID)
	w.checkSnapshot(t, ctx, shop, inFlight)
	w.checkOperatorUp(t, pid, starts)
	w.checkNoPanic(t)
	st := w.webhook.Stats()
	t.Logf("receiver: %d requests, %d unique: %d resent with the same idempotency key; test took %s",
		st.Received, st.Unique, st.Received-st.Unique, time.Since(start).Round(time.Second))
}

// TestAPIServerRestarted: kube-apiserver is stopped for apiOutage while 4
// runs send through a crawling channel, then started again on the same
// port, etcd and certificates; the controller manager, scheduler, kwok
// nodes and the harness's pod runner stay up and reconnect. The runners,
// which need only the store, keep sending meanwhile. The operator rides it
// out in the same process (it is never restarted; its requests failed
// meanwhile), its watches resume (a scoring requested afterwards is done)
// and every run finishes with nothing lost or sent twice beyond the
// idempotency key, its Job completed, no Job or Secret orphaned.
func TestAPIServerRestarted(t *testing.T) {
	start := time.Now()
	w := startFaultsWorld(t)
	pid, starts := w.op.cmd.Process.Pid, w.operatorStarts

	w.createRuns(t, "crawl", crawlRuns)
	w.waitSending(t, "crawl", crawlRuns)
	midSend := w.stillSending(t, "crawl")
	if midSend == 0 {
		t.Errorf("no run was sending when the API server stopped: the test proves less than it should")
	}
	receivedBefore, failedBefore := len(w.webhook.Messages()), w.failedRequests(t)
	stopping := time.Now()
	if err := w.cluster.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	t.Logf("kube-apiserver stopped at %s (in %s), %d of %d runs mid-send",
		down.Sub(start).Round(time.Second), down.Sub(stopping).Round(100*time.Millisecond), midSend, crawlRuns)
	for time.Since(down) < apiOutage {
		time.Sleep(time.Second)
		w.checkOperatorUp(t, pid, starts)
	}
	// The runners talk to the store and the receiver, not the API server.
	receivedDuring := len(w.webhook.Messages()) - receivedBefore
	// The operator tried and failed to reach it: the outage was felt.
	failedDuring := w.failedRequests(t) - failedBefore
	starting := time.Now()
	if err := w.cluster.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	t.Logf("kube-apiserver down for %s, answering again %s after its start; while it was down %d messages were received and %v operator requests failed",
		starting.Sub(down).Round(100*time.Millisecond), up.Sub(starting).Round(100*time.Millisecond), receivedDuring, failedDuring)
	if receivedDuring == 0 {
		t.Errorf("no message was sent while the API server was down: the runners should not need it")
	}
	if failedDuring == 0 {
		t.Errorf("none of the operator's requests failed while the API server was down: the outage went unnoticed, the test proves less than it should")
	}
	// Its watches are back: a scoring requested now (an annotation, which
	// only the CustomerSource watch brings to the operator; its resync is
	// hours away) is done.
	requested := time.Now()
	w.requestScoring(t, "crm")
	t.Logf("a scoring requested after the restart was done in %s", time.Since(requested).Round(100*time.Millisecond))

	list := w.waitRuns(t, "crawl", crawlRuns)
	t.Logf("every run finished sending %s after kube-apiserver came back", time.Since(up).Round(time.Second))
	uids := map[string]retentionv1.CampaignRun{}
	for _, run := range list {
		w.checkDelivery(t, run, webhookDelivery(w))
		uids[string(run.UID)] = run
	}
	w.checkNoOrphans(t, uids)
	w.checkOperatorUp(t, pid, starts)
	w.checkNoPanic(t)
	if err := w.cluster.Alive(); err != nil {
		t.Errorf("a cluster component did not ride out the API server's restart: %v", err)
	}
	st := w.webhook.Stats()
	t.Logf("receiver: %d requests, %d unique: %d resent with the same idempotency key; test took %s",
		st.Received, st.Unique, st.Received-st.Unique, time.Since(start).Round(time.Second))
}

// followUps counts the runs' follow-up Jobs.
func followUps(runs []retentionv1.CampaignRun) (n int32) {
	for _, r := range runs {
		n += r.Status.FollowUpJobs
	}
	return n
}

// failedRequests sums the operator's API requests that got no answer
// (client-go's rest_client_requests_total with code "<error>": refused,
// reset, timed out).
func (w *world) failedRequests(t *testing.T) float64 {
	t.Helper()
	var total float64
	for _, l := range strings.Split(httpGet(t, "http://"+w.metricsAddr+"/metrics"), "\n") {
		if strings.HasPrefix(l, "rest_client_requests_total{") && strings.Contains(l, `code="<error>"`) {
			var v float64
			if _, err := fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &v); err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			total += v
		}
	}
	return total
}

// runKeys are the "CampaignRun/name" keys of createRuns' n runs.
func runKeys(campaign string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("CampaignRun/%s-%02d", campaign, i+1)
	}
	return keys
}

// waitSending waits until each of the campaign's n runs is Sending and the
// receiver has a message of it: its Job's pods are at work.
func (w *world) waitSending(t *testing.T, campaign string, n int) {
	t.Helper()
	eventually(t, 3*time.Minute, fmt.Sprintf("%d runs of %s sending", n, campaign), func() error {
		runs := w.runsOf(t, campaign)
		if len(runs) < n {
			return fmt.Errorf("%d runs", len(runs))
		}
		got := w.receivedByRun()
		for _, r := range runs {
			if r.Status.Phase != retentionv1.RunSending || got[string(r.UID)] == 0 {
				return fmt.Errorf("run %s is %s with %d messages received", r.Name, r.Status.Phase, got[string(r.UID)])
			}
		}
		return nil
	})
}

// receivedByRun counts the distinct customers the receiver got a valid
// message for, by run uid.
func (w *world) receivedByRun() map[string]int {
	seen := map[string]map[string]bool{}
	for _, m := range w.webhook.Messages() {
		if !m.SignatureValid {
			continue
		}
		if seen[m.Run] == nil {
			seen[m.Run] = map[string]bool{}
		}
		seen[m.Run][m.CustomerID] = true
	}
	n := map[string]int{}
	for run, ids := range seen {
		n[run] = len(ids)
	}
	return n
}

// stillSending counts the campaign's runs whose treatment group has not
// all been received yet.
func (w *world) stillSending(t *testing.T, campaign string) int {
	t.Helper()
	got := w.receivedByRun()
	n := 0
	for _, r := range w.runsOf(t, campaign) {
		if a := r.Status.Audience; a != nil && int64(got[string(r.UID)]) < a.Treatment {
			n++
		}
	}
	return n
}

func (w *world) source(t *testing.T, name string) *retentionv1.CustomerSource {
	t.Helper()
	var cs retentionv1.CustomerSource
	if err := w.k8s.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: name}, &cs); err != nil {
		t.Fatal(err)
	}
	return &cs
}

// snapshotCopy matches the COPY a snapshot writer streams its rows with.
var snapshotCopy = regexp.MustCompile(`COPY "snap_([0-9]+)"`)

// snapshotInFlight waits until a snapshot's COPY is open on the store (its
// transaction has made the snapshot's row and table, uncommitted) and
// returns the snapshot's id and how many rows it had taken. It looks every
// 100 ms: a scoring of the shop holds its COPY open for seconds (reading,
// fitting, then streaming the rows).
func (w *world) snapshotInFlight(t *testing.T) (id, rows int64) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, w.storeDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		var query string
		err := conn.QueryRow(ctx, `SELECT a.query, coalesce(p.tuples_processed, 0)
			FROM pg_stat_activity a LEFT JOIN pg_stat_progress_copy p USING (pid)
			WHERE a.query LIKE 'COPY "snap_%' AND a.state <> 'idle' LIMIT 1`).Scan(&query, &rows)
		switch {
		case err == nil:
			m := snapshotCopy.FindStringSubmatch(query)
			if m == nil {
				t.Fatalf("unexpected query in pg_stat_activity: %q", query)
			}
			id, err = strconv.ParseInt(m[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return id, rows
		case !errors.Is(err, pgx.ErrNoRows):
			t.Fatalf("reading pg_stat_activity: %v", err)
		case time.Now().After(deadline):
			t.Fatal("no COPY into a snapshot table within 2 minutes of the scoring request")
		}
	}
}

// reopenStore replaces the test's store handle, whose connections died
// with the server.
func (w *world) reopenStore(t *testing.T) {
	t.Helper()
	_ = w.store.Close()
	var err error
	if w.store, err = store.Open(context.Background(), w.storeDSN, store.Options{NoMigrate: true}); err != nil {
		t.Fatalf("reopening the store: %v", err)
	}
}

// checkSnapshot: the source's current snapshot in the store is the one its
// status names, complete (every customer of the source, as many as status
// says), and the snapshot whose write the outage cut off left nothing
// visible: no snapshot row, no table.
func (w *world) checkSnapshot(t *testing.T, ctx context.Context, cs *retentionv1.CustomerSource, cut int64) {
	t.Helper()
	key := cs.Namespace + "/" + cs.Name
	cur, err := w.store.SnapshotGetCurrent(ctx, key)
	if err != nil {
		t.Fatalf("current snapshot of %s: %v", key, err)
	}
	var scanned int64
	if err := w.store.SnapshotScan(ctx, &store.SnapshotScanParams{SnapshotID: cur.ID}, func(*customer.Scored) error {
		scanned++
		return nil
	}); err != nil {
		t.Fatalf("scanning snapshot %d: %v", cur.ID, err)
	}
	if cur.ID != cs.Status.SnapshotID || cur.Customers != cs.Status.Customers || scanned != cs.Status.Customers || scanned != shopCustomers {
		t.Errorf("source %s: status names snapshot %d of %d customers; the store's current is %d, of %d customers, %d scanned; the source has %d",
			key, cs.Status.SnapshotID, cs.Status.Customers, cur.ID, cur.Customers, scanned, shopCustomers)
	}
	if cs.Status.SnapshotID == cut {
		t.Errorf("source %s: status names snapshot %d, the one the outage cut off", key, cut)
	}
	if _, err := w.store.SnapshotGetByID(ctx, cut); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the snapshot cut off by the outage (%d): SnapshotGetByID says %v, want not found", cut, err)
	}
	list, err := w.store.SnapshotList(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if s.ID == cut {
			t.Errorf("the snapshot cut off by the outage (%d) is listed: %+v", cut, s)
		}
	}
	conn, err := pgx.Connect(ctx, w.storeDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var table *string
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1)::text", fmt.Sprintf("snap_%d", cut)).Scan(&table); err != nil {
		t.Fatal(err)
	} else if table != nil {
		t.Errorf("the table of the snapshot cut off by the outage (%s) exists", *table)
	}
	t.Logf("source %s: snapshot %d current, %d customers; snapshot %d, cut off, left nothing", key, cur.ID, scanned, cut)
}

// readyConditions reads the Ready condition of the campaign's runs and of
// the objects they depend on, by "Kind/name".
func (w *world) readyConditions(t *testing.T, campaign string) map[string]*metav1.Condition {
	t.Helper()
	ctx := context.Background()
	out := map[string]*metav1.Condition{}
	for _, r := range w.runsOf(t, campaign) {
		out["CampaignRun/"+r.Name] = meta.FindStatusCondition(r.Status.Conditions, retentionv1.ConditionReady)
	}
	objs := map[string]interface {
		client.Object
		GetConditions() *[]metav1.Condition
	}{
		"CustomerSource/shop":   &retentionv1.CustomerSource{},
		"Segment/recent":        &retentionv1.Segment{},
		"Campaign/" + campaign:  &retentionv1.Campaign{},
		"Channel/crawl-webhook": &retentionv1.Channel{},
	}
	for key, obj := range objs {
		_, name, _ := strings.Cut(key, "/")
		if err := w.k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj); err != nil {
			t.Fatalf("reading %s: %v", key, err)
		}
		out[key] = meta.FindStatusCondition(*obj.GetConditions(), retentionv1.ConditionReady)
	}
	return out
}

// conditionsSeen gathers the distinct Ready conditions (status, reason and
// message) each object showed, by "Kind/name".
type conditionsSeen map[string][]string

func (s conditionsSeen) record(now map[string]*metav1.Condition) {
	for key, c := range now {
		v := "none"
		if c != nil {
			v = fmt.Sprintf("%s %s: %s", c.Status, c.Reason, c.Message)
		}
		if !slices.Contains(s[key], v) {
			s[key] = append(s[key], v)
		}
	}
}

// reasons lists the reasons of the object's Ready=False conditions.
func (s conditionsSeen) reasons(key string) []string {
	var out []string
	for _, v := range s[key] {
		status, reason, _ := parseSeen(v)
		if status == string(metav1.ConditionFalse) && !slices.Contains(out, reason) {
			out = append(out, reason)
		}
	}
	return out
}

// misblamed lists, by object, the Ready=False conditions whose message
// shows the store's connection failing (mentions says so) under a reason
// other than StoreUnavailable.
func (s conditionsSeen) misblamed(mentions func(message string) bool) map[string][]string {
	out := map[string][]string{}
	for key, vs := range s {
		for _, v := range vs {
			status, reason, message := parseSeen(v)
			if status == string(metav1.ConditionFalse) && reason != retentionv1.ReasonStoreUnavailable && mentions(message) {
				out[key] = append(out[key], v)
			}
		}
	}
	return out
}

// parseSeen splits a recorded condition, "<status> <reason>: <message>".
func parseSeen(v string) (status, reason, message string) {
	status, rest, _ := strings.Cut(v, " ")
	reason, message, _ = strings.Cut(rest, ": ")
	return status, reason, message
}

// storeMentioned says whether a condition's message shows the store's
// connection failing: the store's address (a refused connect), or the
// server's shutdown (SQLSTATE 57P01, a connection the server terminated).
// The operator gives such an error reason StoreUnavailable wherever it
// comes from (store.IsUnavailable), not Progressing with the driver's
// error, nor ReadFailed for a snapshot write cut off mid-COPY.
func (w *world) storeMentioned() func(message string) bool {
	addr := fmt.Sprintf("127.0.0.1:%d", w.pg.Port)
	return func(message string) bool {
		return strings.Contains(message, addr) || strings.Contains(message, "SQLSTATE 57P01")
	}
}

func (s conditionsSeen) log(t *testing.T) {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %s:", k)
		for _, v := range s[k] {
			fmt.Fprintf(&b, "\n    Ready=%s", v)
		}
	}
	t.Logf("Ready conditions seen during the outage:%s", b.String())
}

// checkRecovered: after the outage every run is Measuring or Succeeded
// (no Ready condition blames the store or an error any more), and the
// source, segment, channel and campaign are Ready again.
func (w *world) checkRecovered(t *testing.T, campaign string) {
	t.Helper()
	eventually(t, 3*time.Minute, "conditions recovered", func() error {
		for key, c := range w.readyConditions(t, campaign) {
			kind, _, _ := strings.Cut(key, "/")
			switch {
			case c == nil:
				return fmt.Errorf("%s has no Ready condition", key)
			case kind == "CampaignRun":
				// Measuring (the conversion window is open) or Succeeded.
				if c.Reason != retentionv1.ReasonMeasuring && c.Reason != retentionv1.ReasonSucceeded {
					return fmt.Errorf("%s: Ready=%s %s: %s", key, c.Status, c.Reason, c.Message)
				}
			case c.Status != metav1.ConditionTrue:
				return fmt.Errorf("%s: Ready=%s %s: %s", key, c.Status, c.Reason, c.Message)
			}
		}
		return nil
	})
}

// operatorCounters are cumulative counters read from the operator's
// /metrics.
type operatorCounters struct {
	// reconciles by controller (controller_runtime_reconcile_total).
	reconciles map[string]float64
	// writes are API write requests (rest_client_requests_total).
	writes float64
}

func (w *world) counters(t *testing.T) operatorCounters {
	t.Helper()
	c := operatorCounters{reconciles: map[string]float64{}, writes: w.writeRequests(t)}
	label := regexp.MustCompile(`controller="([^"]+)"`)
	for _, l := range strings.Split(httpGet(t, "http://"+w.metricsAddr+"/metrics"), "\n") {
		if !strings.HasPrefix(l, "controller_runtime_reconcile_total{") {
			continue
		}
		m := label.FindStringSubmatch(l)
		var v float64
		if _, err := fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &v); err != nil || m == nil {
			t.Fatalf("%q: %v", l, err)
		}
		c.reconciles[m[1]] += v
	}
	if len(c.reconciles) == 0 {
		t.Fatal("no controller_runtime_reconcile_total in the operator's metrics: the check reads the wrong metric")
	}
	return c
}

func (c operatorCounters) minus(o operatorCounters) operatorCounters {
	d := operatorCounters{reconciles: map[string]float64{}, writes: c.writes - o.writes}
	for k, v := range c.reconciles {
		d.reconciles[k] = v - o.reconciles[k]
	}
	return d
}

func (c operatorCounters) allReconciles() float64 {
	var n float64
	for _, v := range c.reconciles {
		n += v
	}
	return n
}

func (c operatorCounters) String() string {
	keys := make([]string, 0, len(c.reconciles))
	for k := range c.reconciles {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %v", k, c.reconciles[k]))
	}
	return fmt.Sprintf("%v reconciles (%s), %v API writes", c.allReconciles(), strings.Join(parts, ", "), c.writes)
}

// podsCreatedSince counts the runner pods created at or after since.
func (w *world) podsCreatedSince(t *testing.T, since time.Time) int {
	t.Helper()
	var pods corev1.PodList
	if err := w.k8s.List(context.Background(), &pods, client.InNamespace(jobsNamespace)); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range pods.Items {
		// Creation timestamps have whole seconds.
		if !p.CreationTimestamp.Time.Before(since.Truncate(time.Second)) {
			n++
		}
	}
	return n
}

// checkOperatorUp fails the test unless the operator is the process it
// was (pid) and none was started since (starts): the harness would start
// one again only while starting it, but an exit must show.
func (w *world) checkOperatorUp(t *testing.T, pid, starts int) {
	t.Helper()
	op := w.op
	if op == nil {
		t.Fatal("the operator is not running")
	}
	select {
	case <-op.exited:
		t.Fatalf("the operator exited (%v):\n%s", op.cmd.ProcessState, tailFile(w.operatorLog, 30))
	default:
	}
	if op.cmd.Process.Pid != pid || w.operatorStarts != starts {
		t.Fatalf("the operator was restarted: pid %d, was %d; %d starts, was %d", op.cmd.Process.Pid, pid, w.operatorStarts, starts)
	}
	// Signal 0: the process exists (and is not a zombie the harness missed).
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the operator's process %d: %v", pid, err)
	}
}

// goPanic matches the start of a Go panic's report.
var goPanic = regexp.MustCompile(`panic: |goroutine [0-9]+ \[running\]`)

// checkNoPanic: neither the operator nor a runner panicked.
func (w *world) checkNoPanic(t *testing.T) {
	t.Helper()
	for _, f := range []string{w.operatorLog, filepath.Join(w.dir, "pods.log")} {
		if m := goPanic.FindString(readFile(t, f)); m != "" {
			t.Errorf("%s reports a panic (%q)", f, m)
		}
	}
}
