#!/usr/bin/env bash
# tools.sh installs every tool the project needs, pinned, into a cache outside
# the repository. It is idempotent: a tool whose stamp matches its pinned
# version is not rebuilt, so a second run is a no-op.
#
# Usage: hack/tools.sh [all|controller-gen|etcd|kube|kwok|debian]
set -euo pipefail

TOOLS_DIR="${RETENTION_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/retention-operator/tools}"
BIN="$TOOLS_DIR/bin"
mkdir -p "$BIN"

CONTROLLER_TOOLS_VERSION=v0.23.0
ETCD_VERSION=v3.6.16
KUBE_VERSION=v1.37.2
KUBE_STAGING_VERSION=v0.37.2
KWOK_VERSION=v0.8.0

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
  all) debian; controller_gen; etcd; kwok; kube ;;
  controller-gen) controller_gen ;;
  etcd) etcd ;;
  kube) kube ;;
  kwok) kwok ;;
  debian) debian ;;
  dir) echo "$TOOLS_DIR" ;;
  *) echo "unknown tool $what" >&2; exit 2 ;;
esac
