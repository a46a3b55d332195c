#!/usr/bin/env bash
# The Prometheus server and promtool of Debian's "prometheus" package, for the tests.
#   bash deploy/prometheus-local.sh      prints the path of the prometheus binary (stdout),
#                                        apt-installing the package first when it is missing
#   source deploy/prometheus-local.sh    defines ensure_prometheus (deploy/check.sh uses it)
# The package's own systemd service is disabled: the tests start private servers.
# Installing needs root (or ALLOW_APT=1 with sudo); without it this exits 1 and says why.

ensure_prometheus() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null && return 0
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if [ "${ALLOW_APT:-0}" != 1 ]; then
      echo "prometheus-local: prometheus is not installed and we are not root" \
        "(install the Debian package 'prometheus', or set ALLOW_APT=1 to use sudo)" >&2
      return 1
    fi
    sudo=(sudo)
  fi
  echo "prometheus-local: installing the apt package prometheus" >&2
  "${sudo[@]}" apt-get update -qq >&2 || return 1
  # policy-rc.d 101: the package's post-install must not start its own server.
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod +x "$policy"; created=1
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    prometheus >/dev/null
  local rc=$?
  [ "$created" = 1 ] && "${sudo[@]}" rm -f "$policy"
  [ "$rc" = 0 ] || return "$rc"
  "${sudo[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
  command -v prometheus >/dev/null && command -v promtool >/dev/null
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  ensure_prometheus || { echo "prometheus-local: cannot provide prometheus" >&2; exit 1; }
  command -v prometheus
fi
