package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/pgtest"
	"github.com/retention-dev/retention-operator/internal/store/storetest"
)

// checkErasure: a customer the story messaged asks to be forgotten (issue
// #20). A CustomerErasure made as docs/privacy.md shows (a Secret of type
// retention.dev/customer-ids, then the erasure) completes and empties the
// Secret; a rescoring of the unchanged source leaves the customer out; no
// row of any table of the PostgreSQL store holds the id; the runs'
// measured figures do not change. checkNoPersonalData, after it, covers
// the operator's log, Events and statuses written meanwhile.
func (w *world) checkErasure(t *testing.T, id string, runs []*runResult) {
	t.Helper()
	ctx := context.Background()
	measured := func() []retentionv1.Measurement {
		t.Helper()
		var out []retentionv1.Measurement
		for _, r := range runs {
			var cur retentionv1.CampaignRun
			if err := w.k8s.Get(ctx, client.ObjectKeyFromObject(&r.run), &cur); err != nil {
				t.Fatal(err)
			}
			if cur.Status.Measurement == nil {
				t.Fatalf("run %s has no measurement", cur.Name)
			}
			out = append(out, *cur.Status.Measurement)
		}
		return out
	}
	before := measured()
	w.run(t, strings.NewReader(fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: forget-one}
type: %s
stringData:
  ids: %q
---
apiVersion: retention.dev/v1alpha1
kind: CustomerErasure
metadata: {name: forget-one}
spec:
  sourceRef: {name: shop}
  customerIDsSecretRef: {name: forget-one}
`, retentionv1.CustomerIDsSecretType, id+"\n")), "create", "-n", namespace, "-f", "-")
	w.run(t, nil, "wait", "-n", namespace, "--for=condition=Ready", "--timeout=120s", "customererasure/forget-one")
	var ce retentionv1.CustomerErasure
	if err := w.k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "forget-one"}, &ce); err != nil {
		t.Fatal(err)
	}
	if n := ce.Status.Erased; ce.Status.Phase != retentionv1.ErasureCompleted || n == nil || n.Customers != 1 || n.SnapshotRows == 0 || n.Targets == 0 {
		t.Fatalf("erasure status: %s %+v", ce.Status.Phase, ce.Status.Erased)
	}
	var sec corev1.Secret
	if err := w.k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "forget-one"}, &sec); err != nil || len(sec.Data) != 0 {
		t.Fatalf("the ids' Secret after the erasure: %d keys, %v", len(sec.Data), err)
	}
	t.Logf("erasure: %+v", *ce.Status.Erased)

	// The source is scored again from the same data.
	w.requestScoring(t, "shop")
	if got, err := w.store.ErasedFilter(ctx, namespace+"/shop", []string{id}); err != nil || !got[id] {
		t.Errorf("ErasedFilter = %v, %v", got, err)
	}
	w.checkStoreForgot(t, id)
	// Runs still measuring re-measure on the new snapshot: the figures
	// stay (the erased target keeps its outcome under a tombstone id).
	time.Sleep(5 * time.Second)
	after := measured()
	for i := range before {
		if before[i].Treatment != after[i].Treatment || before[i].Holdout != after[i].Holdout {
			t.Errorf("run %s: measured figures changed with the erasure: %+v / %+v → %+v / %+v", runs[i].run.Name,
				before[i].Treatment, before[i].Holdout, after[i].Treatment, after[i].Holdout)
		}
	}
}

// checkStoreForgot reads every row of every table of the store's database
// and fails on any that holds the id.
func (w *world) checkStoreForgot(t *testing.T, id string) {
	t.Helper()
	n, tables := 0, 0
	for table, rows := range pgtest.Dump(t, w.storeDSN, storetest.RowText) {
		tables++
		for _, row := range rows {
			n++
			if strings.Contains(row, id) {
				t.Errorf("table %s still holds the erased customer: %.200s", table, row)
			}
		}
	}
	if n < 100_000 {
		t.Fatalf("the store has %d rows in %d tables: the search proves nothing", n, tables)
	}
	t.Logf("erasure: %d rows of %d tables searched, the id in none", n, tables)
}
