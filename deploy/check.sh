#!/usr/bin/env bash
# Check the deployment files with the real tools (`make deploy-check`):
#   promtool check config / check rules / test rules   (Prometheus; Debian package "prometheus")
#   systemd-analyze verify                              (the unit templates, instance 0)
# promtool is installed with apt when missing and we are root (or ALLOW_APT=1 with sudo);
# without it those checks are reported as skipped. `make test` does not run this (the
# pure-Python tests in tests/unit/test_deploy_*.py check the same files without the tools).
set -euo pipefail
cd "$(dirname "$0")"
log() { echo "deploy-check: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif [ "${ALLOW_APT:-0}" = 1 ]; then sudo "$@"; else return 1; fi; }
failed=0

if ! command -v promtool >/dev/null; then
  log "installing promtool (apt package prometheus)"
  if as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root \
      apt-get install -y -qq --no-install-recommends prometheus >/dev/null; then
    as_root systemctl disable --now prometheus >/dev/null 2>&1 || true  # only the tool is wanted
  else
    log "cannot install promtool (not root; set ALLOW_APT=1 to use sudo)"
  fi
fi

if command -v promtool >/dev/null; then
  promtool check rules prometheus/alerts.yml || failed=1
  promtool check config prometheus/prometheus.yml || failed=1
  promtool test rules prometheus/alerts.test.yml || failed=1
  # Debian's promtool is built without Kubernetes service discovery; upstream builds have it.
  if out=$(promtool check config prometheus/prometheus-k8s.yml 2>&1); then
    echo "$out"
  elif grep -q "field kubernetes_sd_configs not found" <<<"$out"; then
    log "SKIPPED prometheus-k8s.yml: this promtool has no Kubernetes discovery (Debian build)"
  else
    echo "$out"; failed=1
  fi
else
  log "SKIPPED promtool checks: promtool not available"
fi

if command -v systemd-analyze >/dev/null; then
  # Verify copies whose ExecStart points at an interpreter that exists here.
  python=$(cd .. && pwd)/.venv/bin/python
  [ -x "$python" ] || python=$(command -v python3)
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  cp systemd/* "$tmp/"
  sed -i "s#/opt/alphapulse/.venv/bin/python#$python#" "$tmp"/*.service
  units=("$tmp/alphapulse.target")
  for f in "$tmp"/alphapulse-*@.service; do
    cp "$f" "${f%@.service}@0.service"; units+=("${f%@.service}@0.service")
  done
  if out=$(systemd-analyze verify "${units[@]}" 2>&1); [ -n "$out" ]; then
    echo "$out"; failed=1
  else
    log "systemd units verified"
  fi
else
  log "SKIPPED systemd-analyze: not available"
fi

[ "$failed" = 0 ] && log "all checks passed" || { log "FAILED"; exit 1; }
