#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer, and that PostgreSQL accepts the configured login: starts
# local servers when they are installed but stopped, and says what to do when they are missing or
# refuse the login. Checks the servers of DATABASE_URL/REDIS_URL (default: local) and, when set,
# of TEST_DATABASE_URL/TEST_REDIS_URL (the tests' own). Changes nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh

# The URL with its database replaced by `postgres` (there on every server), for a login check.
maintenance_url() { DATABASE_SERVER_URL=$1 db_url postgres; }

listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() { # name host port
  for _ in $(seq 1 60); do listening "$2" "$3" && return 0; sleep 0.5; done
  echo "error: $1 did not come up on $2:$3" >&2; return 1
}
# Listening is not ready: PostgreSQL refuses logins while it starts up or recovers.
wait_postgres_ready() { # host port
  command -v pg_isready >/dev/null 2>&1 || return 0
  for _ in $(seq 1 60); do pg_isready -q -h "$1" -p "$2" && return 0; sleep 0.5; done
  echo "error: PostgreSQL on $1:$2 listens but does not accept connections (see its log)" >&2; return 1
}

start_postgres() { # port
  local version= name= owner=
  if command -v pg_lsclusters >/dev/null 2>&1; then
    # The cluster configured for this port (Debian/Ubuntu): "version name port status owner ...".
    read -r version name owner < <(pg_lsclusters -h 2>/dev/null | awk -v p="$1" '$3 == p { print $1, $2, $5; exit }') || true
  fi
  if [ -n "$version" ]; then
    echo "starting PostgreSQL cluster $version/$name (pg_ctlcluster)"
    # As root or the cluster's owner; anyone else through sudo.
    if [ "$(id -u)" = 0 ] || [ "$(id -un)" = "$owner" ]; then
      pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start
    else
      sudo pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start
    fi
  elif command -v brew >/dev/null 2>&1 && brew list --formula 2>/dev/null | grep -q '^postgresql'; then
    echo "starting PostgreSQL (brew services)"
    brew services start "$(brew list --formula | grep '^postgresql' | sort -V | tail -n 1)"
  elif command -v systemctl >/dev/null 2>&1 && systemctl list-unit-files 2>/dev/null | grep -q '^postgresql'; then
    echo "starting PostgreSQL (systemctl)"
    sudo systemctl start postgresql
  else
    cat >&2 <<MSG
error: PostgreSQL is not running on 127.0.0.1:$1 and no installed cluster serves that port.
  Install PostgreSQL 15+ (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@15),
  or run it in Docker: docker compose -f docker/compose.yaml up -d postgres redis
  (and set DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/ecommerce),
  or point DATABASE_URL at a server you have.
MSG
    return 1
  fi
}

start_redis() { # port
  if command -v redis-server >/dev/null 2>&1; then
    echo "starting Redis (redis-server on $1, no persistence)"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$1" --save "" --appendonly no
  elif command -v brew >/dev/null 2>&1 && brew list --formula 2>/dev/null | grep -q '^redis$'; then
    brew services start redis
  else
    cat >&2 <<MSG
error: Redis is not running on 127.0.0.1:$1 and is not installed here.
  Install Redis 7 (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis),
  or run it in Docker: docker compose -f docker/compose.yaml up -d redis,
  or point REDIS_URL at a server you have.
MSG
    return 1
  fi
}

check_postgres() { # url
  local host port; read -r host port < <(url_host_port "$1" 5432)
  if ! listening "$host" "$port"; then
    if is_local_host "$host"; then start_postgres "$port"; wait_for PostgreSQL "$host" "$port"
    else echo "error: PostgreSQL at $host:$port is unreachable (check DATABASE_URL)" >&2; return 1; fi
  fi
  wait_postgres_ready "$host" "$port"
  # The port answering is not enough: a stock install asks for a password over TCP, and a
  # Homebrew one has no `postgres` role. Say so here rather than as a failed start later.
  if command -v psql >/dev/null 2>&1; then
    local out
    # -w: a refused login fails here rather than prompting for a password.
    if ! out=$(PGCONNECT_TIMEOUT=5 psql -w "$(maintenance_url "$1")" -qAtc 'SELECT 1' 2>&1 </dev/null); then
      cat >&2 <<MSG
error: PostgreSQL on $host:$port refused the login of ${1%%\?*}:
  $out
  Put working credentials in DATABASE_URL (and TEST_DATABASE_URL for the tests), for example
  after giving the postgres role a password once (Debian/Ubuntu):
    sudo -u postgres psql -c "ALTER USER postgres PASSWORD 'postgres'"
    export DATABASE_URL=postgres://postgres:postgres@127.0.0.1:$port/ecommerce
  (Homebrew: createuser -s postgres). See the top of README.md.
MSG
      return 1
    fi
  fi
  echo "PostgreSQL on $host:$port is up"
}

check_redis() { # url
  local host port; read -r host port < <(url_host_port "$1" 6379)
  if ! listening "$host" "$port"; then
    if is_local_host "$host"; then start_redis "$port"; wait_for Redis "$host" "$port"
    else echo "error: Redis at $host:$port is unreachable (check REDIS_URL)" >&2; return 1; fi
  fi
  echo "Redis on $host:$port is up"
}

# The servers configured: DATABASE_URL/REDIS_URL (their defaults when unset, unless only the
# tests' own are set) and TEST_DATABASE_URL/TEST_REDIS_URL.
servers() { # url test-url default
  if [ -n "$1" ] || [ -z "$2" ]; then echo "${1:-$3}"; fi
  if [ -n "$2" ] && [ "$2" != "${1:-$3}" ]; then echo "$2"; fi
}
mapfile -t pg_urls < <(servers "${DATABASE_URL:-}" "${TEST_DATABASE_URL:-}" postgres://postgres@127.0.0.1:5432/ecommerce)
mapfile -t redis_urls < <(servers "${REDIS_URL:-}" "${TEST_REDIS_URL:-}" redis://127.0.0.1:6379)
for url in "${pg_urls[@]}"; do check_postgres "$url"; done
for url in "${redis_urls[@]}"; do check_redis "$url"; done
