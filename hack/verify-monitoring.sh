#!/usr/bin/env bash
# verify-monitoring.sh fails when the generated monitoring files differ
# from what `make monitoring` makes of their sources (the PrometheusRule
# from the rules file, the Grafana dashboard from hack/gen-dashboard), or
# when config/prometheus or config/grafana does not build with kustomize.
#
# Usage: hack/verify-monitoring.sh [KUBECTL]
set -euo pipefail
cd "$(dirname "$0")/.."
kubectl="${1:-kubectl}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail=0
hack/gen-prometheusrule.sh "$tmp/prometheusrule.yaml"
diff -u config/prometheus/prometheusrule.yaml "$tmp/prometheusrule.yaml" || fail=1
go run ./hack/gen-dashboard -o "$tmp/retention-operator.json"
diff -u config/grafana/retention-operator.json "$tmp/retention-operator.json" || fail=1
if ((fail)); then
  echo "generated monitoring files are out of date: run 'make monitoring' and commit the result" >&2
fi

if ! command -v "$kubectl" >/dev/null 2>&1; then
  echo "kubectl ($kubectl) not found: run 'make tools'" >&2
  exit 1
fi
for dir in config/prometheus config/grafana; do
  if ! "$kubectl" kustomize "$dir" >"$tmp/build.yaml"; then
    echo "kustomize build of $dir failed" >&2
    fail=1
  fi
done
if ((fail)); then
  exit 1
fi
echo "monitoring files are up to date"
