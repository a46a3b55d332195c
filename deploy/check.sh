#!/usr/bin/env bash
# Check the deployment files with the real tools (`make deploy-check`):
#   promtool check config / check rules / test rules   (Prometheus; Debian package "prometheus")
#   systemd-analyze verify                              (the unit templates, instance 0)
# promtool is installed with apt when missing (deploy/prometheus-local.sh: root or ALLOW_APT=1);
# without it those checks are reported as skipped. `make test` does not run this (the
# pure-Python tests in tests/unit/test_deploy_*.py check the same files without the tools).
set -euo pipefail
cd "$(dirname "$0")"
log() { echo "deploy-check: $*" >&2; }
failed=0

# shellcheck source=deploy/prometheus-local.sh
source ./prometheus-local.sh  # ensure_prometheus: apt-installs prometheus + promtool if it can
ensure_prometheus || log "cannot install promtool (see above)"

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
