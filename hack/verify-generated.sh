#!/usr/bin/env bash
# verify-generated.sh fails when the checked-in CRDs, RBAC or deepcopy
# functions differ from what controller-gen makes of the markers, or when
# the Helm chart's generated files differ from what hack/gen-chart makes of
# config/ (the CRDs, the RBAC rules, the Prometheus rules, the dashboard).
set -euo pipefail
cg="$1"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$cg" rbac:roleName=manager-role crd paths="./api/...;./controllers/..." \
  output:crd:artifacts:config="$tmp/crd" output:rbac:artifacts:config="$tmp/rbac"
fail=0
diff -ru config/crd/bases "$tmp/crd" || fail=1
diff -u config/rbac/role.yaml "$tmp/rbac/role.yaml" || fail=1
cp api/v1alpha1/zz_generated.deepcopy.go "$tmp/deepcopy.go"
"$cg" object:headerFile=hack/boilerplate.go.txt paths="./api/..."
if ! diff -u "$tmp/deepcopy.go" api/v1alpha1/zz_generated.deepcopy.go; then
  cp "$tmp/deepcopy.go" api/v1alpha1/zz_generated.deepcopy.go
  fail=1
fi
go run ./hack/gen-chart -check || fail=1
if ((fail)); then
  echo "generated files are out of date: run 'make manifests generate' and commit the result" >&2
  exit 1
fi
echo "generated files are up to date"
