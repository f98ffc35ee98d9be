package controllers

import (
	"context"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crsource "sigs.k8s.io/controller-runtime/pkg/source"

	retentionv1 "github.com/retention-dev/retention-operator/api/v1alpha1"
	"github.com/retention-dev/retention-operator/internal/customer"
	"github.com/retention-dev/retention-operator/internal/source"
)

// newReader turns a CustomerSource's spec and the values resolved from its
// Secrets and ConfigMaps into a streaming reader of internal/source.
func newReader(cs *retentionv1.CustomerSource, in *sourceInput) source.Reader {
	m := newMapping(cs)
	switch {
	case cs.Spec.CSV != nil:
		delim, _ := utf8.DecodeRuneInString(cs.Spec.CSV.Delimiter)
		if cs.Spec.CSV.Delimiter == "" {
			delim = ','
		}
		r := &source.CSV{
			Transactions: opener(&cs.Spec.CSV.Transactions, in.Transactions, in.TransactionsAuth),
			Mapping:      m,
			Delimiter:    delim,
		}
		if cs.Spec.CSV.Customers != nil {
			r.Customers = opener(cs.Spec.CSV.Customers, in.Customers, in.CustomersAuth)
		}
		return r
	case cs.Spec.Postgres != nil:
		p := cs.Spec.Postgres
		return &source.Postgres{
			DSN:               in.DSN,
			TransactionsQuery: p.TransactionsQuery,
			CustomersQuery:    p.CustomersQuery,
			SummaryQuery:      p.SummaryQuery,
			Mapping:           m,
			StatementTimeout:  durationOr(p.StatementTimeout, 5*time.Minute),
		}
	default:
		h := cs.Spec.HTTP
		r := &source.HTTPJSON{
			URL:         h.URL,
			ItemsPath:   h.ItemsField,
			NextField:   h.NextField,
			CursorField: h.CursorField,
			CursorParam: h.CursorParam,
			Mapping:     m,
			Timeout:     durationOr(h.Timeout, 30*time.Second),
		}
		if h.MaxRetries != nil {
			r.MaxAttempts = int(*h.MaxRetries) + 1
		}
		if in.HTTPAuth != nil {
			r.Auth = *in.HTTPAuth
		}
		return r
	}
}

// opener reads a CSV location: bytes resolved from a ConfigMap or Secret,
// a URL (with its credentials), or a path.
func opener(l *retentionv1.CSVLocation, data []byte, auth *resolvedAuth) source.Opener {
	switch {
	case l.ConfigMapKeyRef != nil || l.SecretKeyRef != nil:
		return source.FromBytes(data)
	case l.URL != "":
		var a source.Auth
		if auth != nil {
			a = *auth
		}
		return source.FromURL(l.URL, a)
	default:
		return source.FromFile(l.Path)
	}
}

// newMapping converts the API's column mapping.
func newMapping(cs *retentionv1.CustomerSource) source.Mapping {
	cm := cs.Spec.Mapping
	m := source.Mapping{
		CustomerID: cm.CustomerID,
		Timestamp:  cm.Timestamp,
		Amount:     cm.Amount,
		DateLayout: dateLayout(cm.TimestampLayout),
	}
	for _, a := range cm.Attributes {
		t := customer.AttributeType(a.Type)
		if t == "" {
			t = customer.String
		}
		m.Attributes = append(m.Attributes, source.Attribute{Name: a.Name, Column: a.Column, Type: t})
	}
	if c := cm.Contact; c != nil {
		m.Contact = source.ContactColumns{Email: c.Email, Phone: c.Phone, Timezone: c.Timezone, Locale: c.Locale, OptOut: c.OptOut}
	}
	m.MaxRejectedRatio = -1 // no rejected row tolerated at 0%
	if p := cs.Spec.MaxRejectedPercent; p == nil {
		m.MaxRejectedRatio = 0.01
	} else if *p > 0 {
		m.MaxRejectedRatio = float64(*p) / 100
	}
	return m
}

// dateLayout maps the API's layout names to the source package's presets;
// anything else is a Go reference layout.
func dateLayout(l string) string {
	switch l {
	case "Date":
		return source.LayoutDate
	case "YYYYMMDD":
		return source.LayoutCompact
	case "RFC3339":
		return source.LayoutRFC3339
	}
	return l
}

// durationOr returns d, or def when d is unset.
func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil || d.Duration <= 0 {
		return def
	}
	return d.Duration
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

// inputRevision names the resource versions of the Secrets and ConfigMaps
// the source refers to, read as metadata only: no data is read to decide
// whether the source is due. ConfigMaps come from the operator's metadata
// cache (their metadata-only watch); Secrets, which the operator may get
// but not list or watch, from one uncached metadata GET each (APIReader),
// on each reconcile, including the periodic pass of secretRecheck. ok is
// false when one cannot be read, which makes the source due, and
// resolveInput then says what is missing.
func (r *CustomerSourceReconciler) inputRevision(ctx context.Context, cs *retentionv1.CustomerSource) (revision string, ok bool) {
	var parts []string
	for _, ref := range []struct {
		kind   string
		names  []string
		reader client.Reader
	}{{"ConfigMap", sourceConfigMapNames(cs), r.Client}, {"Secret", sourceSecretNames(cs), r.uncached()}} {
		names := slices.Clone(ref.names)
		sort.Strings(names)
		for _, name := range slices.Compact(names) {
			m := &metav1.PartialObjectMetadata{}
			m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(ref.kind))
			if err := ref.reader.Get(ctx, types.NamespacedName{Namespace: cs.Namespace, Name: name}, m); err != nil {
				return "", false
			}
			parts = append(parts, ref.kind+"/"+name+"@"+m.ResourceVersion)
		}
	}
	return strings.Join(parts, ","), true
}

// uncached is the reader of Secrets: APIReader, or the client when the
// reconciler has none (a client without a cache, in tests).
func (r *CustomerSourceReconciler) uncached() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}

// secretRecheck is the periodic pass over the sources that refer to
// Secrets, every RetryAfter (5m): a reconcile reads the Secrets'
// resource versions again and scores at once when one changed, as the
// ConfigMap watch makes it do for ConfigMaps.
func (r *CustomerSourceReconciler) secretRecheck(mgr ctrl.Manager) crsource.Source {
	return secretRecheck(mgr.GetCache(), func() client.ObjectList { return &retentionv1.CustomerSourceList{} },
		func(o client.Object) bool { return len(sourceSecretNames(o.(*retentionv1.CustomerSource))) > 0 }, retryAfter(r.RetryAfter))
}
