package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	crsource "sigs.k8s.io/controller-runtime/pkg/source"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/source"
)

// Field indexes used to find the objects that refer to a changed object.
const (
	indexConfigMapNames = ".spec.configMapNames"
	indexSourceRef      = ".spec.sourceRef.name"
	indexSegmentRefs    = ".spec.segmentRefs"
	indexChannelRef     = ".spec.channelRef.name"
	indexCampaignRef    = ".spec.campaignRef.name"
)

// secrets reads Secrets and ConfigMaps through an uncached reader
// (mgr.GetAPIReader()), one GET each time a reconciler needs them: the
// operator may get a Secret but neither list nor watch Secrets (config/rbac),
// so no Secret, not even its metadata, is ever held in its cache. A changed
// Secret is noticed by secretRecheck; ConfigMaps are watched as metadata.
type secrets struct {
	reader client.Reader
}

// secretKey returns the value of one key of a Secret, or a waiting error
// naming what is missing.
func (s secrets) secretKey(ctx context.Context, namespace string, sel retentionv1.KeySelector) ([]byte, error) {
	data, err := s.secretData(ctx, namespace, sel.Name)
	if err != nil {
		return nil, err
	}
	v, ok := data[sel.Key]
	if !ok {
		return nil, waiting(retentionv1.ReasonSecretKeyNotFound, "secret %s/%s has no key %q", namespace, sel.Name, sel.Key)
	}
	return v, nil
}

// secretKeys checks that a Secret has every given key and returns them.
func (s secrets) secretKeys(ctx context.Context, namespace, name string, keys ...string) (map[string][]byte, error) {
	data, err := s.secretData(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if _, ok := data[k]; !ok {
			return nil, waiting(retentionv1.ReasonSecretKeyNotFound, "secret %s/%s has no key %q", namespace, name, k)
		}
	}
	return data, nil
}

func (s secrets) secretData(ctx context.Context, namespace, name string) (map[string][]byte, error) {
	var sec corev1.Secret
	if err := s.reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, waiting(retentionv1.ReasonSecretNotFound, "secret %s/%s not found", namespace, name)
		}
		return nil, fmt.Errorf("reading secret %s/%s: %w", namespace, name, err)
	}
	return sec.Data, nil
}

// configMapKey returns one key of a ConfigMap, from data or binaryData.
func (s secrets) configMapKey(ctx context.Context, namespace string, sel retentionv1.KeySelector) ([]byte, error) {
	var cm corev1.ConfigMap
	if err := s.reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: sel.Name}, &cm); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, waiting(retentionv1.ReasonConfigMapNotFound, "configmap %s/%s not found", namespace, sel.Name)
		}
		return nil, fmt.Errorf("reading configmap %s/%s: %w", namespace, sel.Name, err)
	}
	if v, ok := cm.Data[sel.Key]; ok {
		return []byte(v), nil
	}
	if v, ok := cm.BinaryData[sel.Key]; ok {
		return v, nil
	}
	return nil, waiting(retentionv1.ReasonConfigMapKeyNotFound, "configmap %s/%s has no key %q", namespace, sel.Name, sel.Key)
}

// httpAuth resolves the credentials of an HTTPAuth.
func (s secrets) httpAuth(ctx context.Context, namespace string, a *retentionv1.HTTPAuth) (*resolvedAuth, error) {
	if a == nil {
		return nil, nil
	}
	switch {
	case a.BearerTokenSecretRef != nil:
		tok, err := s.secretKey(ctx, namespace, *a.BearerTokenSecretRef)
		if err != nil {
			return nil, err
		}
		return &resolvedAuth{BearerToken: string(tok)}, nil
	case a.BasicAuthSecretRef != nil:
		data, err := s.secretKeys(ctx, namespace, a.BasicAuthSecretRef.Name, "username", "password")
		if err != nil {
			return nil, err
		}
		return &resolvedAuth{Username: string(data["username"]), Password: string(data["password"])}, nil
	}
	return nil, nil
}

// resolvedAuth holds credentials read from Secrets. Never log it.
type resolvedAuth = source.Auth

// authSecretNames lists the Secrets an HTTPAuth refers to.
func authSecretNames(a *retentionv1.HTTPAuth) []string {
	if a == nil {
		return nil
	}
	var names []string
	if a.BearerTokenSecretRef != nil {
		names = append(names, a.BearerTokenSecretRef.Name)
	}
	if a.BasicAuthSecretRef != nil {
		names = append(names, a.BasicAuthSecretRef.Name)
	}
	return names
}

// locationRefs lists the Secrets and ConfigMaps a CSVLocation refers to.
func locationRefs(l *retentionv1.CSVLocation) (secretNames, configMapNames []string) {
	if l == nil {
		return nil, nil
	}
	if l.SecretKeyRef != nil {
		secretNames = append(secretNames, l.SecretKeyRef.Name)
	}
	if l.ConfigMapKeyRef != nil {
		configMapNames = append(configMapNames, l.ConfigMapKeyRef.Name)
	}
	return append(secretNames, authSecretNames(l.Auth)...), configMapNames
}

// sourceSecretNames lists every Secret a CustomerSource refers to.
func sourceSecretNames(cs *retentionv1.CustomerSource) []string {
	var names []string
	switch {
	case cs.Spec.CSV != nil:
		s, _ := locationRefs(&cs.Spec.CSV.Transactions)
		names = append(names, s...)
		s, _ = locationRefs(cs.Spec.CSV.Customers)
		names = append(names, s...)
	case cs.Spec.Postgres != nil:
		names = append(names, cs.Spec.Postgres.DSNSecretRef.Name)
	case cs.Spec.HTTP != nil:
		names = append(names, authSecretNames(cs.Spec.HTTP.Auth)...)
	}
	return names
}

// sourceConfigMapNames lists every ConfigMap a CustomerSource refers to.
func sourceConfigMapNames(cs *retentionv1.CustomerSource) []string {
	if cs.Spec.CSV == nil {
		return nil
	}
	_, a := locationRefs(&cs.Spec.CSV.Transactions)
	_, b := locationRefs(cs.Spec.CSV.Customers)
	return append(a, b...)
}

// channelSecretNames lists every Secret a Channel refers to.
func channelSecretNames(ch *retentionv1.Channel) []string {
	var names []string
	switch {
	case ch.Spec.Webhook != nil && ch.Spec.Webhook.SigningSecretRef != nil:
		names = append(names, ch.Spec.Webhook.SigningSecretRef.Name)
	case ch.Spec.SMTP != nil:
		if ref := ch.Spec.SMTP.CredentialsSecretRef; ref != nil {
			names = append(names, ref.Name)
		}
		if d := ch.Spec.SMTP.DKIM; d != nil {
			names = append(names, d.PrivateKeySecretRef.Name)
		}
	case ch.Spec.Slack != nil:
		names = append(names, ch.Spec.Slack.WebhookURLSecretRef.Name)
	}
	return names
}

// secretRecheck is a source that enqueues, every interval, the objects of a
// kind that refer to at least one Secret (refersToSecrets), read from the
// cache: the operator may not watch Secrets (config/rbac grants get only),
// so a Secret created, rotated or deleted after the object was reconciled
// is noticed on the next pass, whose reconcile reads it again. This is how
// Flux's controllers notice a changed Secret (each reconcile at the
// object's interval reads its Secrets again), where cert-manager instead
// lists and watches every Secret of the cluster. Sends never depend on
// the pass: a run reads the channel's Secrets when it launches its Job.
func secretRecheck(c client.Reader, newList func() client.ObjectList, refersToSecrets func(client.Object) bool, every time.Duration) crsource.Source {
	return crsource.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		go func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				list := newList()
				if err := c.List(ctx, list); err != nil {
					continue
				}
				items, err := meta.ExtractList(list)
				if err != nil {
					continue
				}
				for _, it := range items {
					if o, ok := it.(client.Object); ok && refersToSecrets(o) {
						q.Add(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)})
					}
				}
			}
		}()
		return nil
	})
}
