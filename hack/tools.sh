#!/usr/bin/env bash
# tools.sh installs every tool the project needs, pinned, into a cache outside
# the repository. It is idempotent: a tool whose stamp matches its pinned
# version is not rebuilt, so a second run is a no-op.
#
# Usage: hack/tools.sh [all|controller-gen|etcd|kube|kwok|helm|kubeconform|monitoring-crds|debian]
set -euo pipefail

TOOLS_DIR="${RETENTION_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/retention-operator/tools}"
BIN="$TOOLS_DIR/bin"
mkdir -p "$BIN"

CONTROLLER_TOOLS_VERSION=v0.23.0
ETCD_VERSION=v3.6.16
KUBE_VERSION=v1.37.2
KUBE_STAGING_VERSION=v0.37.2
KWOK_VERSION=v0.8.0
HELM_VERSION=v4.3.2
KUBECONFORM_VERSION=v0.8.0
# The Prometheus Operator's API types: their CRDs are generated here with
# controller-gen, as the Prometheus Operator generates its own, for the
# chart's server-side dry run (test/chart).
PROMETHEUS_OPERATOR_VERSION=v0.95.2

log() { printf '[tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# stamp_ok NAME VERSION: the tool NAME was built at VERSION and its binaries exist.
stamp_ok() { [[ -f "$TOOLS_DIR/.stamp-$1" && "$(cat "$TOOLS_DIR/.stamp-$1")" == "$2" ]]; }
stamp() { echo "$2" >"$TOOLS_DIR/.stamp-$1"; }

controller_gen() {
  if stamp_ok controller-gen "$CONTROLLER_TOOLS_VERSION" && [[ -x "$BIN/controller-gen" ]]; then return; fi
  log "installing controller-gen $CONTROLLER_TOOLS_VERSION"
  GOBIN="$BIN" GOFLAGS= go install "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_TOOLS_VERSION"
  stamp controller-gen "$CONTROLLER_TOOLS_VERSION"
}

# etcd's server module carries replace directives, so `go install` refuses it;
# a two-line wrapper module that requires it builds the same binary.
etcd() {
  if stamp_ok etcd "$ETCD_VERSION" && [[ -x "$BIN/etcd" ]]; then return; fi
  log "building etcd $ETCD_VERSION from go.etcd.io/etcd/server/v3"
  local w="$TOOLS_DIR/src/etcd-$ETCD_VERSION"
  mkdir -p "$w"
  cat >"$w/main.go" <<'GO'
// Command etcd is go.etcd.io/etcd/server/v3's etcdmain, built outside its repository.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$w" && rm -f go.mod go.sum && GOFLAGS= go mod init retention.dev/tools/etcd >/dev/null 2>&1 \
    && GOFLAGS= go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1 \
    && GOFLAGS= go mod tidy >/dev/null 2>&1 \
    && GOFLAGS= CGO_ENABLED=0 go build -trimpath -o "$BIN/etcd" .)
  stamp etcd "$ETCD_VERSION"
}

# k8s.io/kubernetes replaces each k8s.io/<staging> module with a path inside
# its own repository; a wrapper module points each at its published version.
kube() {
  local want="$KUBE_VERSION"
  if stamp_ok kube "$want" && [[ -x "$BIN/kube-apiserver" && -x "$BIN/kubectl" && -x "$BIN/kube-controller-manager" && -x "$BIN/kube-scheduler" ]]; then return; fi
  local w="$TOOLS_DIR/src/kubernetes-$KUBE_VERSION"
  mkdir -p "$w"
  log "preparing wrapper module for k8s.io/kubernetes $KUBE_VERSION"
  local kmod
  kmod=$(cd "$w" && GOFLAGS= go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  {
    echo "module retention.dev/tools/kubernetes"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//')"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/[a-z0-9-]*$#\t\1 => \1 '"$KUBE_STAGING_VERSION"'#p' "$kmod"
    echo ")"
  } >"$w/go.mod"
  log "$(grep -c '=>' "$w/go.mod") staging modules pinned to $KUBE_STAGING_VERSION"
  cat >"$w/tools.go" <<'GO'
//go:build tools

// Package tools only anchors the wrapper module.
package tools
GO
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 -X k8s.io/component-base/version.gitTreeState=clean"
  local cmd
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    if [[ -x "$BIN/$cmd" ]] && "$BIN/$cmd" --version 2>/dev/null | grep -q "$KUBE_VERSION" ; then continue; fi
    if [[ "$cmd" == kubectl && -x "$BIN/kubectl" ]] && "$BIN/kubectl" version --client 2>/dev/null | grep -q "$KUBE_VERSION"; then continue; fi
    log "building $cmd $KUBE_VERSION (several minutes cold on 2 cores)"
    (cd "$w" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$BIN/$cmd" "k8s.io/kubernetes/cmd/$cmd")
    log "built $cmd"
  done
  stamp kube "$want"
}

# kwok: fake nodes whose pods run through the stages shipped in its module.
kwok() {
  if stamp_ok kwok "$KWOK_VERSION" && [[ -x "$BIN/kwok" && -d "$TOOLS_DIR/kwok-stages" ]]; then return; fi
  log "installing kwok $KWOK_VERSION"
  GOBIN="$BIN" GOFLAGS= CGO_ENABLED=0 go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  local dir
  dir=$(cd "$TOOLS_DIR" && GOFLAGS= go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  rm -rf "$TOOLS_DIR/kwok-stages" && mkdir -p "$TOOLS_DIR/kwok-stages"
  cp -r "$dir/kustomize/stage/." "$TOOLS_DIR/kwok-stages/"
  chmod -R u+w "$TOOLS_DIR/kwok-stages"
  stamp kwok "$KWOK_VERSION"
}

# helm, for the chart's lint, template and tests (make test-chart). Built
# outside this module, like controller-gen.
helm() {
  if stamp_ok helm "$HELM_VERSION" && [[ -x "$BIN/helm" ]]; then return; fi
  log "installing helm $HELM_VERSION (a few minutes cold on 2 cores)"
  GOBIN="$BIN" GOFLAGS= CGO_ENABLED=0 go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  stamp helm "$HELM_VERSION"
}

# kubeconform, which test/chart runs -strict on the chart's custom
# resources with JSON schemas made from the CRDs (it cannot download the
# built-in kinds' schemas here: those are checked by a server-side dry run).
kubeconform() {
  if stamp_ok kubeconform "$KUBECONFORM_VERSION" && [[ -x "$BIN/kubeconform" ]]; then return; fi
  log "installing kubeconform $KUBECONFORM_VERSION"
  GOBIN="$BIN" GOFLAGS= CGO_ENABLED=0 go install -trimpath -ldflags "-s -w -X main.version=$KUBECONFORM_VERSION" \
    "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  stamp kubeconform "$KUBECONFORM_VERSION"
}

# The ServiceMonitor, PodMonitor and PrometheusRule CRDs, generated by
# controller-gen from the Prometheus Operator's Go API types (the module
# github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring),
# as that project generates the CRDs it publishes, into
# $TOOLS_DIR/crds/monitoring.coreos.com. No network beyond the Go module
# proxy: its published YAML is on GitHub, which this machine cannot reach.
monitoring_crds() {
  local out="$TOOLS_DIR/crds/monitoring.coreos.com"
  if stamp_ok monitoring-crds "$PROMETHEUS_OPERATOR_VERSION" && [[ -f "$out/monitoring.coreos.com_servicemonitors.yaml" ]]; then return; fi
  controller_gen
  log "generating the monitoring.coreos.com CRDs of prometheus-operator $PROMETHEUS_OPERATOR_VERSION"
  local w="$TOOLS_DIR/src/prometheus-operator-crds-$PROMETHEUS_OPERATOR_VERSION"
  local mod=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring
  mkdir -p "$w"
  cat >"$w/tools.go" <<'GO'
//go:build tools

// Package tools only anchors the wrapper module.
package tools

import _ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
GO
  (cd "$w" && rm -f go.mod go.sum && GOFLAGS= go mod init retention.dev/tools/monitoring-crds >/dev/null 2>&1 \
    && GOFLAGS= go get "$mod@$PROMETHEUS_OPERATOR_VERSION" >/dev/null 2>&1 \
    && GOFLAGS= go mod tidy >/dev/null 2>&1)
  rm -rf "$w/out" "$out" && mkdir -p "$out"
  (cd "$w" && GOFLAGS= "$BIN/controller-gen" crd:crdVersions=v1,maxDescLen=0 paths="$mod/v1" output:crd:dir="$w/out")
  local kind
  for kind in servicemonitors podmonitors prometheusrules; do
    cp "$w/out/monitoring.coreos.com_$kind.yaml" "$out/"
  done
  stamp monitoring-crds "$PROMETHEUS_OPERATOR_VERSION"
}

# PostgreSQL (server binaries) and Prometheus (+promtool) from Debian's packages.
debian() {
  local need=()
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)
  if ((${#need[@]} == 0)); then return; fi
  log "installing from Debian's packages: ${need[*]}"
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian starts a cluster and a Prometheus service; the project starts its own.
  $sudo service postgresql stop >/dev/null 2>&1 || true
  $sudo service prometheus stop >/dev/null 2>&1 || true
}

what="${1:-all}"
case "$what" in
  all) debian; controller_gen; etcd; kwok; kube; helm; kubeconform; monitoring_crds ;;
  controller-gen) controller_gen ;;
  etcd) etcd ;;
  kube) kube ;;
  kwok) kwok ;;
  helm) helm ;;
  kubeconform) kubeconform ;;
  monitoring-crds) monitoring_crds ;;
  debian) debian ;;
  dir) echo "$TOOLS_DIR" ;;
  *) echo "unknown tool $what" >&2; exit 2 ;;
esac
