#!/usr/bin/env bash
# Make sure the Redis at REDIS_URL and the PostgreSQL at DATABASE_URL answer.
# Local ones (127.0.0.1/localhost) that are down are started; missing ones are installed with
# apt when we are root (or ALLOW_APT=1 with sudo). Remote ones are only checked.
set -euo pipefail
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test}

log() { echo "local-services: $*" >&2; }
is_local() { [[ "$1" == *"127.0.0.1"* || "$1" == *"localhost"* || "$1" == *"[::1]"* ]]; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif [ "${ALLOW_APT:-0}" = 1 ]; then sudo "$@"; else return 1; fi; }
apt_install() {
  log "installing $* with apt"
  as_root apt-get update -qq || { log "cannot run apt-get (not root; set ALLOW_APT=1 to use sudo)"; return 1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

redis_up() { redis-cli -u "$REDIS_URL" ping 2>/dev/null | grep -q PONG; }
pg_up() { pg_isready -q -d "$DATABASE_URL" 2>/dev/null; }

if ! command -v redis-cli >/dev/null || ! command -v redis-server >/dev/null; then apt_install redis-server redis-tools; fi
# The runtime's TLS tests start their own redis-server with certificates made by openssl.
if ! command -v openssl >/dev/null; then apt_install openssl; fi
if ! redis_up; then
  is_local "$REDIS_URL" || { log "Redis at $REDIS_URL does not answer"; exit 1; }
  port=$(sed -E 's#.*:([0-9]+)(/.*)?$#\1#' <<<"$REDIS_URL"); [[ "$port" =~ ^[0-9]+$ ]] || port=6379
  log "starting a local redis-server on port $port"
  mkdir -p /tmp/alphapulse-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --dir /tmp/alphapulse-redis --logfile /tmp/alphapulse-redis/redis.log
  for _ in $(seq 50); do redis_up && break; sleep 0.1; done
  redis_up || { log "redis-server did not come up"; exit 1; }
fi

if ! command -v pg_isready >/dev/null; then apt_install postgresql postgresql-client; fi
if ! pg_up; then
  is_local "$DATABASE_URL" || { log "PostgreSQL at $DATABASE_URL does not answer"; exit 1; }
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then apt_install postgresql; fi
  log "starting the local PostgreSQL cluster"
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 100); do pg_up && break; sleep 0.1; done
  pg_up || { log "PostgreSQL did not come up at $DATABASE_URL"; exit 1; }
fi
# The database named in DATABASE_URL must exist (a fresh cluster has only postgres).
db=$(sed -E 's#.*/([^/?]+)(\?.*)?$#\1#' <<<"$DATABASE_URL")
admin=$(sed -E "s#/[^/?]+(\?.*)?\$#/postgres#" <<<"$DATABASE_URL")
if ! psql -qAt -d "$DATABASE_URL" -c 'select 1' >/dev/null 2>&1; then
  log "creating database $db"
  psql -q -d "$admin" -c "CREATE DATABASE \"$db\"" >/dev/null
fi
# Silent when both answer: `make run` prints only what a person needs to read.
