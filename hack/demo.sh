#!/usr/bin/env bash
# demo.sh: a local simulated cluster from the cached binaries (etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, kwok nodes whose
# outreach pods run as local processes), the CRDs, the operator as a
# process, the samples, and what the operator made of them. It then leaves
# everything running until Ctrl-C, and stops and removes all it started.
# DEMO_EXIT=1 stops right after the report (scripts, CI).
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS_BIN="$(hack/tools.sh dir)/bin"
export KUBEBUILDER_ASSETS="$TOOLS_BIN"
KUBECTL="$TOOLS_BIN/kubectl"
DEMO_DIR="${DEMO_DIR:-$(mktemp -d /tmp/retention-demo.XXXXXX)}"
export KUBECONFIG="$DEMO_DIR/kubeconfig"
NS=demo
pids=()

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ $rc != 0 ]]; then
    echo "the demo failed: its logs are kept in $DEMO_DIR (operator.log, cluster/pods.log, cluster/*.log)" >&2
    return
  fi
  rm -rf "$DEMO_DIR"
}
trap cleanup EXIT

say "starting a local cluster in $DEMO_DIR: etcd, kube-apiserver, kube-controller-manager (Job controller), kube-scheduler, kwok with 2 fake nodes"
go build -o "$DEMO_DIR/localcluster" ./test/localcluster/cmd/localcluster
# The kwok nodes run no containers: localcluster runs the outreach pods'
# command (/retention-outreach in the image) as local processes and reports
# their exit codes, so the real Job controller counts the completions.
"$DEMO_DIR/localcluster" -write-kubeconfig "$KUBECONFIG" -nodes 2 -dir "$DEMO_DIR/cluster" \
  -run /retention-outreach=bin/retention-outreach >"$DEMO_DIR/cluster.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 120); do [[ -f "$KUBECONFIG" ]] && break; sleep 0.5; done
[[ -f "$KUBECONFIG" ]] || { cat "$DEMO_DIR/cluster.log"; echo "control plane did not start" >&2; exit 1; }
"$KUBECTL" version 2>/dev/null | sed 's/^/  /'
"$KUBECTL" get nodes | sed 's/^/  /'

say "installing the CRDs"
"$KUBECTL" apply --server-side -k config/crd
"$KUBECTL" wait --for condition=established --timeout=60s crd --all >/dev/null

say "starting a webhook receiver on 127.0.0.1:9099 (test/webhooksink: verifies every Standard Webhooks signature)"
SIGNING_KEY=$(sed -n 's/^  key: //p' config/samples/retention_v1alpha1_channel.yaml)
go build -o "$DEMO_DIR/webhooksink" ./test/webhooksink
"$DEMO_DIR/webhooksink" -addr 127.0.0.1:9099 -key "$SIGNING_KEY" >"$DEMO_DIR/sink.log" 2>&1 &
pids+=($!)

say "starting the operator (bin/retention-operator manager with the embedded SQLite store)"
METRICS_ADDR="127.0.0.1:${DEMO_METRICS_PORT:-18080}"
head -c 32 /dev/urandom >"$DEMO_DIR/unsubscribe.key"
bin/retention-operator manager --store "sqlite://$DEMO_DIR/retention.db" --metrics-bind-address "$METRICS_ADDR" --health-probe-bind-address 127.0.0.1:0 \
  --jobs-local-processes --unsubscribe-url https://retention.example.com \
  --unsubscribe-key-file "$DEMO_DIR/unsubscribe.key" --unsubscribe-bind-address 127.0.0.1:0 \
  >"$DEMO_DIR/operator.log" 2>&1 &
pids+=($!)

say "generating a shop's purchase history (retention-operator generate)"
end=$(date -u +%F)
start=$(date -u -d "$end - 2 years" +%F)
bin/retention-operator generate --customers "${DEMO_CUSTOMERS:-5000}" --seed 42 --start "$start" --end "$end" \
  --transactions "$DEMO_DIR/transactions.csv.gz" --customers-file "$DEMO_DIR/customers.csv.gz" | sed 's/^/  /'
"$KUBECTL" create namespace "$NS" >/dev/null
"$KUBECTL" create configmap shop-data -n "$NS" \
  --from-file=transactions.csv.gz="$DEMO_DIR/transactions.csv.gz" --from-file=customers.csv.gz="$DEMO_DIR/customers.csv.gz" >/dev/null

say "applying config/samples in namespace $NS"
"$KUBECTL" apply -n "$NS" -k config/samples

say "a bad manifest is rejected by the API server, naming the field"
cat <<'YAML' | "$KUBECTL" apply -n "$NS" -f - 2>&1 | sed 's/^/  /' || true
apiVersion: retention.dev/v1alpha1
kind: Campaign
metadata: {name: broken}
spec:
  segmentRef: {name: at-risk}
  channelRef: {name: shop-webhook}
  message: {body: hi}
  schedule: "0 9 * *"
  trigger: OnEnter
  holdoutPercent: 80
YAML

"$KUBECTL" wait -n "$NS" --for=condition=Ready --timeout=20s channel/shop-webhook >/dev/null
if ! "$KUBECTL" wait -n "$NS" --for=condition=Ready --timeout=120s customersource/shop >/dev/null; then
  "$KUBECTL" get customersource shop -n "$NS" -o yaml; tail -20 "$DEMO_DIR/operator.log"; exit 1
fi

say "the scored source (kubectl get customersource shop -o jsonpath=...)"
"$KUBECTL" get customersource shop -n "$NS" -o jsonpath='  customers {.status.customers}, transactions {.status.transactions}, snapshot {.status.snapshotID}, scored in {.status.duration}
  model used: {.status.model.selected}
{range .status.model.models[*]}  {.name} ({.period} fit): {.parameters}  log-likelihood {.logLikelihood}  holdout: MAE {.holdoutMAE}, predicted {.holdoutPredicted} vs actual {.holdoutActual} repeat purchases
{end}  spend: {.status.model.spend.name} {.status.model.spend.parameters}
  population: active {.status.population.active}, at risk {.status.population.atRisk}, retention rate {.status.population.retentionRatePercent}% over the last quarter, total expected value {.status.population.totalExpectedValue}
'

say "the sample segments, evaluated on the snapshot (kubectl get segments -o wide)"
"$KUBECTL" wait -n "$NS" --for=condition=Ready --timeout=60s segment --all >/dev/null || true
"$KUBECTL" get segments -n "$NS" -o wide
"$KUBECTL" get segments -n "$NS" -o custom-columns='SEGMENT:.metadata.name,MEMBERS:.status.size,SHARE %:.status.sharePercent,EXPECTED VALUE:.status.expectedValue,SNAPSHOT:.status.snapshotID,RULE:.spec.rule'

say "a dry-run campaign's audience, counted by reason (kubectl get campaignrun win-back-preview-now)"
"$KUBECTL" wait -n "$NS" --for=condition=Ready --timeout=60s campaignrun/win-back-preview-now >/dev/null || true
"$KUBECTL" get campaignrun win-back-preview-now -n "$NS" -o jsonpath='  phase {.status.phase} (dry run: {.status.dryRun}), snapshot {.status.snapshotID}
  audience: {.status.audience.members} members of segment at-risk
    excluded: unreachable {.status.audience.unreachable}, opted out {.status.audience.optedOut}, suppressed {.status.audience.suppressed}, capped {.status.audience.capped}, over maxPerRun {.status.audience.overMax}
    eligible: treatment {.status.audience.treatment}, holdout {.status.audience.holdout}
  what these groups could show: base rate {.status.experiment.baseRatePercent}%, minimum detectable effect {.status.experiment.minimumDetectableEffect} pp at 80% power {.status.experiment.note}
  {.status.conditions[?(@.type=="Ready")].message}
'
"$KUBECTL" get campaigns -n "$NS" -o wide

say "a live run of the win-back campaign, delivered to the local webhook receiver (kubectl get campaignrun win-back-now)"
cat <<'YAML' | "$KUBECTL" apply -n "$NS" -f - | sed 's/^/  /'
apiVersion: retention.dev/v1alpha1
kind: CampaignRun
metadata:
  name: win-back-now
spec:
  campaignRef:
    name: win-back-demo
  scheduledTime: "2026-01-05T08:00:00Z"
---
# win-back without quiet hours, so the demo's run sends at once.
apiVersion: retention.dev/v1alpha1
kind: Campaign
metadata:
  name: win-back-demo
spec:
  segmentRef: {name: at-risk}
  channelRef: {name: shop-webhook}
  message:
    subject: "We miss you"
    body: "Here is 15% off your next order."
    variants:
      - {name: discount}
      - {name: reminder, body: "Your favourites are back in stock."}
  schedule: "0 9 * * 1"
  holdoutPercent: 10
  frequencyCap: {maxContacts: 2, window: 336h}
  suppress: {segments: [{name: unprofitable}]}
  maxPerRun: 2000
  parallelism: 2
  conversionWindow: 168h
YAML
if ! "$KUBECTL" wait -n "$NS" --for=jsonpath='{.status.phase}'=Measuring --timeout=180s campaignrun/win-back-now >/dev/null; then
  "$KUBECTL" get campaignrun win-back-now -n "$NS" -o yaml; tail -20 "$DEMO_DIR/operator.log"; exit 1
fi
"$KUBECTL" get campaignrun win-back-now -n "$NS" -o jsonpath='  phase {.status.phase}, Job {.status.jobRef.namespace}/{.status.jobRef.name}
  audience: {.status.audience.members} members
    excluded: unreachable {.status.audience.unreachable}, opted out {.status.audience.optedOut}, suppressed {.status.audience.suppressed}, capped {.status.audience.capped}, over maxPerRun {.status.audience.overMax}
    held out: {.status.audience.holdout}
    treatment: {.status.audience.treatment} -> sent {.status.delivery.sent}, failed {.status.delivery.failed}, pending {.status.delivery.pending}
  variants:{range .status.variants[*]} {.name}: {.treatment} treatment / {.holdout} held out / {.sent} sent;{end}
'
echo "  the receiver: $(curl -sf http://127.0.0.1:9099/stats)"
echo "  the outreach Job, completed by the Job controller (its pods ran on the kwok nodes):"
"$KUBECTL" get jobs,pods -n default -l app.kubernetes.io/managed-by=retention-operator -o wide | sed 's/^/    /'
"$KUBECTL" get campaignrun win-back-now -n "$NS" -o jsonpath='  before sending, what these groups can show: base rate {.status.experiment.baseRatePercent}% (the purchase model'"'"'s forecast over the 7-day window), minimum detectable effect {.status.experiment.minimumDetectableEffect} pp ({.status.experiment.minimumDetectableLiftPercent}% relative) at 80% power; split vs planned {.status.experiment.plannedHoldoutPercent}% holdout: χ² p = {.status.experiment.sampleRatioPValue} {.status.experiment.note}
'

say "a day of purchases arrives: 8% of all customers buy today, treatment and holdout alike (the demo's messages reach no one); the source scores it and the run measures both groups by intent to treat"
today=$(date -u +%F)
{ zcat "$DEMO_DIR/transactions.csv.gz"
  zcat "$DEMO_DIR/transactions.csv.gz" | tail -n +2 | cut -d, -f1 | sort -u |
    awk -v d="$today" 'BEGIN { srand(7) } rand() < 0.08 { printf "%s,%s,%.2f\n", $1, d, 20 + rand() * 60 }'
} | gzip >"$DEMO_DIR/transactions-today.csv.gz"
"$KUBECTL" create configmap shop-data -n "$NS" --dry-run=client -o yaml \
  --from-file=transactions.csv.gz="$DEMO_DIR/transactions-today.csv.gz" --from-file=customers.csv.gz="$DEMO_DIR/customers.csv.gz" |
  "$KUBECTL" replace -f - >/dev/null
for _ in $(seq 1 90); do
  converted=$("$KUBECTL" get campaignrun win-back-now -n "$NS" -o jsonpath='{.status.measurement.treatment.converted}{.status.measurement.holdout.converted}')
  [[ -n "$converted" && "$converted" != "00" ]] && break
  sleep 2
done
"$KUBECTL" get campaignrun win-back-now -n "$NS" -o jsonpath='  measured snapshot {.status.measurement.snapshotID} (final: {.status.measurement.final}; provisional until the window closes)
    treatment: {.status.measurement.treatment.converted} of {.status.measurement.treatment.customers} converted ({.status.measurement.treatment.ratePercent}%), revenue per customer {.status.measurement.treatment.revenuePerCustomer}
    holdout:   {.status.measurement.holdout.converted} of {.status.measurement.holdout.customers} converted ({.status.measurement.holdout.ratePercent}%), revenue per customer {.status.measurement.holdout.revenuePerCustomer}
    uplift {.status.measurement.uplift.percentagePoints} pp, 95% CI [{.status.measurement.uplift.lower}, {.status.measurement.uplift.upper}] ({.status.measurement.uplift.method}), p = {.status.measurement.uplift.pValue}
    {.status.measurement.verdict}
  per variant:{range .status.variantConversions[*]} {.name}: {.treatment.converted}/{.treatment.customers} vs {.holdout.converted}/{.holdout.customers};{end}
'
"$KUBECTL" get campaign win-back-demo -n "$NS" -o jsonpath='  the campaign over all its measured runs (one run: judged as the run is; more: Mantel–Haenszel): {.status.measurement.verdict}
'

say "the experiment as an analyst reads it: kubectl retention report campaign win-back-demo (--plot FILE.png draws it once runs have an uplift)"
bin/kubectl-retention report campaign win-back-demo -n "$NS" 2>&1 | sed 's/^/  /'

say "a marketer tries a wider at-risk rule on the live snapshot before applying it: kubectl retention preview segment -f"
sed 's/customer.pAlive < 0.5/customer.pAlive < 0.6/' config/samples/segments/at-risk.yaml >"$DEMO_DIR/at-risk-wider.yaml"
bin/kubectl-retention preview segment -f "$DEMO_DIR/at-risk-wider.yaml" -n "$NS" 2>/dev/null | sed 's/^/  /'

say "a customer asks to be forgotten (GDPR Art. 17): kubectl retention erase customer ID --source shop --wait"
erased_id=$(zcat "$DEMO_DIR/transactions.csv.gz" | sed -n 2p | cut -d, -f1)
customers_before=$("$KUBECTL" get customersource shop -n "$NS" -o jsonpath='{.status.customers}')
bin/kubectl-retention erase customer "$erased_id" --source shop -n "$NS" --wait --timeout 2m 2>&1 | sed 's/^/  /'
"$KUBECTL" get customererasure -n "$NS" -o jsonpath='{range .items[*]}  {.metadata.name}: {.status.phase}, {.status.erased.customers} customer: {.status.erased.snapshotRows} snapshot records, {.status.erased.memberships} segment memberships, {.status.erased.targets} run targets ({.status.erased.skippedTargets} still to send, now skipped) kept under tombstone ids; the ids Secret is emptied
{end}'
"$KUBECTL" annotate --overwrite customersource/shop -n "$NS" retention.dev/requestedAt="$(date -u +%FT%TZ)" >/dev/null
"$KUBECTL" wait -n "$NS" --for=jsonpath='{.status.lastHandledReconcileAt}'="$("$KUBECTL" get customersource shop -n "$NS" -o jsonpath='{.metadata.annotations.retention\.dev/requestedAt}')" --timeout=120s customersource/shop >/dev/null || true
echo "  rescored from the same data: $customers_before customers before, $("$KUBECTL" get customersource shop -n "$NS" -o jsonpath='{.status.customers}') after (the tombstone keeps the erased one out)"

say "what Prometheus scrapes (curl http://$METRICS_ADDR/metrics | grep ^retention_)"
curl -sf "http://$METRICS_ADDR/metrics" | grep -E '^retention_(source_(customers|transactions|customers_by_risk|retention_rate_ratio|expected_value|scoring_interval_seconds)|segment_size|campaign_(audience_total|messages_total|conversions_total|conversion_ratio|uplift_ratio|uplift_lower_ratio|uplift_upper_ratio|mde_ratio|sample_ratio_p_value|runs)[{ ])' | grep -v ' 0$' | sed 's/^/  /' || echo "  (metrics endpoint not reachable)"

say "kubectl get retention -n $NS"
"$KUBECTL" get retention -n "$NS"

say "why each object is (not yet) Ready"
"$KUBECTL" get retention -n "$NS" -o custom-columns='KIND:.kind,NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status,REASON:.status.conditions[?(@.type=="Ready")].reason,MESSAGE:.status.conditions[?(@.type=="Ready")].message'

say "kubectl explain customersource.spec.scoring"
"$KUBECTL" explain customersource.spec.scoring | sed -n '1,40p'

say "the holdout plot: each model's forecast of the last quarter's purchases against what customers did (retention-operator score --model auto --plot)"
bin/retention-operator score --csv "$DEMO_DIR/transactions.csv.gz" --model auto --plot "$DEMO_DIR/holdout.png" >/dev/null 2>&1 &&
  echo "  written to $DEMO_DIR/holdout.png" || echo "  (the plot could not be drawn)"

say "look further (everything keeps running until Ctrl-C)"
cat <<EOT
  export KUBECONFIG=$KUBECONFIG
  $KUBECTL get retention -n $NS                        # every source, segment, channel, campaign and run
  $KUBECTL describe campaignrun win-back-now -n $NS    # a run's audience, delivery, experiment and measurement, with Events
  bin/kubectl-retention get segments -n $NS            # the kubectl plugin (make install-plugin puts it on the PATH as kubectl retention)
  bin/kubectl-retention status campaign win-back -n $NS # a campaign, its segment, channel, runs and Events in one view
  bin/kubectl-retention get segments -A --status-selector 'Ready!=True'   # what is not Ready (flux's filter)
  bin/kubectl-retention run campaign win-back-demo -n $NS --wait   # an ad-hoc run; the exit code says how it ended
  bin/kubectl-retention report campaign win-back-demo -n $NS --plot uplift.png   # the experiment per run and pooled, and its plot
  bin/kubectl-retention preview segment -f my-segment.yaml -n $NS   # a rule on the live snapshot before applying it
  bin/kubectl-retention abort run NAME -n $NS          # stop an active run; retry run NAME sends a failed one's unsent shards
  bin/kubectl-retention erase customer ID --source shop -n $NS --wait   # forget a customer (docs/privacy.md)
  $KUBECTL get jobs,pods -n default                    # the outreach Job and its pods
  curl -s http://$METRICS_ADDR/metrics | grep ^retention_   # what Prometheus scrapes
  curl -s http://127.0.0.1:9099/stats                   # what the webhook receiver got (its log: $DEMO_DIR/sink.log)
  less $DEMO_DIR/operator.log                           # the operator's log; the pods' output is in $DEMO_DIR/cluster/pods.log
  xdg-open $DEMO_DIR/holdout.png                        # the holdout plot
EOT
if [[ "${DEMO_EXIT:-}" != 1 ]]; then
  echo "Press Ctrl-C to stop every process and remove $DEMO_DIR."
  trap 'exit 0' INT TERM
  while :; do sleep 3600 & wait $!; done
fi
