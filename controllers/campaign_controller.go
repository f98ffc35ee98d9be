package controllers

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
)

// CampaignReconciler starts CampaignRuns on a Campaign's schedule or trigger.
type CampaignReconciler struct {
	client.Client
	Recorder   EventRecorder
	RetryAfter time.Duration
}

// +kubebuilder:rbac:groups=retention.dev,resources=campaigns,verbs=get;list;watch
// +kubebuilder:rbac:groups=retention.dev,resources=campaigns/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=retention.dev,resources=segments;channels,verbs=get;list;watch

// Reconcile resolves the Campaign's segment and channel.
func (r *CampaignReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var c retentionv1.Campaign
	if err := r.Get(ctx, req.NamespacedName, &c); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	patcher := newStatusPatcher(r.Client, &c)
	err := r.reconcileReferences(ctx, &c)
	if err == nil {
		err = notImplemented("campaign scheduling")
	}
	return patcher.finish(ctx, r.Recorder, &c, err, "runs can start", r.RetryAfter)
}

// reconcileReferences checks the segment, the suppression segments and the channel.
func (r *CampaignReconciler) reconcileReferences(ctx context.Context, c *retentionv1.Campaign) error {
	for _, name := range campaignSegmentNames(c) {
		key := types.NamespacedName{Namespace: c.Namespace, Name: name}
		if err := getReference(ctx, r.Client, key, &retentionv1.Segment{}, "segment", retentionv1.ReasonSegmentNotFound); err != nil {
			return err
		}
	}
	var ch retentionv1.Channel
	key := types.NamespacedName{Namespace: c.Namespace, Name: c.Spec.ChannelRef.Name}
	if err := getReference(ctx, r.Client, key, &ch, "channel", retentionv1.ReasonChannelNotFound); err != nil {
		return err
	}
	if !isReady(ch.Status.Conditions) {
		return waiting(retentionv1.ReasonChannelNotReady, "channel %s is not ready", key)
	}
	return nil
}

// campaignSegmentNames lists the target segment and the suppression segments.
func campaignSegmentNames(c *retentionv1.Campaign) []string {
	names := []string{c.Spec.SegmentRef.Name}
	if c.Spec.Suppress != nil {
		for _, s := range c.Spec.Suppress.Segments {
			names = append(names, s.Name)
		}
	}
	return names
}

// SetupWithManager registers the reconciler; changes of the referenced
// Segments and Channel re-reconcile the Campaign.
func (r *CampaignReconciler) SetupWithManager(mgr ctrl.Manager) error {
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(context.Background(), &retentionv1.Campaign{}, indexSegmentRefs,
		func(o client.Object) []string { return campaignSegmentNames(o.(*retentionv1.Campaign)) }); err != nil {
		return err
	}
	if err := idx.IndexField(context.Background(), &retentionv1.Campaign{}, indexChannelRef,
		func(o client.Object) []string { return []string{o.(*retentionv1.Campaign).Spec.ChannelRef.Name} }); err != nil {
		return err
	}
	newList := func() client.ObjectList { return &retentionv1.CampaignList{} }
	return ctrl.NewControllerManagedBy(mgr).
		For(&retentionv1.Campaign{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&retentionv1.Segment{}, handler.EnqueueRequestsFromMapFunc(referrers(r.Client, newList, indexSegmentRefs))).
		Watches(&retentionv1.Channel{}, handler.EnqueueRequestsFromMapFunc(referrers(r.Client, newList, indexChannelRef))).
		Named("campaign").
		Complete(r)
}
