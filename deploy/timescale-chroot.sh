#!/usr/bin/env bash
# A local TimescaleDB for the tests, without Docker and without touching the host's PostgreSQL.
#
# Debian bookworm ships no TimescaleDB, Debian trixie does (postgresql-17-timescaledb), so this
# script debootstraps a minimal trixie root under a cache directory, installs PostgreSQL 17 and
# the TimescaleDB extension into it with apt (only a Debian mirror is needed), initialises a cluster
# with shared_preload_libraries=timescaledb, trust auth on 127.0.0.1:$TIMESCALE_PORT, and runs it
# inside the chroot as the chroot's postgres user. The root is reused, so a second run takes seconds.
#
# Usage: timescale-chroot.sh [up|start|stop|status|url|destroy]
#   up (default)  build the root if missing, init the cluster if missing, start it, create the
#                 database, print the URL on stdout
#   start|stop    start or stop the server (idempotent)
#   status        exit 0 when the server answers, 3 otherwise
#   url           print the URL (does not start anything)
#   drop          stop the instance and delete its data directory (throwaway instances)
#   destroy       stop the default instance and delete the whole root
# Environment: TIMESCALE_CACHE (default /var/cache/alphapulse, else $XDG_CACHE_HOME/alphapulse when
# not root), TIMESCALE_PORT (55432), TIMESCALE_DB (test), TIMESCALE_INSTANCE (pg17): several
# clusters can share the root, each with its own name and port (the sink's outage test starts and
# stops a throwaway one, never the shared test server), DEBIAN_MIRROR: the Debian archive to
# debootstrap from; by default the one the machine's apt already uses (``debian_mirror``: its
# sources.list / sources.list.d), else debootstrap's own default for the suite. No host is named
# here: the machine knows which mirror it may reach.
#
# Sourced (``source timescale-chroot.sh``) it only defines its functions and runs nothing, so
# the tests can call ``debian_mirror`` in isolation.
set -euo pipefail

PORT=${TIMESCALE_PORT:-55432}
DB=${TIMESCALE_DB:-test}
SUITE=trixie
PGVER=17
if [ -n "${TIMESCALE_CACHE:-}" ]; then CACHE=$TIMESCALE_CACHE
elif [ "$(id -u)" = 0 ]; then CACHE=/var/cache/alphapulse
else CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/alphapulse; fi
ROOT=$CACHE/$SUITE
STAMP=$ROOT/.alphapulse-ready
INSTANCE=${TIMESCALE_INSTANCE:-pg$PGVER}
[[ "$INSTANCE" =~ ^[A-Za-z0-9_-]+$ ]] || { echo "timescale-chroot: bad TIMESCALE_INSTANCE" >&2; exit 1; }
PGDATA=/var/lib/alphapulse/$INSTANCE        # path inside the chroot
PGBIN=/usr/lib/postgresql/$PGVER/bin
URL="postgresql://postgres@127.0.0.1:$PORT/$DB"

log() { echo "timescale-chroot: $*" >&2; }
die() { log "$*"; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot and mount need it)"; }
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
as_pg() { in_root setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

# Debian release names an apt source must carry to count as the Debian archive (third-party
# repositories use their own suites: "nodistro", "cloud-sdk-bookworm"); -security is a separate
# archive and never matches.
DEBIAN_SUITES='^(buster|bullseye|bookworm|trixie|forky|duke|sid|oldoldstable|oldstable|stable|testing|unstable)(-updates|-backports|-proposed-updates)?$'

# debian_mirror [APT_DIR]: the URI of the first enabled Debian archive (``deb``, not
# ``deb-src``) in APT_DIR's (default /etc/apt) sources.list and sources.list.d/*.list (one-line
# form) or *.sources (deb822 form), read in apt's order; prints nothing when there is none.
debian_mirror() {
  local etc=${1:-/etc/apt} f uri
  local files=("$etc/sources.list")
  for f in "$etc"/sources.list.d/*; do files+=("$f"); done
  for f in "${files[@]}"; do
    [ -f "$f" ] || continue
    case "$f" in
      *.list) uri=$(awk -v re="$DEBIAN_SUITES" '
          /^[[:space:]]*deb[[:space:]]/ {
            line = $0; sub(/^[[:space:]]*deb[[:space:]]+/, "", line)
            if (line ~ /^\[/) sub(/^\[[^]]*\][[:space:]]*/, "", line)
            split(line, w, /[[:space:]]+/)
            if (w[1] ~ /^(https?|ftp|file):\/\// && w[2] ~ re) { print w[1]; exit }
          }' "$f") ;;
      *.sources) uri=$(awk -v re="$DEBIAN_SUITES" '
          function stanza(   i, j, n, s, u) {
            if (types ~ /(^|[[:space:]])deb([[:space:]]|$)/ && tolower(enabled) != "no") {
              n = split(suites, s, /[[:space:]]+/)
              for (i = 1; i <= n; i++) if (s[i] ~ re) {
                split(uris, u, /[[:space:]]+/)
                for (j = 1; j in u; j++) if (u[j] ~ /^(https?|ftp|file):\/\//) { print u[j]; found = 1; exit }
              }
            }
            types = ""; suites = ""; uris = ""; enabled = ""; key = ""
          }
          /^#/ { next }
          /^[[:space:]]*$/ { stanza(); next }
          /^[[:space:]]/ { if (key == "suites") suites = suites " " $0
                           else if (key == "uris") uris = uris " " $0
                           else if (key == "types") types = types " " $0
                           next }
          { key = tolower($0); sub(/:.*/, "", key); val = $0; sub(/^[^:]*:[[:space:]]*/, "", val)
            if (key == "types") types = val; else if (key == "suites") suites = val
            else if (key == "uris") uris = val; else if (key == "enabled") enabled = val }
          END { if (!found) stanza() }' "$f") ;;
      *) continue ;;
    esac
    if [ -n "$uri" ]; then echo "${uri%/}"; return 0; fi
  done
}

mounted() { mountpoint -q "$1"; }
mount_fs() {
  mkdir -p "$ROOT/proc" "$ROOT/dev/shm"
  mounted "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
  mounted "$ROOT/dev/shm" || mount -t tmpfs -o mode=1777,size=512m shm "$ROOT/dev/shm"
}
umount_fs() {
  for m in "$ROOT/dev/shm" "$ROOT/proc"; do if mounted "$m"; then umount -l "$m"; fi; done
}

build_root() {
  [ -f "$STAMP" ] && return 0
  need_root
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap on the host"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  umount_fs
  rm -rf "$ROOT"
  mkdir -p "$CACHE"
  local mirror=${DEBIAN_MIRROR:-$(debian_mirror /etc/apt)}
  log "debootstrapping Debian $SUITE into $ROOT from ${mirror:-the default mirror of debootstrap} (a few minutes, once)"
  debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$ROOT" ${mirror:+"$mirror"} \
    >"$CACHE/debootstrap.log" 2>&1 || { tail -n 30 "$CACHE/debootstrap.log" >&2; die "debootstrap failed"; }
  # With its default mirror debootstrap wrote the root's apt sources: the mirror is read back.
  [ -n "$mirror" ] || mirror=$(debian_mirror "$ROOT/etc/apt")
  [ -n "$mirror" ] || die "no Debian mirror: set DEBIAN_MIRROR"
  # No services may start inside the chroot at package install time, and no default cluster.
  printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
  chmod +x "$ROOT/usr/sbin/policy-rc.d"
  mkdir -p "$ROOT/etc/postgresql-common/createcluster.d"
  echo "create_main_cluster = false" >"$ROOT/etc/postgresql-common/createcluster.d/alphapulse.conf"
  echo "deb $mirror $SUITE main" >"$ROOT/etc/apt/sources.list"
  mount_fs
  log "installing postgresql-$PGVER and postgresql-$PGVER-timescaledb in the chroot"
  {
    in_root apt-get update -q &&
      in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "postgresql-$PGVER" "postgresql-$PGVER-timescaledb" &&
      in_root apt-get clean
  } >"$CACHE/apt.log" 2>&1 || { tail -n 30 "$CACHE/apt.log" >&2; die "apt-get in the chroot failed"; }
  touch "$STAMP"
}

init_cluster() {
  [ -f "$ROOT$PGDATA/PG_VERSION" ] && return 0
  log "initialising a cluster in $ROOT$PGDATA"
  mkdir -p "$ROOT$PGDATA"
  in_root chown postgres:postgres /var/lib/alphapulse "$PGDATA"
  as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  cat >>"$ROOT$PGDATA/postgresql.conf" <<EOF
# alphapulse test server (deploy/timescale-chroot.sh)
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '/tmp'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
max_connections = 200
shared_buffers = 256MB
fsync = on
EOF
}

is_up() { as_pg "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" 2>/dev/null; }

start() {
  need_root
  [ -f "$STAMP" ] || die "the chroot is not built; run '$0 up'"
  mount_fs
  init_cluster
  if is_up; then return 0; fi
  log "starting PostgreSQL $PGVER + TimescaleDB on 127.0.0.1:$PORT"
  # 9>&-: the server must not inherit the provisioning lock (it would hold it for ever).
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 start >/dev/null 9>&- ||
    { tail -n 20 "$ROOT$PGDATA/server.log" >&2; die "the server did not start"; }
}

stop() {
  [ -f "$ROOT$PGDATA/postmaster.pid" ] || return 0
  need_root
  mount_fs
  log "stopping the server on port $PORT"
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null || true
}

create_db() {
  if ! as_pg psql -qAt -h 127.0.0.1 -p "$PORT" -d postgres \
    -c "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    log "creating database $DB"
    as_pg psql -q -h 127.0.0.1 -p "$PORT" -d postgres -c "CREATE DATABASE \"$DB\"" >/dev/null
  fi
}

main() {
  local cmd=${1:-up}
  case "$cmd" in
    up)
      need_root
      mkdir -p "$CACHE"
      exec 9>"$CACHE/.lock"
      flock 9   # two concurrent `make test` runs must not debootstrap the same root
      build_root
      start
      create_db
      echo "$URL"
      ;;
    start) start ;;
    stop) stop ;;
    status) if [ -f "$STAMP" ] && is_up; then echo "up $URL"; else echo "down"; exit 3; fi ;;
    url) echo "$URL" ;;
    drop) need_root; stop; rm -rf "${ROOT:?}$PGDATA" ;;
    destroy) need_root; stop; umount_fs; rm -rf "$ROOT" ;;
    *) die "unknown command $cmd (up|start|stop|status|url|drop|destroy)" ;;
  esac
}

# Run only when executed, not when sourced (the tests source it to call debian_mirror):
# `return` succeeds only in a sourced file.
if ! (return 0 2>/dev/null); then main "$@"; fi
