package controllers

import (
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/retention-dev/retention-operator/internal/metrics"
)

// CacheOptions is the manager's cache as the RBAC in config/rbac allows it:
// Jobs are listed and watched in the jobs namespace only (the namespaced
// Role), every other kind the reconcilers watch cluster-wide (the
// ClusterRole). No Secret is cached: see ClientOptions.
func CacheOptions(jobsNamespace string) cache.Options {
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&batchv1.Job{}: {Namespaces: map[string]cache.Config{jobsNamespace: {}}},
	}}
}

// ClientOptions makes the manager's client read Secrets from the API server
// (get), never through the cache: a cached read would start an informer
// that lists and watches every Secret of the cluster, which the operator
// may not do and must not hold in memory.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}}
}

// SetupReconcilers registers one reconciler per kind, as the operator runs
// them (main.go; config/rbac's test runs them as the operator's service
// account).
func SetupReconcilers(mgr ctrl.Manager, stores *StoreProvider, m *metrics.Metrics, runner RunnerConfig) error {
	rec := mgr.GetEventRecorder("retention-operator")
	clock := RealClock{}
	steps := []interface{ SetupWithManager(ctrl.Manager) error }{
		&CustomerSourceReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: rec, Clock: clock, Stores: stores, Metrics: m},
		&ChannelReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: rec, Metrics: m},
		&SegmentReconciler{Client: mgr.GetClient(), Recorder: rec, Clock: clock, Stores: stores, Metrics: m},
		&CampaignReconciler{Client: mgr.GetClient(), Recorder: rec, Clock: clock, Stores: stores, Metrics: m},
		&CampaignRunReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: rec, Clock: clock, Stores: stores, Runner: runner, Metrics: m},
		&CustomerErasureReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: rec, Clock: clock, Stores: stores},
	}
	for _, s := range steps {
		if err := s.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up %T: %w", s, err)
		}
	}
	return nil
}
