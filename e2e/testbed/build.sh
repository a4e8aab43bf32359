#!/usr/bin/env bash
# Builds the testbed's control-plane binaries from Go modules at the versions pinned in
# versions.env, into a cache outside the repository keyed by component and version:
#
#   ${FRUGAL_CACHE:-~/.cache/frugal}/testbed/<component>-<version>/bin/
#
# A component whose cache already holds its binaries is skipped, so only a version change
# rebuilds. Each component is built in a generated wrapper module (no source is vendored into
# the repository): Kubernetes needs one because k8s.io/kubernetes replaces its staging modules
# with local paths, which a consumer must re-point at the published k8s.io/* v0.X.Y modules.
#
# usage: build.sh [kubernetes|etcd|kwok|helm ...]   (default: all)
#        build.sh --print-bin-dir COMPONENT          (where that component's binaries live)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache_root=${FRUGAL_CACHE:-$HOME/.cache/frugal}/testbed
export CGO_ENABLED=0 GOFLAGS="-mod=mod -trimpath" GOTOOLCHAIN=local

version_of() {
  case "$1" in
    kubernetes) echo "$KUBE_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    *) echo "unknown component: $1" >&2; return 2 ;;
  esac
}

binaries_of() {
  case "$1" in
    kubernetes) echo "kube-apiserver kube-controller-manager kube-scheduler kubectl" ;;
    etcd) echo "etcd" ;;
    kwok) echo "kwok kwokctl" ;;
    helm) echo "helm" ;;
  esac
}

bin_dir() { echo "$cache_root/$1-$(version_of "$1")/bin"; }

is_built() {
  local b
  for b in $(binaries_of "$1"); do [ -x "$(bin_dir "$1")/$b" ] || return 1; done
}

# new_module DIR MODULE_PATH: an empty wrapper module to build dependencies from.
new_module() {
  rm -rf "$1" && mkdir -p "$1"
  printf 'module %s\n\ngo %s\n' "$2" "$(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')" >"$1/go.mod"
}

build_kubernetes() {
  local src=$1 out=$2 v=$KUBE_VERSION staging minor
  new_module "$src" frugal.dev/testbed/kubernetes
  # The staging modules k8s.io/kubernetes points at ./staging/src/...; re-point each at its release.
  go mod download -json "k8s.io/kubernetes@$v" >"$src/download.json"
  staging=$(sed -nE 's#^\s*(k8s\.io/[a-z0-9-]+) => \./staging/src/.*#\1#p' \
    "$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$v.mod")
  (
    cd "$src"
    go mod edit -require="k8s.io/kubernetes@$v"
    for m in $staging; do go mod edit -replace="$m=$m@v0.${v#v1.}"; done
  )
  minor=$(echo "$v" | cut -d. -f2)
  local x="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    x+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$src" && go build -ldflags="-s -w $x" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl)
}

build_etcd() {
  local src=$1 out=$2 v=$ETCD_VERSION
  new_module "$src" frugal.dev/testbed/etcd
  (cd "$src" && go mod edit -require="go.etcd.io/etcd/server/v3@$v" &&
    go build -ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$v" -o "$out/etcd" \
      go.etcd.io/etcd/server/v3)
}

build_kwok() {
  local src=$1 out=$2 v=$KWOK_VERSION
  new_module "$src" frugal.dev/testbed/kwok
  (cd "$src" && go mod edit -require="sigs.k8s.io/kwok@$v" &&
    go build -ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${v#v}" -o "$out/" \
      sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl)
}

build_helm() {
  local src=$1 out=$2 v=$HELM_VERSION
  new_module "$src" frugal.dev/testbed/helm
  (cd "$src" && go mod edit -require="helm.sh/helm/v3@$v" &&
    go build -ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$v" -o "$out/helm" \
      helm.sh/helm/v3/cmd/helm)
}

build() {
  local c=$1 dir out start
  if is_built "$c"; then echo "testbed: $c $(version_of "$c") cached in $(bin_dir "$c")"; return; fi
  dir="$cache_root/$c-$(version_of "$c")"
  out="$dir/bin.partial"
  rm -rf "$out" && mkdir -p "$out"
  start=$(date +%s)
  echo "testbed: building $c $(version_of "$c") (first time only) ..."
  "build_$c" "$dir/src" "$out"
  rm -rf "$dir/bin" && mv "$out" "$dir/bin"
  echo "testbed: built $c in $(($(date +%s) - start)) s -> $dir/bin"
}

if [ "${1:-}" = "--print-bin-dir" ]; then bin_dir "$2"; exit 0; fi
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(kubernetes etcd kwok helm)
for c in "${components[@]}"; do build "$c"; done
