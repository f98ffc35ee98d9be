#!/usr/bin/env bash
# scale.sh runs the scale scenario of issue #19 (test/e2e/scale_test.go,
# build tag scale): one CSV source of 1,000,000 customers, 200 Segments, 100
# Campaigns of which 25 run at once with 20 shards each, on the local
# simulated cluster of the end-to-end tier. It measures the time from a
# snapshot until every Segment is current, the operator's peak RSS and CPU
# per phase, its reconcile latency percentiles, and API requests per minute
# by verb in steady state (the operator's own and kube-apiserver's), and
# fails if the operator writes to the API server in steady state or its
# RSS exceeds 1 GiB.
#
# It takes about 10-20 minutes on a 2-core machine; run it when nothing
# else is running (check `uptime`): figures taken under contention mislead.
#
# Usage: hack/scale.sh
#   SCALE_FIGURES  where the figures go as JSON
#                  (default: /tmp/retention-scale/figures-<UTC time>.json)
#   The test's output is also kept in the same directory (scale-test.log).
set -euo pipefail
cd "$(dirname "$0")/.."

tools_dir=$(hack/tools.sh dir)
export KUBEBUILDER_ASSETS="${KUBEBUILDER_ASSETS:-$tools_dir/bin}"
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kwok kubectl; do
  if [[ ! -x "$KUBEBUILDER_ASSETS/$b" ]]; then
    echo "scale.sh: $KUBEBUILDER_ASSETS/$b is missing: run \`make tools\`" >&2
    exit 1
  fi
done

out_dir=/tmp/retention-scale
mkdir -p "$out_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
export SCALE_FIGURES="${SCALE_FIGURES:-$out_dir/figures-$stamp.json}"
log="$out_dir/scale-test-$stamp.log"

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"
status=0
go test -tags scale -count=1 -v -timeout 60m -run '^TestScale$' ./test/e2e/ 2>&1 | tee "$log" || status=$?
echo
echo "== figures"
grep -h 'FIGURE' "$log" | sed 's/^ *scale_test.go:[0-9]*: //' || true
echo
echo "figures: $SCALE_FIGURES"
echo "log:     $log"
exit "$status"
