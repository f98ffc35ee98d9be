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

// CampaignRunReconciler drives a CampaignRun through its phases.
type CampaignRunReconciler struct {
	client.Client
	Recorder   EventRecorder
	RetryAfter time.Duration
}

// +kubebuilder:rbac:groups=retention.dev,resources=campaignruns,verbs=get;list;watch
// +kubebuilder:rbac:groups=retention.dev,resources=campaignruns/status,verbs=get;update;patch

// Reconcile resolves the run's campaign.
func (r *CampaignRunReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var run retentionv1.CampaignRun
	if err := r.Get(ctx, req.NamespacedName, &run); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	patcher := newStatusPatcher(r.Client, &run)
	if run.Status.Phase == "" {
		run.Status.Phase = retentionv1.RunPending
	}
	key := types.NamespacedName{Namespace: run.Namespace, Name: run.Spec.CampaignRef.Name}
	err := getReference(ctx, r.Client, key, &retentionv1.Campaign{}, "campaign", retentionv1.ReasonCampaignNotFound)
	if err == nil {
		err = notImplemented("audience materialisation and outreach")
	}
	return patcher.finish(ctx, r.Recorder, &run, err, "run succeeded", r.RetryAfter)
}

// SetupWithManager registers the reconciler; a Campaign's change
// re-reconciles its runs.
func (r *CampaignRunReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &retentionv1.CampaignRun{}, indexCampaignRef,
		func(o client.Object) []string { return []string{o.(*retentionv1.CampaignRun).Spec.CampaignRef.Name} }); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&retentionv1.CampaignRun{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&retentionv1.Campaign{}, handler.EnqueueRequestsFromMapFunc(
			referrers(r.Client, func() client.ObjectList { return &retentionv1.CampaignRunList{} }, indexCampaignRef))).
		Named("campaignrun").
		Complete(r)
}
