package controllers

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/metrics"
	"github.com/retention-dev/retention-operator/internal/outreach/webhook"
)

// ChannelReconciler keeps a Channel's Ready condition true to whether its
// configuration and Secrets resolve.
type ChannelReconciler struct {
	client.Client
	// APIReader reads Secrets uncached (get only: see secrets).
	APIReader client.Reader
	Recorder  EventRecorder
	// RetryAfter is how long to wait before looking again for a missing
	// dependency that no watch reports, and how often the Channels that
	// refer to Secrets are reconciled again to notice a rotated, fixed or
	// deleted Secret (secretRecheck). If zero, this defaults to 5m.
	RetryAfter time.Duration
	// Metrics, when set, receives the channel metrics: the opt-out counter
	// exists (at 0) from the first reconcile, so rate() sees it, and goes
	// with the channel.
	Metrics *metrics.Metrics
}

// +kubebuilder:rbac:groups=retention.dev,resources=channels,verbs=list;watch
// +kubebuilder:rbac:groups=retention.dev,resources=channels/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile resolves the Channel's Secrets and reports Ready.
func (r *ChannelReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var ch retentionv1.Channel
	if err := r.Get(ctx, req.NamespacedName, &ch); err != nil {
		if apierrors.IsNotFound(err) && r.Metrics != nil {
			r.Metrics.ForgetChannel(req.Namespace, req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if r.Metrics != nil {
		r.Metrics.ChannelOptOutsTotal.WithLabelValues(ch.Namespace, ch.Name)
	}
	patcher := newStatusPatcher(r.Client, &ch)
	err := r.resolveSecrets(ctx, &ch)
	return patcher.finish(ctx, r.Recorder, &ch, err, "configuration and Secrets resolve", requeue{Retry: r.RetryAfter})
}

// resolveSecrets reads every Secret key the channel needs.
func (r *ChannelReconciler) resolveSecrets(ctx context.Context, ch *retentionv1.Channel) error {
	s := secrets{reader: r.APIReader}
	ns := ch.Namespace
	switch {
	case ch.Spec.Webhook != nil && ch.Spec.Webhook.SigningSecretRef != nil:
		ref := *ch.Spec.Webhook.SigningSecretRef
		v, err := s.secretKey(ctx, ns, ref)
		if err != nil {
			return err
		}
		// Checked here, so a bad key shows on the Channel, not as failed
		// outreach Jobs. The error names the key's position, never its value.
		if _, err := webhook.ParseSigningKeys(string(v)); err != nil {
			return stalled(retentionv1.ReasonInvalidSecret, "Secret %s key %s: %v", ref.Name, ref.Key, err)
		}
		return nil
	case ch.Spec.SMTP != nil:
		if ref := ch.Spec.SMTP.CredentialsSecretRef; ref != nil {
			if _, err := s.secretKeys(ctx, ns, ref.Name, "username", "password"); err != nil {
				return err
			}
		}
		if d := ch.Spec.SMTP.DKIM; d != nil {
			_, err := s.secretKey(ctx, ns, d.PrivateKeySecretRef)
			return err
		}
	case ch.Spec.Slack != nil:
		_, err := s.secretKey(ctx, ns, ch.Spec.Slack.WebhookURLSecretRef)
		return err
	}
	return nil
}

// SetupWithManager registers the reconciler: a spec change reconciles the
// Channel, and so does every RetryAfter (5m) a pass over the Channels that
// refer to Secrets (secretRecheck), so a changed Secret shows in Ready
// within that time without the operator watching Secrets.
func (r *ChannelReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&retentionv1.Channel{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(secretRecheck(mgr.GetCache(), func() client.ObjectList { return &retentionv1.ChannelList{} },
			func(o client.Object) bool { return len(channelSecretNames(o.(*retentionv1.Channel))) > 0 }, retryAfter(r.RetryAfter))).
		Named("channel").
		Complete(r)
}

func retryAfter(d time.Duration) time.Duration {
	if d <= 0 {
		return 5 * time.Minute
	}
	return d
}
