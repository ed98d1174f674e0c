#!/usr/bin/env bash
# Failure drills: two api instances and two workers under the load generator's checkout mix,
# while one part fails: a Redis restart, a PostgreSQL crash and restart, a worker SIGKILLed. After each
# drill every order the load placed must settle and `worker check-invariants` must find nothing.
#
# Redis: the drills run their own redis-server (port DRILL_REDIS_PORT, default 6390) with an
# append-only file fsynced on every write, as a production Redis is configured (docker/compose.yaml):
# restarting it must lose nothing. PostgreSQL: the local cluster is restarted (pg_ctlcluster), so
# run the drills when nothing else uses it. Usage: scripts/drills.sh [baseline|redis|postgres|worker ...]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

DRILLS=("$@"); [ ${#DRILLS[@]} -gt 0 ] || DRILLS=(baseline redis postgres worker)
for drill in "${DRILLS[@]}"; do
  case $drill in baseline|redis|postgres|worker) ;; *) echo "unknown drill $drill (baseline, redis, postgres, worker)" >&2; exit 2 ;; esac
done
DRILL_DB=$(db_url ecom_drills)
read -r PG_HOST PG_PORT < <(url_host_port "$DRILL_DB" 5432)
if [[ " ${DRILLS[*]} " == *" postgres "* ]] && ! is_local_host "$PG_HOST"; then
  echo "the postgres drill crashes the local cluster; the database server $PG_HOST is not local" >&2; exit 2
fi
REDIS_PORT=${DRILL_REDIS_PORT:-6390}
PORT_A=${DRILL_PORT_A:-18491} PORT_B=${DRILL_PORT_B:-18492}
LOAD_SECONDS=${DRILL_LOAD_SECONDS:-20} FAULT_AFTER=${DRILL_FAULT_AFTER:-6} SETTLE_SECONDS=${DRILL_SETTLE_SECONDS:-120}
CUSTOMERS=${DRILL_CUSTOMERS:-24}
export DATABASE_URL="$DRILL_DB" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" REDIS_KEY_PREFIX="drills:" \
       RUST_LOG=warn LOG_FORMAT=json RUN_MIGRATIONS=true DATABASE_MAX_CONNECTIONS=8 HTTP_WORKERS=2 \
       ADMIN_EMAIL=admin@drills.test ADMIN_PASSWORD=drills-admin-password \
       SIMULATED_CAPTURE_DELAY_MS=300 SAGA_RESUME_AFTER_SECS=5 RESERVATION_SWEEP_INTERVAL_SECS=2 \
       WORKER_RECLAIM_AFTER_SECS=5 WORKER_CONCURRENCY=16

work=$(mktemp -d)
declare -A pids=()
own_redis= load=
cleanup() {
  for name in "${!pids[@]}"; do kill -TERM "${pids[$name]}" 2>/dev/null || true; done
  [ -z "$load" ] || kill -TERM "$load" 2>/dev/null || true
  wait 2>/dev/null || true
  # Only a Redis the drills started: one found on the port (refused below) is someone else's.
  if [ -n "$own_redis" ] && [ -z "${DRILL_KEEP_REDIS:-}" ]; then
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  fi
  echo "logs kept in $work"
}
trap cleanup EXIT

wait_port() { # host port seconds
  for _ in $(seq 1 $(($3 * 10))); do (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
start_redis() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null; then
    echo "port $REDIS_PORT is taken: the drills need their own Redis there (set DRILL_REDIS_PORT)"; exit 1
  fi
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$work" --appendonly yes --appendfsync always \
    --save "" --daemonize yes --logfile "$work/redis.log" >/dev/null
  wait_port 127.0.0.1 "$REDIS_PORT" 10 || { echo "drill redis did not start"; cat "$work/redis.log"; exit 1; }
  [ "$(redis-cli -p "$REDIS_PORT" config get dir | tail -n 1)" = "$work" ] || { echo "not the drill's redis on $REDIS_PORT"; exit 1; }
  own_redis=1
}
stop_redis() {
  redis-cli -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || true
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null || return 0; sleep 0.1; done
  echo "drill redis did not stop"; exit 1
}
start_api() { # name port
  if port_taken "$2"; then echo "port $2 is taken (an api left by an earlier run?): stop it or set DRILL_PORT_A/B"; exit 1; fi
  env HTTP_PORT="$2" "$TARGET_DIR/release/api" >>"$work/$1.log" 2>&1 & pids[$1]=$!
  for _ in $(seq 1 150); do curl -fs "http://127.0.0.1:$2/health/ready" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$1 did not start:"; tail -n 20 "$work/$1.log"; exit 1
}
start_worker() { # name
  "$TARGET_DIR/release/worker" >>"$work/$1.log" 2>&1 & pids[$1]=$!
}
stop() { # name
  kill -TERM "${pids[$1]}" 2>/dev/null || true; wait "${pids[$1]}" 2>/dev/null || true; unset "pids[$1]"
}
# A crash, not a clean restart: an immediate stop writes no checkpoint and loses what was not yet
# in the write-ahead log on disk (the worker's commits do not wait for the disk: its jobs must be
# acknowledged only once their writes are flushed).
restart_postgres() {
  is_local_host "$PG_HOST" || { echo "the PostgreSQL drill crashes a local cluster; $PG_HOST is not local"; exit 1; }
  local cluster
  cluster=$(pg_lsclusters -h | awk -v p="$PG_PORT" '$3 == p { print $1 " " $2; exit }')
  [ -n "$cluster" ] || { echo "no local PostgreSQL cluster on port $PG_PORT (pg_lsclusters)"; exit 1; }
  # shellcheck disable=SC2086 # "version name"
  pg_ctlcluster --skip-systemctl-redirect $cluster stop -m immediate
  # shellcheck disable=SC2086
  pg_ctlcluster --skip-systemctl-redirect $cluster start
}

echo "building (release) ..."
cargo build --release --quiet --bin api --bin worker
cargo build --release --quiet -p ecom-e2e --bin loadgen
env -u REDIS_URL scripts/services.sh >/dev/null  # PostgreSQL (the drills start their own Redis)
start_redis
"$TARGET_DIR"/release/api db-reset >/dev/null
"$TARGET_DIR"/release/api seed >/dev/null
start_api api-a "$PORT_A"
start_api api-b "$PORT_B"
start_worker worker-1
start_worker worker-2

results=()
failed=0
for drill in "${DRILLS[@]}"; do
  echo "drill: $drill"
  "$TARGET_DIR"/release/loadgen --base-url "http://127.0.0.1:$PORT_A,http://127.0.0.1:$PORT_B" --scenario checkout \
    --customers "$CUSTOMERS" --seconds "$LOAD_SECONDS" --settle-seconds "$SETTLE_SECONDS" \
    --admin-email "$ADMIN_EMAIL" --admin-password "$ADMIN_PASSWORD" --strict >"$work/load-$drill.md" 2>"$work/load-$drill.err" &
  load=$!
  sleep "$FAULT_AFTER"
  case $drill in
    baseline) ;; # two apis and two workers at once, nothing failing
    redis)
      stop_redis
      sleep 2
      start_redis ;;
    postgres)
      restart_postgres ;;
    worker)
      kill -KILL "${pids[worker-1]}"; wait "${pids[worker-1]}" 2>/dev/null || true; unset "pids[worker-1]"
      sleep 2
      start_worker worker-1 ;;
  esac
  load_status=0; wait $load || load_status=$?; load=
  settled=$(grep -i "settled" "$work/load-$drill.md" | tail -n 1 || true)
  # Whatever is still in flight gets the workers' sweeps; then nothing may be left wrong.
  invariants=fail
  for _ in $(seq 1 30); do
    if "$TARGET_DIR"/release/worker check-invariants --grace-secs 5 >"$work/invariants-$drill.txt" 2>&1; then invariants=ok; break; fi
    sleep 2
  done
  # An outage may answer 503 (and the load retries); a 500 is a bug.
  internal=$(grep -c "500 INTERNAL_ERROR" "$work/load-$drill.md" || true)
  status=ok
  if [ "$load_status" != 0 ] || [ "$invariants" != ok ] || [ "$internal" != 0 ]; then status=FAILED; failed=1; fi
  results+=("| $drill | $status | ${settled:-?} | $invariants |")
  echo "  $status (load exit $load_status, invariants $invariants, lines with 500s: $internal)"
  if [ "$status" != ok ]; then
    tail -n 5 "$work/load-$drill.err" || true
    cat "$work/invariants-$drill.txt" || true
    # The queues as operators see them (depths, dead letters with their last error).
    token=$(curl -fs -H 'Content-Type: application/json' -d "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\"}" \
      "http://127.0.0.1:$PORT_A/v1/auth/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])' || true)
    curl -fs -H "Authorization: Bearer $token" "http://127.0.0.1:$PORT_A/v1/admin/jobs" >"$work/jobs-$drill.json" || true
    echo "  queues: $(cat "$work/jobs-$drill.json" 2>/dev/null | head -c 1500)"
  fi
  echo "  load: $(grep -E '^\| (total|TOTAL)' "$work/load-$drill.md" || tail -n 3 "$work/load-$drill.md")"
done

echo
echo "| drill | result | orders | invariants |"
echo "|---|---|---|---|"
printf '%s\n' "${results[@]}"
exit $failed
