#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer on their local ports: starts them when they are
# installed but stopped, and says what to do when they are missing. Changes nothing else.
set -euo pipefail

PG_HOST=127.0.0.1 PG_PORT=5432 REDIS_HOST=127.0.0.1 REDIS_PORT=6379

# host:port of a URL like postgres://user:pw@host:port/db (defaults when absent).
url_host_port() {
  local rest=${1#*://}; rest=${rest#*@}; rest=${rest%%/*}; rest=${rest%%\?*}
  local host=${rest%%:*} port=${rest##*:}
  [ "$port" = "$rest" ] && port=$2
  echo "$host $port"
}
if [ -n "${DATABASE_URL:-}" ]; then read -r PG_HOST PG_PORT < <(url_host_port "$DATABASE_URL" 5432); fi
if [ -n "${REDIS_URL:-}" ]; then read -r REDIS_HOST REDIS_PORT < <(url_host_port "$REDIS_URL" 6379); fi

is_local() { [[ "$1" == "127.0.0.1" || "$1" == "localhost" || "$1" == "::1" ]]; }
listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() { # name host port
  for _ in $(seq 1 60); do listening "$2" "$3" && return 0; sleep 0.5; done
  echo "error: $1 did not come up on $2:$3" >&2; return 1
}

start_postgres() {
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    local version; version=$(ls /etc/postgresql | sort -V | tail -n 1)
    echo "starting PostgreSQL $version (pg_ctlcluster)"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
  elif command -v brew >/dev/null 2>&1 && brew list --formula 2>/dev/null | grep -q '^postgresql'; then
    echo "starting PostgreSQL (brew services)"
    brew services start "$(brew list --formula | grep '^postgresql' | sort -V | tail -n 1)"
  elif command -v systemctl >/dev/null 2>&1 && systemctl list-unit-files 2>/dev/null | grep -q '^postgresql'; then
    echo "starting PostgreSQL (systemctl)"
    sudo systemctl start postgresql
  else
    cat >&2 <<'MSG'
error: PostgreSQL is not running on 127.0.0.1:5432 and is not installed here.
  Install PostgreSQL 15+ (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@15),
  or run it in Docker: docker compose -f docker/compose.yaml up -d postgres redis
  (and set DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/ecommerce),
  or point DATABASE_URL at a server you have.
MSG
    return 1
  fi
}

start_redis() {
  if command -v redis-server >/dev/null 2>&1; then
    echo "starting Redis (redis-server on $REDIS_PORT, no persistence)"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no
  elif command -v brew >/dev/null 2>&1 && brew list --formula 2>/dev/null | grep -q '^redis$'; then
    brew services start redis
  else
    cat >&2 <<'MSG'
error: Redis is not running on 127.0.0.1:6379 and is not installed here.
  Install Redis 7 (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis),
  or run it in Docker: docker compose -f docker/compose.yaml up -d redis,
  or point REDIS_URL at a server you have.
MSG
    return 1
  fi
}

if ! listening "$PG_HOST" "$PG_PORT"; then
  if is_local "$PG_HOST"; then start_postgres; wait_for PostgreSQL "$PG_HOST" "$PG_PORT"
  else echo "error: PostgreSQL at $PG_HOST:$PG_PORT is unreachable (check DATABASE_URL)" >&2; exit 1; fi
fi
if ! listening "$REDIS_HOST" "$REDIS_PORT"; then
  if is_local "$REDIS_HOST"; then start_redis; wait_for Redis "$REDIS_HOST" "$REDIS_PORT"
  else echo "error: Redis at $REDIS_HOST:$REDIS_PORT is unreachable (check REDIS_URL)" >&2; exit 1; fi
fi
echo "PostgreSQL on $PG_HOST:$PG_PORT and Redis on $REDIS_HOST:$REDIS_PORT are up"
