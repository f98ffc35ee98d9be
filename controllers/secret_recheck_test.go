package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
)

// TestSourceNoticesRotatedSecret: the operator may get Secrets but not
// watch them (config/rbac), so a CustomerSource whose data is in a Secret
// notices new data on secretRecheck's pass (every RetryAfter: 2s in the
// suite, 5m by default), long before its hourly refresh, and scores it into
// a new snapshot; its input revision names the Secret's new version.
func TestSourceNoticesRotatedSecret(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vault"},
		Data: map[string][]byte{"transactions.csv": transactionsCSV(120, 3)}}
	if err := k8sClient.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	cs := newCSVSource(ns, "vault", "unused", nil)
	cs.Spec.CSV.Transactions = retentionv1.CSVLocation{SecretKeyRef: &retentionv1.KeySelector{Name: "vault", Key: "transactions.csv"}}
	if err := k8sClient.Create(ctx, cs); err != nil {
		t.Fatal(err)
	}
	conds := func() []metav1.Condition { return cs.Status.Conditions }
	eventually(t, 2*waitFor, readyIs(cs, conds, metav1.ConditionTrue, retentionv1.ReasonSucceeded, "scored 120 customers"))
	first := cs.Status.SnapshotID
	if want := "Secret/vault@" + sec.ResourceVersion; cs.Status.InputRevision != want {
		t.Fatalf("input revision %q, want %q", cs.Status.InputRevision, want)
	}

	sec.Data["transactions.csv"] = transactionsCSV(150, 4)
	if err := k8sClient.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, func() error {
		if err := readyIs(cs, conds, metav1.ConditionTrue, retentionv1.ReasonSucceeded, "scored 150 customers")(); err != nil {
			return err
		}
		if cs.Status.SnapshotID == first || !strings.HasSuffix(cs.Status.InputRevision, "@"+sec.ResourceVersion) {
			return fmt.Errorf("snapshot %d (first %d), input revision %q, Secret at %s", cs.Status.SnapshotID, first, cs.Status.InputRevision, sec.ResourceVersion)
		}
		return nil
	})
}
