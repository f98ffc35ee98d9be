package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// ReconcileRequestedAnnotation asks the operator to read and score a
// CustomerSource now, outside its refresh interval and without a spec
// change. Any new value makes the operator read and score the source at
// once (even while a failed scoring backs off; not while it is suspended);
// status.lastHandledReconcileAt then holds the value handled. By
// convention the value is the current time in RFC 3339, e.g.
//
//	kubectl annotate --overwrite customersource/shop retention.dev/requestedAt="$(date -u +%FT%TZ)"
//
// This follows Flux's reconcile.fluxcd.io/requestedAt.
const ReconcileRequestedAnnotation = "retention.dev/requestedAt"

// CustomerSourceSpec declares where customer data lives, how its columns map
// to customers, and how customers are scored.
// +kubebuilder:validation:XValidation:rule="[has(self.csv), has(self.postgres), has(self.http)].filter(x, x).size() == 1",message="exactly one of csv, postgres or http must be set"
type CustomerSourceSpec struct {
	// csv reads a transaction log (and optionally a customers file) in CSV.
	// Cannot be set if postgres or http is set.
	// +optional
	CSV *CSVSource `json:"csv,omitempty"`

	// postgres reads transactions, or pre-aggregated customers, with SQL
	// queries. Cannot be set if csv or http is set.
	// +optional
	Postgres *PostgresSource `json:"postgres,omitempty"`

	// http reads transactions from a paged JSON API.
	// Cannot be set if csv or postgres is set.
	// +optional
	HTTP *HTTPSource `json:"http,omitempty"`

	// mapping names the columns (or JSON fields) that hold the customer id,
	// the purchase time and amount, attributes and contact fields.
	// If unset, the columns customer_id, timestamp and amount are read.
	// +optional
	Mapping ColumnMapping `json:"mapping,omitempty"`

	// scoring configures the models that score customers.
	// +optional
	Scoring ScoringSpec `json:"scoring,omitempty"`

	// refreshInterval is how often the source is read and scored again.
	// If unset, this defaults to 1h. Must be at least 1m.
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="refreshInterval must be at least 1m"
	// +optional
	RefreshInterval *metav1.Duration `json:"refreshInterval,omitempty"`

	// maxRejectedPercent is the share of input rows, in percent, that may be
	// rejected as unreadable before the scoring fails and the previous
	// snapshot stays current. If unset, this defaults to 1. Between 0 and 100.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	MaxRejectedPercent *int32 `json:"maxRejectedPercent,omitempty"`

	// suspend stops refreshes while true; the current snapshot stays current.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// CSVLocation says where a CSV document is. Exactly one of path,
// configMapKeyRef, secretKeyRef and url must be set. gzip-compressed data is
// detected and decompressed in every case.
// +kubebuilder:validation:XValidation:rule="[has(self.path), has(self.configMapKeyRef), has(self.secretKeyRef), has(self.url)].filter(x, x).size() == 1",message="exactly one of path, configMapKeyRef, secretKeyRef or url must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.auth) || has(self.url)",message="auth can only be set with url"
type CSVLocation struct {
	// path of a file readable by the operator's process (local runs, or a
	// volume mounted into the operator's pod).
	// +kubebuilder:validation:MinLength=1
	// +optional
	Path string `json:"path,omitempty"`

	// configMapKeyRef selects a key of a ConfigMap in the source's namespace
	// (text in data, or gzip in binaryData).
	// +optional
	ConfigMapKeyRef *KeySelector `json:"configMapKeyRef,omitempty"`

	// secretKeyRef selects a key of a Secret in the source's namespace.
	// +optional
	SecretKeyRef *KeySelector `json:"secretKeyRef,omitempty"`

	// url of the document over http or https.
	// +kubebuilder:validation:Pattern=`^https?://`
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	URL string `json:"url,omitempty"`

	// auth authenticates requests to url. Can only be set with url.
	// +optional
	Auth *HTTPAuth `json:"auth,omitempty"`
}

// CSVSource reads customers from CSV documents with a header row, RFC 4180
// quoting and UTF-8 text.
type CSVSource struct {
	// transactions locates the transaction log: one row per purchase.
	// +required
	Transactions CSVLocation `json:"transactions"`

	// customers optionally locates a file with one row per customer that
	// carries attributes and contact fields, joined on the customer id column.
	// +optional
	Customers *CSVLocation `json:"customers,omitempty"`

	// delimiter separates fields. If unset, this defaults to ",".
	// +kubebuilder:default=","
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1
	// +optional
	Delimiter string `json:"delimiter,omitempty"`
}

// PostgresSource reads customers from PostgreSQL. Queries run in a READ ONLY
// transaction with a statement timeout and their rows are streamed. Exactly
// one of transactionsQuery and summaryQuery must be set.
// +kubebuilder:validation:XValidation:rule="has(self.transactionsQuery) != has(self.summaryQuery)",message="exactly one of transactionsQuery or summaryQuery must be set"
type PostgresSource struct {
	// dsnSecretRef selects the Secret key that holds the connection string
	// (postgres://user:password@host:5432/db?sslmode=require).
	// +required
	DSNSecretRef KeySelector `json:"dsnSecretRef"`

	// transactionsQuery returns one row per purchase, with the columns named
	// in mapping. Cannot be set if summaryQuery is set.
	// +kubebuilder:validation:MinLength=1
	// +optional
	TransactionsQuery string `json:"transactionsQuery,omitempty"`

	// customersQuery optionally returns one row per customer with attribute
	// and contact columns, joined on the customer id column.
	// +kubebuilder:validation:MinLength=1
	// +optional
	CustomersQuery string `json:"customersQuery,omitempty"`

	// summaryQuery pushes the per-customer summary down to the database: it
	// returns one row per customer with the columns customer_id, frequency,
	// recency, age and monetary (in scoring.timeUnit) plus attribute and
	// contact columns, so the operator streams customers, not transactions.
	// Cannot be set if transactionsQuery is set.
	// +kubebuilder:validation:MinLength=1
	// +optional
	SummaryQuery string `json:"summaryQuery,omitempty"`

	// statementTimeout bounds every query. If unset, this defaults to 5m.
	// +kubebuilder:default="5m"
	// +optional
	StatementTimeout *metav1.Duration `json:"statementTimeout,omitempty"`
}

// HTTPSource reads transactions from a paged JSON API: each page is an
// object whose itemsField holds an array of transactions, and whose
// nextField holds the URL of the next page (or whose cursorField holds a
// cursor sent back as the query parameter cursorParam).
// +kubebuilder:validation:XValidation:rule="!(has(self.nextField) && has(self.cursorField))",message="at most one of nextField and cursorField may be set"
// +kubebuilder:validation:XValidation:rule="has(self.cursorField) == has(self.cursorParam)",message="cursorField and cursorParam must be set together"
type HTTPSource struct {
	// url of the first page.
	// +kubebuilder:validation:Pattern=`^https?://`
	// +kubebuilder:validation:MaxLength=2048
	// +required
	URL string `json:"url"`

	// itemsField is the field of a page that holds the array of items.
	// If unset, this defaults to "data".
	// +kubebuilder:default="data"
	// +optional
	ItemsField string `json:"itemsField,omitempty"`

	// nextField is the field of a page that holds the next page's URL
	// (absolute or relative). If neither nextField nor cursorField is set,
	// nextField defaults to "next".
	// +optional
	NextField string `json:"nextField,omitempty"`

	// cursorField is the field of a page that holds an opaque cursor.
	// +optional
	CursorField string `json:"cursorField,omitempty"`

	// cursorParam is the query parameter that carries the cursor.
	// +optional
	CursorParam string `json:"cursorParam,omitempty"`

	// auth authenticates each request.
	// +optional
	Auth *HTTPAuth `json:"auth,omitempty"`

	// timeout bounds each request. If unset, this defaults to 30s.
	// +kubebuilder:default="30s"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// maxRetries is how many times a request that failed with a network
	// error, 429 or 5xx is retried, with exponential backoff.
	// If unset, this defaults to 5. Between 0 and 20.
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=20
	// +optional
	MaxRetries *int32 `json:"maxRetries,omitempty"`
}

// AttributeType is the type of a customer attribute.
// +kubebuilder:validation:Enum=String;Number;Bool;Timestamp
type AttributeType string

const (
	// AttributeString is UTF-8 text.
	AttributeString AttributeType = "String"
	// AttributeNumber is a decimal number.
	AttributeNumber AttributeType = "Number"
	// AttributeBool is true/false (also 1/0, yes/no).
	AttributeBool AttributeType = "Bool"
	// AttributeTimestamp is a point in time, read with mapping.timestampLayout.
	AttributeTimestamp AttributeType = "Timestamp"
)

// AttributeMapping maps a column to a typed customer attribute, available to
// segment rules as customer.attributes.<name>.
type AttributeMapping struct {
	// name of the attribute in rules: a CEL identifier.
	// +kubebuilder:validation:Pattern=`^[a-zA-Z_][a-zA-Z0-9_]*$`
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`

	// column (or JSON field) that holds the value. If unset, this defaults to name.
	// +optional
	Column string `json:"column,omitempty"`

	// type of the value. If unset, this defaults to String.
	// +kubebuilder:default=String
	// +optional
	Type AttributeType `json:"type,omitempty"`
}

// ContactMapping names the columns that say how a customer can be reached.
// Each is optional; contact fields never appear in logs, Events, status or metrics.
type ContactMapping struct {
	// email column.
	// +optional
	Email string `json:"email,omitempty"`
	// phone column.
	// +optional
	Phone string `json:"phone,omitempty"`
	// timezone column (IANA name, e.g. Europe/Berlin), used for quiet hours.
	// +optional
	Timezone string `json:"timezone,omitempty"`
	// locale column (BCP 47, e.g. fa-IR).
	// +optional
	Locale string `json:"locale,omitempty"`
	// optOut column: true/false, 1/0 or yes/no. A customer who opted out is never contacted.
	// +optional
	OptOut string `json:"optOut,omitempty"`
}

// ColumnMapping maps the source's columns to customers.
type ColumnMapping struct {
	// customerID is the column that identifies a customer.
	// If unset, this defaults to "customer_id".
	// +kubebuilder:default="customer_id"
	// +optional
	CustomerID string `json:"customerID,omitempty"`

	// timestamp is the column with the time of a purchase.
	// If unset, this defaults to "timestamp".
	// +kubebuilder:default="timestamp"
	// +optional
	Timestamp string `json:"timestamp,omitempty"`

	// timestampLayout is the Go reference layout of timestamps, or one of
	// RFC3339, Date (2006-01-02) and YYYYMMDD (20060102). If unset, RFC 3339
	// and dates are both accepted.
	// +optional
	TimestampLayout string `json:"timestampLayout,omitempty"`

	// amount is the column with the purchase value, a decimal number with a
	// dot. If unset, this defaults to "amount".
	// +kubebuilder:default="amount"
	// +optional
	Amount string `json:"amount,omitempty"`

	// attributes maps columns to typed customer attributes.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Attributes []AttributeMapping `json:"attributes,omitempty"`

	// contact names the contact columns.
	// +optional
	Contact *ContactMapping `json:"contact,omitempty"`
}

// TimeUnit is the unit of recency, age and horizons in the models.
// +kubebuilder:validation:Enum=Week;Day
type TimeUnit string

const (
	// TimeUnitWeek measures time in weeks (days / 7), as the BTYD literature does.
	TimeUnitWeek TimeUnit = "Week"
	// TimeUnitDay measures time in days.
	TimeUnitDay TimeUnit = "Day"
)

// ModelName names a model of the BG/NBD family.
// +kubebuilder:validation:Enum=BGNBD;MBGNBD;ParetoNBD;Auto
type ModelName string

const (
	// ModelBGNBD is the beta-geometric/NBD model (Fader, Hardie & Lee 2005).
	ModelBGNBD ModelName = "BGNBD"
	// ModelMBGNBD is the modified BG/NBD (Batislam, Denizel & Filiztekin 2007):
	// a customer may drop out right after any purchase, the first included.
	ModelMBGNBD ModelName = "MBGNBD"
	// ModelParetoNBD is the Pareto/NBD model (Schmittlein, Morrison & Colombo 1987).
	ModelParetoNBD ModelName = "ParetoNBD"
	// ModelAuto fits every model on a calibration period and uses the one
	// with the lowest forecast error on the holdout period.
	ModelAuto ModelName = "Auto"
)

// CustomScore is a named score computed by a CEL expression over the scored
// customer, available to segment rules as customer.custom.<name>.
type CustomScore struct {
	// name of the score: a CEL identifier.
	// +kubebuilder:validation:Pattern=`^[a-zA-Z_][a-zA-Z0-9_]*$`
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`

	// expression is a CEL expression over `customer` that yields a number,
	// e.g. `customer.expectedValue * customer.pAlive`.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	// +required
	Expression string `json:"expression"`
}

// ScoringSpec configures how customers are scored.
type ScoringSpec struct {
	// model chooses the purchase model: BGNBD, MBGNBD, ParetoNBD, or Auto
	// (each model is fitted on a calibration period and the one with the
	// lowest holdout forecast error is used). If unset, this defaults to Auto.
	// +kubebuilder:default=Auto
	// +optional
	Model ModelName `json:"model,omitempty"`

	// timeUnit of recency, age and horizons. If unset, this defaults to Week.
	// +kubebuilder:default=Week
	// +optional
	TimeUnit TimeUnit `json:"timeUnit,omitempty"`

	// horizon over which expected purchases and expected value are forecast.
	// If unset, this defaults to 52 weeks (8736h).
	// +kubebuilder:default="8736h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('24h')",message="horizon must be at least 24h"
	// +optional
	Horizon *metav1.Duration `json:"horizon,omitempty"`

	// annualDiscountPercent discounts future value in expected customer
	// value. If unset, this defaults to 10. Between 0 and 100.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	AnnualDiscountPercent *int32 `json:"annualDiscountPercent,omitempty"`

	// holdoutPeriod, when set, holds the last part of the observed period
	// out of the fit and reports how well each model forecasts it.
	// Required in effect by model Auto, which otherwise holds out the last
	// quarter of the observed period.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('24h')",message="holdoutPeriod must be at least 24h"
	// +optional
	HoldoutPeriod *metav1.Duration `json:"holdoutPeriod,omitempty"`

	// observationEnd ends the observed period: transactions after it are
	// ignored and customer age is measured to it. If unset, the observed
	// period ends at the time of scoring.
	// +optional
	ObservationEnd *metav1.Time `json:"observationEnd,omitempty"`

	// atRiskPercent is the P(alive) threshold, in percent, under which a
	// customer who has bought more than once counts as at risk in the
	// population summary. If unset, this defaults to 50.
	// +kubebuilder:default=50
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=99
	// +optional
	AtRiskPercent *int32 `json:"atRiskPercent,omitempty"`

	// customScores are named CEL expressions evaluated for every customer.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	// +optional
	CustomScores []CustomScore `json:"customScores,omitempty"`
}

// FittedModel is one fitted model of the BG/NBD family or Gamma-Gamma.
type FittedModel struct {
	// name of the model.
	Name string `json:"name"`

	// period the parameters were fitted on: Observation (the whole observed
	// period, the fit whose scores are published) or Calibration (the
	// observed period less the holdout, the fit whose forecast is checked).
	// Log-likelihoods compare only between fits on the same period.
	// +optional
	Period string `json:"period,omitempty"`

	// parameters by name (r, alpha, a, b, s, beta, p, q, v), as decimal strings.
	// +optional
	Parameters map[string]string `json:"parameters,omitempty"`

	// logLikelihood at the fitted parameters, as a decimal string.
	// +optional
	LogLikelihood string `json:"logLikelihood,omitempty"`

	// converged is true when the optimiser met its convergence criteria.
	Converged bool `json:"converged"`

	// iterations of the optimiser.
	// +optional
	Iterations int32 `json:"iterations,omitempty"`

	// holdoutMAE is the mean absolute error per customer of forecast repeat
	// purchases over the holdout period, as a decimal string.
	// +optional
	HoldoutMAE string `json:"holdoutMAE,omitempty"`

	// holdoutPredicted is the forecast total of repeat purchases over the
	// holdout period, as a decimal string.
	// +optional
	HoldoutPredicted string `json:"holdoutPredicted,omitempty"`

	// holdoutActual is the observed total of repeat purchases over the
	// holdout period.
	// +optional
	HoldoutActual string `json:"holdoutActual,omitempty"`

	// error says why the model could not be fitted, if it could not.
	// +optional
	Error string `json:"error,omitempty"`
}

// ModelStatus reports the fitted models.
type ModelStatus struct {
	// selected is the purchase model whose scores are published.
	// +optional
	Selected string `json:"selected,omitempty"`

	// models are the purchase models that were fitted.
	// +listType=map
	// +listMapKey=name
	// +optional
	Models []FittedModel `json:"models,omitempty"`

	// spend is the Gamma-Gamma spend model.
	// +optional
	Spend *FittedModel `json:"spend,omitempty"`
}

// PopulationSummary summarises the scored customers.
type PopulationSummary struct {
	// active customers: P(alive) at or above the at-risk threshold.
	Active int64 `json:"active"`
	// atRisk customers: repeat buyers whose P(alive) fell below the at-risk threshold.
	AtRisk int64 `json:"atRisk"`
	// retentionRatePercent is the share of customers who bought in the
	// period before last that bought again in the last period, in percent.
	// +optional
	RetentionRatePercent string `json:"retentionRatePercent,omitempty"`
	// totalExpectedValue of all customers over the horizon, as a decimal string.
	// +optional
	TotalExpectedValue string `json:"totalExpectedValue,omitempty"`
}

// CustomerSourceStatus is the observed state of a CustomerSource.
type CustomerSourceStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready, Reconciling, Stalled, ModelFallback.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// The counts are written even when 0, and default to 0: the reconciler
	// writes status with a merge patch, which leaves out a count that was 0
	// and stays 0, so the API server's default is what makes it appear.

	// customers scored in the current snapshot.
	// +kubebuilder:default=0
	// +optional
	Customers int64 `json:"customers"`

	// transactions read for the current snapshot.
	// +kubebuilder:default=0
	// +optional
	Transactions int64 `json:"transactions"`

	// rejectedRows in the last read.
	// +kubebuilder:default=0
	// +optional
	RejectedRows int64 `json:"rejectedRows"`

	// rejectedSamples are the first few rejected rows: row, column, reason.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	// +optional
	RejectedSamples []RowRejection `json:"rejectedSamples,omitempty"`

	// inputRevision names the resource versions of the ConfigMaps and
	// Secrets the current snapshot was read from. When any of them
	// changes, the source is scored again at once, not at the next refresh.
	// +optional
	InputRevision string `json:"inputRevision,omitempty"`

	// snapshotID of the current scored snapshot in the store.
	// +optional
	SnapshotID int64 `json:"snapshotID,omitempty"`

	// lastScoredTime is when the current snapshot was made current.
	// +optional
	LastScoredTime *metav1.Time `json:"lastScoredTime,omitempty"`

	// nextScoredTime is when the next refresh is due.
	// +optional
	NextScoredTime *metav1.Time `json:"nextScoredTime,omitempty"`

	// lastHandledReconcileAt is the value of the retention.dev/requestedAt
	// annotation that the last scoring, successful or failed, handled. A
	// new annotation value that differs from it is scored at once.
	// +optional
	LastHandledReconcileAt string `json:"lastHandledReconcileAt,omitempty"`

	// duration of the last scoring, read to commit.
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`

	// model reports the fitted models.
	// +optional
	Model *ModelStatus `json:"model,omitempty"`

	// population summarises the scored customers.
	// +optional
	Population *PopulationSummary `json:"population,omitempty"`
}

// CustomerSource declares where customer data lives and how it is scored.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=csrc,categories=retention
// +kubebuilder:printcolumn:name="Customers",type=integer,JSONPath=`.status.customers`
// +kubebuilder:printcolumn:name="Model",type=string,JSONPath=`.status.model.selected`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Last Scored",type=date,JSONPath=`.status.lastScoredTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type CustomerSource struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired source and scoring.
	// +required
	Spec CustomerSourceSpec `json:"spec"`

	// status is the observed state.
	// +optional
	Status CustomerSourceStatus `json:"status,omitempty"`
}

// CustomerSourceList is a list of CustomerSources.
// +kubebuilder:object:root=true
type CustomerSourceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CustomerSource `json:"items"`
}

func init() {
	SchemeBuilder.Register(&CustomerSource{}, &CustomerSourceList{})
}
