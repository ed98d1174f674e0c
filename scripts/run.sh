#!/usr/bin/env bash
# Runs the api and one worker in the foreground; Ctrl-C stops both (gracefully).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

if [ "${APP_ENV:-local}" != production ] && [ -z "${ADMIN_EMAIL:-}" ]; then
  export ADMIN_EMAIL=admin@shop.local ADMIN_PASSWORD=admin-password
  echo "local admin account: $ADMIN_EMAIL / $ADMIN_PASSWORD (set ADMIN_EMAIL and ADMIN_PASSWORD to choose)"
fi
if [ "${APP_ENV:-local}" != production ]; then
  export SEED_DEMO_DATA=${SEED_DEMO_DATA:-true}   # a living shop: the demo catalog (idempotent)
fi
port=${HTTP_PORT:-8080}
if port_taken "$port"; then
  echo "error: port $port is taken (another api still running?); stop it or set HTTP_PORT" >&2
  exit 1
fi

"$TARGET_DIR/debug/api" & api=$!
# Ctrl-C (or TERM) only asks both to stop; the code below waits for them and reports how they
# ended (a `wait` in the trap would make bash forget their exit statuses).
stopping=
trap 'stopping=1; kill -TERM $api ${worker:-} 2>/dev/null || true' INT TERM
for _ in $(seq 1 120); do
  if port_taken "$port"; then break; fi
  if ! kill -0 $api 2>/dev/null; then
    status=0; wait $api || status=$?
    [ -n "$stopping" ] && exit $status
    echo "error: the api exited during start-up (see above)" >&2; exit 1
  fi
  sleep 0.5
done
if [ -n "$stopping" ]; then wait $api || exit $?; exit 0; fi
"$TARGET_DIR/debug/worker" & worker=$!
echo "api on http://127.0.0.1:$port (docs: http://127.0.0.1:$port/docs/), worker running; Ctrl-C stops both"
# Until either stops (polled: `wait -n` needs bash 4.3, macOS ships 3.2), then both stop.
while kill -0 $api 2>/dev/null && kill -0 $worker 2>/dev/null; do sleep 1; done
kill -TERM $api $worker 2>/dev/null || true
status=0
wait $api || status=$?
wait $worker || { code=$?; [ $status -ne 0 ] || status=$code; }
exit $status
