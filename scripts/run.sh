#!/usr/bin/env bash
# `make run`: a working site on the embedded defaults. Starts the Stripe emulator (unless STRIPE_API_BASE points
# elsewhere), migrates, loads the catalog and demo data, registers the webhook endpoint, then serves on SITE_URL.
# With REDIS_URL set it also starts a Celery worker and beat. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT="${PORT:-8000}"
STRIPE_EMULATOR_PORT="${STRIPE_EMULATOR_PORT:-12111}"
export SITE_URL="${SITE_URL:-http://127.0.0.1:${PORT}}"
RUN_DIR=.run
mkdir -p "$RUN_DIR"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

if [ -z "${STRIPE_API_BASE:-}" ] && [ -z "${STRIPE_SECRET_KEY:-}" ]; then
  export STRIPE_API_BASE="http://127.0.0.1:${STRIPE_EMULATOR_PORT}"
  echo "Starting the Stripe emulator on ${STRIPE_API_BASE} (state in ${RUN_DIR}/emulator-state.json)"
  "$PY" -m stripe_emulator --port "$STRIPE_EMULATOR_PORT" --state "$RUN_DIR/emulator-state.json" \
      --webhook-retry-scale 0.01 >"$RUN_DIR/emulator.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 50); do
    curl -fsS "${STRIPE_API_BASE}/_emulator/health" >/dev/null 2>&1 && break; sleep 0.2
  done
fi

"$PY" manage.py migrate --noinput
"$PY" manage.py collectstatic --noinput -v 0
if "$PY" manage.py help billing_setup >/dev/null 2>&1; then
  "$PY" manage.py billing_setup
fi
"$PY" manage.py demo_setup
if "$PY" manage.py help billing_demo >/dev/null 2>&1; then
  "$PY" manage.py billing_demo
fi

if [ -n "${REDIS_URL:-}" ]; then
  echo "REDIS_URL is set: starting a Celery worker and beat (logs in ${RUN_DIR}/)"
  .venv/bin/celery -A billing_site worker --loglevel=INFO --concurrency=2 >"$RUN_DIR/worker.log" 2>&1 &
  pids+=($!)
  .venv/bin/celery -A billing_site beat --loglevel=INFO >"$RUN_DIR/beat.log" 2>&1 &
  pids+=($!)
else
  echo "REDIS_URL is unset: Celery tasks run in-process."
fi

echo "Serving ${SITE_URL} (admin at ${SITE_URL}/admin/). Ctrl-C to stop."
.venv/bin/gunicorn billing_site.wsgi:application --bind "127.0.0.1:${PORT}" --workers 2 --threads 4 \
    --access-logfile - --graceful-timeout 5 &
pids+=($!)
wait "${pids[-1]}"
