#!/usr/bin/env bash
# Fetches Karpenter's CRDs from its Go modules, at pinned versions, into a cache outside the
# repository keyed by version (the CRDs are never committed):
#
#   ${FRUGAL_CACHE:-~/.cache/frugal}/karpenter-<aws provider version>/
#     crds/        github.com/aws/karpenter-provider-aws pkg/apis/crds/*.yaml — what an EKS
#                  cluster installs (the karpenter-crd chart): karpenter.sh NodePool, NodeClaim,
#                  NodeOverlay with the AWS provider's extra CEL rules, and EC2NodeClass
#     core-crds/   sigs.k8s.io/karpenter pkg/apis/crds/*.yaml — the provider-neutral originals
#     SOURCES      module versions and go.sum hashes the files came from
#
# Modules come through the Go module proxy (`go mod download`, checksums verified against the
# checksum database as usual). A cache that holds the CRDs is reused, so only a version change
# downloads anything.
#
# usage: karpenter-crds.sh                 (fetch if missing; prints the crds/ folder)
#        karpenter-crds.sh --print-dir     (where the crds/ folder lives, without fetching)
set -euo pipefail

# Karpenter v1.14.1: karpenter.sh/v1 and karpenter.k8s.aws/v1, reserved capacity (capacity type
# "reserved", EC2NodeClass capacityReservationSelectorTerms; feature gate ReservedCapacity is
# beta and on by default) and do-not-disrupt durations. The newest release whose go directive
# (go 1.26.6) the testbed's Go toolchain (1.26.8, GOTOOLCHAIN=local) accepts; v1.14.2 and later
# need go >= 1.26.9. The AWS provider v1.14.1 requires a pre-release commit of the core
# (v1.14.1-0.20260819221709-6e7eab7a0f48) that the proxy does not serve; its own
# karpenter.sh CRDs are generated from that commit, and the core's v1.14.1 tag is kept beside
# them for reference.
KARPENTER_AWS_VERSION=${KARPENTER_AWS_VERSION:-v1.14.1}
KARPENTER_CORE_VERSION=${KARPENTER_CORE_VERSION:-v1.14.1}

root=${FRUGAL_CACHE:-$HOME/.cache/frugal}/karpenter-$KARPENTER_AWS_VERSION
if [ "${1:-}" = "--print-dir" ]; then echo "$root/crds"; exit 0; fi
if ls "$root"/crds/*.yaml >/dev/null 2>&1 && [ -f "$root/SOURCES" ]; then
  echo "$root/crds"
  exit 0
fi

export GOFLAGS=-mod=mod GOTOOLCHAIN=local
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# download MODULE VERSION: the module's folder in the module cache (fails on any error).
download() {
  (cd "$work" && go mod download -json "$1@$2") >"$work/out.json" || true
  python3 - "$work/out.json" "$1@$2" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
info = json.loads(text) if text.strip() else {"Error": "no output from go mod download"}
if info.get("Error") or not info.get("Dir"):
    sys.exit(f"karpenter-crds: {sys.argv[2]}: {info.get('Error', 'no module folder')}")
print(info["Dir"], info.get("Sum", ""))
PY
}

read -r aws_dir aws_sum < <(download github.com/aws/karpenter-provider-aws "$KARPENTER_AWS_VERSION")
read -r core_dir core_sum < <(download sigs.k8s.io/karpenter "$KARPENTER_CORE_VERSION")

partial="$root.partial"
rm -rf "$partial" && mkdir -p "$partial/crds" "$partial/core-crds"
cp "$aws_dir"/pkg/apis/crds/*.yaml "$partial/crds/"
cp "$core_dir"/pkg/apis/crds/*.yaml "$partial/core-crds/"
chmod -R u+w "$partial"
{
  echo "github.com/aws/karpenter-provider-aws $KARPENTER_AWS_VERSION $aws_sum pkg/apis/crds -> crds/"
  echo "sigs.k8s.io/karpenter $KARPENTER_CORE_VERSION $core_sum pkg/apis/crds -> core-crds/"
} >"$partial/SOURCES"
rm -rf "$root" && mv "$partial" "$root"
echo "karpenter-crds: fetched Karpenter $KARPENTER_AWS_VERSION CRDs -> $root/crds" >&2
echo "$root/crds"
