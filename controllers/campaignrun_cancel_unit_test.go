package controllers

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
)

// TestCancelledOutcome: a run replaced by a newer one and a run aborted
// by a person (kubectl retention abort run) end Cancelled with a message
// that says which.
func TestCancelledOutcome(t *testing.T) {
	for by, want := range map[string]string{
		"win-back-29000001":      "cancelled: replaced by run win-back-29000001",
		retentionv1.AbortRequest: "cancelled: aborted on request",
	} {
		run := &retentionv1.CampaignRun{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{retentionv1.CancelRequestedAnnotation: by}}}
		var d *doneError
		if err := cancelledOutcome(run); !errors.As(err, &d) || d.Reason != retentionv1.ReasonCancelled || !strings.HasPrefix(d.Message, want) {
			t.Errorf("cancelled by %q: %v, want %q", by, err, want)
		}
	}
}
