#!/usr/bin/env bash
# Builds the real servers the test world runs, from their Go modules, once per machine.
# Each binary is cached as $VOXFLEET_BIN_DIR/<name>-<version>; a cached one is never rebuilt.
# Usage: build-servers.sh [name ...]   (default: all). Names: etcd kube-apiserver kube-controller-manager
#        kube-scheduler kubectl livekit-server kwok helm prometheus promtool otelcol
#        build-servers.sh --versions    prints "name version" for every server (the cache names' versions)
# Progress goes to stderr, one line per server (cached / building / built in N s).
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
LIVEKIT_VERSION=${LIVEKIT_VERSION:-v1.13.5}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-v0.316.0}  # the Go module version of Prometheus v3.16.0
PROMETHEUS_BUILD_TAGS=remove_all_sd,enable_kubernetes_sd
# The collector is our own wrapper module (world/otelcol: go.mod pins every collector module at this one release);
# bump this when its go.mod or main.go changes, or the cached binary is reused.
OTELCOL_VERSION=${OTELCOL_VERSION:-v0.161.0}
OTELCOL_MODULE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/otelcol" && pwd)
BIN_DIR=${VOXFLEET_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/voxfleet/bin}
WORK_DIR=${VOXFLEET_BUILD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/voxfleet/build}

log() { printf '[build-servers %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

version_of() {
  case "$1" in
    etcd) echo "$ETCD_VERSION" ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl) echo "$K8S_VERSION" ;;
    livekit-server) echo "$LIVEKIT_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    prometheus|promtool) echo "$PROMETHEUS_VERSION" ;;
    otelcol) echo "$OTELCOL_VERSION" ;;
    *) echo "unknown server: $1" >&2; exit 2 ;;
  esac
}

# go install into a private GOBIN, then move into the versioned cache name atomically.
go_install() {  # name module@version binary [go install flags ...]
  local name=$1 mod=$2 bin=$3 tmp
  shift 3
  tmp=$(mktemp -d "$WORK_DIR/gobin.XXXX")
  GOBIN="$tmp" go install "$@" "$mod"
  mv "$tmp/$bin" "$BIN_DIR/$name-$(version_of "$name")"
  rm -rf "$tmp"
}

k8s_wrapper() {  # a module that requires k/k and pins every staging module k/k replaces
  local dir="$WORK_DIR/k8s-$K8S_VERSION" staging_version
  staging_version="v0.${K8S_VERSION#v1.}"
  if [ ! -f "$dir/.ready" ]; then
    rm -rf "$dir"; mkdir -p "$dir"
    local kkmod
    kkmod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    {
      echo "module voxfleet.dev/k8s-wrapper"
      echo "go $(sed -n 's/^go //p' "$kkmod")"
      echo "require k8s.io/kubernetes $K8S_VERSION"
      grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$kkmod" | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
    } > "$dir/go.mod"
    cat > "$dir/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    (cd "$dir" && go mod tidy >&2)
    touch "$dir/.ready"
  fi
  echo "$dir"
}

etcd_wrapper() {
  local dir="$WORK_DIR/etcd-$ETCD_VERSION"
  if [ ! -f "$dir/.ready" ]; then
    rm -rf "$dir"; mkdir -p "$dir"
    cat > "$dir/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
    (cd "$dir" && go mod init voxfleet.dev/etcd-wrapper >&2 && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2 && go mod tidy >&2)
    touch "$dir/.ready"
  fi
  echo "$dir"
}

build_one() {
  local name=$1 version out start
  version=$(version_of "$name")
  out="$BIN_DIR/$name-$version"
  if [ -x "$out" ]; then log "$name $version: cached at $out"; return; fi
  start=$(date +%s)
  log "$name $version: building (first time on this machine; cached afterwards) ..."
  # A Go build prints nothing for minutes: say every minute that it is still going, so it doesn't look hung.
  ( while sleep 60; do log "$name $version: still building ($(( $(date +%s) - start )) s) ..."; done ) &
  TICKER=$!
  case "$name" in
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl)
      local dir; dir=$(k8s_wrapper)
      (cd "$dir" && go build -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION" \
        -o "$out.tmp" "k8s.io/kubernetes/cmd/$name")
      mv "$out.tmp" "$out" ;;
    etcd)
      local dir; dir=$(etcd_wrapper)
      (cd "$dir" && go build -ldflags "-s -w" -o "$out.tmp" .)
      mv "$out.tmp" "$out" ;;
    livekit-server) go_install "$name" "github.com/livekit/livekit-server/cmd/server@$version" server ;;
    kwok) go_install "$name" "sigs.k8s.io/kwok/cmd/kwok@$version" kwok ;;
    helm) go_install "$name" "helm.sh/helm/v3/cmd/helm@$version" helm ;;
    prometheus|promtool)
      # v0.3XY.Z is Prometheus vX.Y.Z (v0.316.0 = 3.16.0): stamp that so /api/v1/status/buildinfo says it.
      # Upstream's plugin build tags keep only the Kubernetes service discovery (plus the built-in static, file
      # and http): the cloud providers' SDKs (AWS, Azure, GCE ...) were most of a much longer build, unused here.
      local release="${version#v0.}"; release="${release:0:1}.${release:1}"
      go_install "$name" "github.com/prometheus/prometheus/cmd/$name@$version" "$name" \
        -tags "$PROMETHEUS_BUILD_TAGS" -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release" ;;
    otelcol)  # -buildvcs=false: the binary must not depend on which commit of this repo built it
      (cd "$OTELCOL_MODULE_DIR" && go build -buildvcs=false -ldflags "-s -w" -o "$out.tmp" .)
      mv "$out.tmp" "$out" ;;
  esac
  stop_ticker
  log "$name $version: built in $(( $(date +%s) - start )) s -> $out"
}

TICKER=
stop_ticker() {
  if [ -n "$TICKER" ]; then kill "$TICKER" 2>/dev/null || true; wait "$TICKER" 2>/dev/null || true; TICKER=; fi
}
trap stop_ticker EXIT  # a failed build (set -e) must not leave the ticker talking

ALL=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl livekit-server kwok helm
     prometheus promtool otelcol)
if [ "${1:-}" = "--versions" ]; then  # tests/world/test_telemetry_servers.py compares these with binaries.py
  for n in "${ALL[@]}"; do echo "$n $(version_of "$n")"; done
  exit 0
fi
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")
if ! command -v go >/dev/null 2>&1; then
  echo "build-servers: Go is not installed. Install Go 1.26+ (https://go.dev/dl) or put prebuilt" >&2
  echo "  binaries on PATH / name them with VOXFLEET_<NAME>_BIN (e.g. VOXFLEET_KUBE_APISERVER_BIN)." >&2
  exit 3
fi
mkdir -p "$BIN_DIR" "$WORK_DIR"
export GOFLAGS="${GOFLAGS:-} -trimpath"

# One build at a time per cache (two terminals, two test runs): the second waits, then finds the binaries cached.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$BIN_DIR/.build.lock"
  if ! flock -n 9; then
    log "another build-servers.sh is running; waiting for it ..."
    flock 9
  fi
fi

total_start=$(date +%s)
for n in "${names[@]}"; do build_one "$n"; done
log "${#names[@]} server(s) ready in $BIN_DIR ($(( $(date +%s) - total_start )) s)"
