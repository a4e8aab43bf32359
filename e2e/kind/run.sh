#!/usr/bin/env bash
# `make e2e-kind`: the same end-to-end tests on a kind cluster, for machines with Docker.
# KWOK runs inside the cluster and animates the fake GPU nodes the tests create, exactly as the
# local fleet's kwok-controller does. Needs docker, kind and network access to fetch KWOK's
# release manifests; the cluster is deleted afterwards unless KEEP=1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
source "$repo/e2e/testbed/versions.env"
name=${KIND_CLUSTER:-frugal-e2e}
kubeconfig=${KUBECONFIG_OUT:-$repo/.testbed/kind-kubeconfig}
command -v kind >/dev/null || { echo "e2e-kind needs kind (https://kind.sigs.k8s.io)"; exit 1; }
docker info >/dev/null 2>&1 || { echo "e2e-kind needs a running Docker engine"; exit 1; }
mkdir -p "$(dirname "$kubeconfig")"
kind get clusters | grep -qx "$name" || kind create cluster --name "$name" --kubeconfig "$kubeconfig"
cleanup() { [ "${KEEP:-0}" = 1 ] || kind delete cluster --name "$name"; }
trap cleanup EXIT
release="https://github.com/kubernetes-sigs/kwok/releases/download/$KWOK_VERSION"
kubectl --kubeconfig "$kubeconfig" apply -f "$release/kwok.yaml"
kubectl --kubeconfig "$kubeconfig" apply -f "$release/stage-fast.yaml"
kubectl --kubeconfig "$kubeconfig" -n kube-system rollout status deployment/kwok-controller --timeout=180s
FRUGAL_E2E_KUBECONFIG="$kubeconfig" "$repo/.venv/bin/pytest" "$repo/e2e" -m fleet -k "not demo" "$@"
