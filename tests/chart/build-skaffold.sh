#!/usr/bin/env bash
# Builds skaffold from its Go module once per machine, cached as $VOXFLEET_BIN_DIR/skaffold-<version>.
# Optional: only the skaffold checks in tests/chart use it, and they skip when it is absent (a cold build is
# several minutes on 2 cores, so CI does not run this). Usage: tests/chart/build-skaffold.sh
# skaffold's go.mod has replace directives, so `go install module@version` refuses it: build it from a wrapper
# module that requires skaffold and repeats its replaces (the same trick world/build-servers.sh uses for k8s).
set -euo pipefail

SKAFFOLD_VERSION=${SKAFFOLD_VERSION:-v2.24.0}
BIN_DIR=${VOXFLEET_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/voxfleet/bin}
WORK_DIR=${VOXFLEET_BUILD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/voxfleet/build}/skaffold-$SKAFFOLD_VERSION
OUT=$BIN_DIR/skaffold-$SKAFFOLD_VERSION
MODULE=github.com/GoogleContainerTools/skaffold/v2

if [ -x "$OUT" ]; then echo "skaffold $SKAFFOLD_VERSION: cached at $OUT" >&2; exit 0; fi
command -v go >/dev/null || { echo "build-skaffold: Go is not installed" >&2; exit 3; }
mkdir -p "$BIN_DIR" "$WORK_DIR"
start=$(date +%s)
if [ ! -f "$WORK_DIR/.ready" ]; then
  rm -rf "$WORK_DIR"; mkdir -p "$WORK_DIR"
  gomod=$(cd "$WORK_DIR" && go mod download -json "$MODULE@$SKAFFOLD_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module voxfleet.dev/skaffold-wrapper"
    echo "go $(sed -n 's/^go //p' "$gomod")"
    echo "require $MODULE $SKAFFOLD_VERSION"
    grep -E '^replace ' "$gomod"
  } > "$WORK_DIR/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s/cmd/skaffold"\n' "$MODULE" > "$WORK_DIR/tools.go"
  (cd "$WORK_DIR" && go mod tidy >&2)
  touch "$WORK_DIR/.ready"
fi
(cd "$WORK_DIR" && CGO_ENABLED=0 go build -trimpath -tags "timetzdata osusergo netgo release" \
  -ldflags "-s -w -X $MODULE/pkg/skaffold/version.version=$SKAFFOLD_VERSION" -o "$OUT.tmp" "$MODULE/cmd/skaffold")
mv "$OUT.tmp" "$OUT"
echo "skaffold $SKAFFOLD_VERSION: built in $(( $(date +%s) - start )) s -> $OUT" >&2
