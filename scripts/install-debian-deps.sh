#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo run for real: Prometheus (signals),
# Redis (the gateway's shared cache) and Lua 5.4 (ArgoCD health checks). Idempotent: does
# nothing when they are present. Services are not enabled; the tests start their own.
set -euo pipefail
need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v redis-server >/dev/null || need+=(redis-server)
command -v lua5.4 >/dev/null || need+=(lua5.4)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
echo "installing Debian packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
