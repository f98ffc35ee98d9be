package controllers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/clock"
	"github.com/retention-dev/retention-operator/internal/source"
	"github.com/retention-dev/retention-operator/internal/store"
)

// refusedDial returns the error of a real TCP connect to a loopback port
// nothing listens on: a *net.OpError wrapping ECONNREFUSED, what the
// PostgreSQL driver's pool returns (under pgx's ConnectError) while the
// database is down.
func refusedDial(t *testing.T) error {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("%s accepted a connection", addr)
	}
	return err
}

// adminShutdown is the error pgx returns for a query on a connection the
// server closed when it stopped.
var adminShutdown = &pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"}

// TestStoreOutageOutcome: markReady and requeueFor map a store outage,
// wherever in a reconcile it came from, to Ready=False StoreUnavailable
// and a retry after storeRetry; errors of the Kubernetes API and of the
// request stay what they were.
func TestStoreOutageOutcome(t *testing.T) {
	t.Parallel()
	refused := refusedDial(t)
	apiRefused := &url.Error{Op: "Get", URL: "https://127.0.0.1:6443/apis/retention.dev/v1alpha1", Err: refused}
	for _, tc := range []struct {
		name    string
		err     error
		q       requeue
		reason  string
		message string // a substring of the Ready message
		after   time.Duration
		returns bool // the error goes back to controller-runtime
	}{
		{name: "refused connect", err: fmt.Errorf("counting the run's targets: tally run r: %w", refused),
			reason: retentionv1.ReasonStoreUnavailable, message: "store unreachable: counting the run's targets", after: storeRetry},
		{name: "refused connect, short Retry", err: fmt.Errorf("reading the campaign's totals: %w", refused), q: requeue{Retry: 2 * time.Second},
			reason: retentionv1.ReasonStoreUnavailable, message: "connection refused", after: 2 * time.Second},
		{name: "refused connect, long Retry", err: fmt.Errorf("reading the campaign's totals: %w", refused), q: requeue{Retry: time.Hour},
			reason: retentionv1.ReasonStoreUnavailable, message: "connection refused", after: storeRetry},
		{name: "refused connect, Outage set", err: refused, q: requeue{Retry: time.Second, Outage: 30 * time.Second},
			reason: retentionv1.ReasonStoreUnavailable, message: "store unreachable", after: 30 * time.Second},
		{name: "server shut down mid-query", err: fmt.Errorf("recording the run's phase: %w", adminShutdown),
			reason: retentionv1.ReasonStoreUnavailable, message: "SQLSTATE 57P01", after: storeRetry},
		{name: "ErrUnavailable", err: fmt.Errorf("x: %w", store.ErrUnavailable),
			reason: retentionv1.ReasonStoreUnavailable, message: "store unreachable", after: storeRetry},
		{name: "store not opened (waiting StoreUnavailable)", err: waiting(retentionv1.ReasonStoreUnavailable, "store postgres://db unavailable: refused"),
			reason: retentionv1.ReasonStoreUnavailable, message: "store postgres://db unavailable", after: storeRetry},
		{name: "missing dependency", err: waiting(retentionv1.ReasonChannelNotReady, "channel ns/hook is not ready"),
			reason: retentionv1.ReasonChannelNotReady, message: "not ready", after: 5 * time.Minute},
		{name: "Kubernetes API refused", err: fmt.Errorf("reading campaign ns/c: %w", apiRefused),
			reason: retentionv1.ReasonProgressing, message: "6443", returns: true},
		{name: "not found in the store", err: fmt.Errorf("run r: %w", store.ErrNotFound),
			reason: retentionv1.ReasonProgressing, message: "not found", returns: true},
		{name: "unique violation", err: fmt.Errorf("insert: %w", &pgconn.PgError{Severity: "ERROR", Code: "23505", Message: "duplicate key"}),
			reason: retentionv1.ReasonProgressing, message: "23505", returns: true},
		{name: "cancelled", err: fmt.Errorf("tally: %w", context.Canceled),
			reason: retentionv1.ReasonProgressing, message: "canceled", returns: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := &retentionv1.CampaignRun{ObjectMeta: metav1.ObjectMeta{Generation: 3}}
			markReady(run, tc.err, retentionv1.ReasonSucceeded, "ok")
			c := meta.FindStatusCondition(run.Status.Conditions, retentionv1.ConditionReady)
			if c == nil || c.Status != metav1.ConditionFalse || c.Reason != tc.reason || !strings.Contains(c.Message, tc.message) {
				t.Errorf("Ready = %+v, want False %s with %q in the message", c, tc.reason, tc.message)
			}
			if meta.FindStatusCondition(run.Status.Conditions, retentionv1.ConditionStalled) != nil {
				t.Errorf("Stalled set for %v", tc.err)
			}
			res, err := requeueFor(tc.err, tc.q)
			switch {
			case tc.returns && !errors.Is(err, tc.err):
				t.Errorf("requeueFor = %+v, %v; want the error returned", res, err)
			case !tc.returns && (err != nil || res.RequeueAfter != tc.after):
				t.Errorf("requeueFor = %+v, %v; want RequeueAfter %s and no error", res, err, tc.after)
			}
		})
	}
}

// TestScoringFailureStoreOutage: a snapshot write cut off by the store's
// outage is StoreUnavailable; a source that cannot be reached (a network
// error too) stays ReadFailed.
func TestScoringFailureStoreOutage(t *testing.T) {
	t.Parallel()
	r := &CustomerSourceReconciler{}
	refused := refusedDial(t)
	for _, tc := range []struct {
		name, reason, message string
		err                   error
	}{
		{"snapshot COPY cut", retentionv1.ReasonStoreUnavailable, "store unreachable: writing the snapshot: snapshot 7 of ns/shop: copy: FATAL",
			fmt.Errorf("scoring: emit: %w", &snapshotWriteError{fmt.Errorf("snapshot 7 of ns/shop: copy: %w", adminShutdown)})},
		{"snapshot write refused", retentionv1.ReasonStoreUnavailable, "connection refused",
			fmt.Errorf("scoring: emit: %w", &snapshotWriteError{fmt.Errorf("snapshot 7 of ns/shop: %w", refused)})},
		{"snapshot write invalid", retentionv1.ReasonReadFailed, "reading the source",
			fmt.Errorf("scoring: emit: %w", &snapshotWriteError{fmt.Errorf("snapshot 7: bad record: %w", store.ErrInvalid)})},
		{"source unreachable", retentionv1.ReasonReadFailed, "reading the source",
			fmt.Errorf("scoring: read: %w", refused)},
		{"source database shutting down", retentionv1.ReasonReadFailed, "reading the source",
			fmt.Errorf("scoring: read: %w", adminShutdown)},
		{"missing column", retentionv1.ReasonReadFailed, "amount",
			fmt.Errorf("scoring: %w", &source.MissingColumnError{Column: "amount"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := &retentionv1.CustomerSource{}
			err := r.scoringFailure(cs, tc.err)
			var w *waitingError
			if !errors.As(err, &w) || w.Reason != tc.reason || !strings.Contains(w.Message, tc.message) {
				t.Errorf("scoringFailure = %#v, want waiting %s with %q", err, tc.reason, tc.message)
			}
		})
	}
}

// downStore is a store whose database is down: the calls a campaign's
// reconcile makes fail as the PostgreSQL driver's do.
type downStore struct {
	store.Store
	err error
}

func (s downStore) CampaignTally(context.Context, string) (*store.RunTally, error) {
	return nil, fmt.Errorf("campaign tally: %w", s.err)
}

func (s downStore) CampaignStrata(context.Context, string) ([]store.RunStratum, error) {
	return nil, fmt.Errorf("campaign strata: %w", s.err)
}

// TestCampaignStoreDown: a campaign whose store query fails because the
// database is down says Ready=False StoreUnavailable and comes back after
// storeRetry without returning an error (no doubling backoff); with the
// store back it is Ready again.
func TestCampaignStoreDown(t *testing.T) {
	ns := newNamespace(t)
	c := manualCampaign(t, ns, retentionv1.CampaignSpec{Schedule: "0 9 * * *"})
	ctx := context.Background()
	reconcile := func(stores *StoreProvider) ctrl.Result {
		t.Helper()
		r := &CampaignReconciler{Client: k8sClient, Recorder: &recorder{}, Clock: clock.NewFake(time.Now()), Stores: stores}
		res, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(c)})
		if err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(c), c); err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := reconcile(ForStore(downStore{err: refusedDial(t)}))
	ready := meta.FindStatusCondition(c.Status.Conditions, retentionv1.ConditionReady)
	if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != retentionv1.ReasonStoreUnavailable ||
		!strings.Contains(ready.Message, "store unreachable: reading the campaign's totals") {
		t.Fatalf("Ready with the store down = %+v", ready)
	}
	if res.RequeueAfter != storeRetry {
		t.Errorf("requeue with the store down = %+v, want after %s", res, storeRetry)
	}
	reconcile(suiteStores)
	if ready := meta.FindStatusCondition(c.Status.Conditions, retentionv1.ConditionReady); ready == nil || ready.Status != metav1.ConditionTrue {
		t.Errorf("Ready with the store back = %+v", ready)
	}
}
