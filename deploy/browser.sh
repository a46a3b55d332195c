#!/usr/bin/env bash
# The headless browser the console's browser tests drive (Playwright with the system browser):
# Debian's `chromium` and `chromium-driver`, installed with apt when missing (root, or
# ALLOW_APT=1 with sudo). Playwright never downloads a browser here: the tests launch
# /usr/bin/chromium (CHROMIUM, to override). Prints the browser's path.
set -euo pipefail
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
log() { echo "browser: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif [ "${ALLOW_APT:-0}" = 1 ]; then sudo "$@"; else return 1; fi; }
if [ ! -x "$CHROMIUM" ] || ! command -v chromedriver >/dev/null; then
  log "installing chromium and chromium-driver with apt"
  as_root apt-get update -qq || { log "cannot run apt-get (not root; set ALLOW_APT=1 to use sudo)"; exit 1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium chromium-driver >/dev/null
fi
[ -x "$CHROMIUM" ] || { log "$CHROMIUM is missing after the install"; exit 1; }
echo "$CHROMIUM"
