package controllers

import (
	"context"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
)

// CustomerSourceReconciler keeps a CustomerSource scored on its refresh interval.
type CustomerSourceReconciler struct {
	client.Client
	// APIReader reads Secrets and ConfigMaps uncached.
	APIReader  client.Reader
	Recorder   EventRecorder
	Clock      Clock
	RetryAfter time.Duration
	// Stores opens the data-plane store where snapshots are written.
	Stores *StoreProvider
}

// +kubebuilder:rbac:groups=retention.dev,resources=customersources,verbs=get;list;watch
// +kubebuilder:rbac:groups=retention.dev,resources=customersources/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets;configmaps,verbs=get;list;watch

// Reconcile resolves the source's references and scores its customers.
func (r *CustomerSourceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var cs retentionv1.CustomerSource
	if err := r.Get(ctx, req.NamespacedName, &cs); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	patcher := newStatusPatcher(r.Client, &cs)
	before := slices.Clone(cs.Status.Conditions)

	_, err := r.resolveInput(ctx, &cs)
	if err == nil {
		err = notImplemented("scoring")
	}
	markReady(&cs, err, retentionv1.ReasonSucceeded, "customers scored")
	eventForTransition(r.Recorder, &cs, before)
	if perr := patcher.Patch(ctx, &cs); perr != nil {
		return ctrl.Result{}, perr
	}
	return requeueFor(err, retryAfter(r.RetryAfter))
}

// sourceInput is what the controller resolved from the cluster for the
// domain packages: bytes of ConfigMaps and Secrets, DSNs, credentials.
// Never log it.
type sourceInput struct {
	Transactions, Customers []byte
	TransactionsAuth        *resolvedAuth
	CustomersAuth           *resolvedAuth
	DSN                     string
	HTTPAuth                *resolvedAuth
}

// resolveInput reads every Secret and ConfigMap the source refers to.
func (r *CustomerSourceReconciler) resolveInput(ctx context.Context, cs *retentionv1.CustomerSource) (*sourceInput, error) {
	s := secrets{reader: r.APIReader}
	in := &sourceInput{}
	var err error
	switch {
	case cs.Spec.CSV != nil:
		if in.Transactions, in.TransactionsAuth, err = r.resolveLocation(ctx, s, cs.Namespace, &cs.Spec.CSV.Transactions); err != nil {
			return nil, err
		}
		if cs.Spec.CSV.Customers != nil {
			if in.Customers, in.CustomersAuth, err = r.resolveLocation(ctx, s, cs.Namespace, cs.Spec.CSV.Customers); err != nil {
				return nil, err
			}
		}
	case cs.Spec.Postgres != nil:
		dsn, err := s.secretKey(ctx, cs.Namespace, cs.Spec.Postgres.DSNSecretRef)
		if err != nil {
			return nil, err
		}
		in.DSN = string(dsn)
	case cs.Spec.HTTP != nil:
		if in.HTTPAuth, err = s.httpAuth(ctx, cs.Namespace, cs.Spec.HTTP.Auth); err != nil {
			return nil, err
		}
	default:
		return nil, stalled(retentionv1.ReasonInvalidSpec, "exactly one of csv, postgres or http must be set")
	}
	return in, nil
}

// resolveLocation returns the bytes of a ConfigMap or Secret key, or the
// credentials for a URL; a path is read later, by the source reader.
func (r *CustomerSourceReconciler) resolveLocation(ctx context.Context, s secrets, ns string, l *retentionv1.CSVLocation) ([]byte, *resolvedAuth, error) {
	switch {
	case l.ConfigMapKeyRef != nil:
		b, err := s.configMapKey(ctx, ns, *l.ConfigMapKeyRef)
		return b, nil, err
	case l.SecretKeyRef != nil:
		b, err := s.secretKey(ctx, ns, *l.SecretKeyRef)
		return b, nil, err
	case l.URL != "":
		auth, err := s.httpAuth(ctx, ns, l.Auth)
		return nil, auth, err
	}
	return nil, nil, nil
}

// SetupWithManager registers the reconciler; changes of referenced Secrets
// and ConfigMaps (metadata-only watches) re-reconcile the source.
func (r *CustomerSourceReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = RealClock{}
	}
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(context.Background(), &retentionv1.CustomerSource{}, indexSecretNames,
		func(o client.Object) []string { return sourceSecretNames(o.(*retentionv1.CustomerSource)) }); err != nil {
		return err
	}
	if err := idx.IndexField(context.Background(), &retentionv1.CustomerSource{}, indexConfigMapNames,
		func(o client.Object) []string { return sourceConfigMapNames(o.(*retentionv1.CustomerSource)) }); err != nil {
		return err
	}
	newList := func() client.ObjectList { return &retentionv1.CustomerSourceList{} }
	return ctrl.NewControllerManagedBy(mgr).
		For(&retentionv1.CustomerSource{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(referrers(r.Client, newList, indexSecretNames))).
		WatchesMetadata(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(referrers(r.Client, newList, indexConfigMapNames))).
		Named("customersource").
		Complete(r)
}
