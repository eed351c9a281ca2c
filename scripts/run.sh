#!/usr/bin/env bash
# `make run`: a working site on the embedded defaults. Starts the Stripe emulator (unless STRIPE_API_BASE or a real
# STRIPE_SECRET_KEY says otherwise), migrates, loads the catalog and demo data, registers the webhook endpoint,
# then serves on SITE_URL. With REDIS_URL set it also starts a Celery worker and beat; without it, the in-process
# scheduler (`manage.py run_scheduler`) runs the periodic jobs. Ctrl-C stops everything it started; logs of the
# background processes are in .run/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT="${PORT:-8000}"
STRIPE_EMULATOR_PORT="${STRIPE_EMULATOR_PORT:-12111}"
export SITE_URL="${SITE_URL:-http://127.0.0.1:${PORT}}"
RUN_DIR=.run
mkdir -p "$RUN_DIR"
pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

wait_for_url() {  # wait_for_url <what> <url> <log file>
  for _ in $(seq 1 100); do
    "$PY" - "$2" <<'PYEOF' && return 0
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=1)
except Exception:
    sys.exit(1)
PYEOF
    sleep 0.2
  done
  echo "make run: $1 did not answer at $2; see $3" >&2
  tail -n 20 "$3" >&2 || true
  exit 1
}

if [ -z "${STRIPE_API_BASE:-}" ] && [ -z "${STRIPE_SECRET_KEY:-}" ]; then
  # No Stripe configured: the offline emulator plays Stripe, with its state kept across restarts.
  export STRIPE_API_BASE="http://127.0.0.1:${STRIPE_EMULATOR_PORT}"
  echo "Starting the Stripe emulator on ${STRIPE_API_BASE} (state in ${RUN_DIR}/emulator-state.json)"
  "$PY" -m stripe_emulator --port "$STRIPE_EMULATOR_PORT" --state "$RUN_DIR/emulator-state.json" \
      --webhook-retry-scale 0.01 >"$RUN_DIR/emulator.log" 2>&1 &
  pids+=($!)
  wait_for_url "the Stripe emulator" "${STRIPE_API_BASE}/_emulator/health" "$RUN_DIR/emulator.log"
elif [ -z "${STRIPE_API_BASE:-}" ]; then
  echo "STRIPE_SECRET_KEY is set and STRIPE_API_BASE is not: talking to the real Stripe API."
fi

"$PY" manage.py migrate --noinput
"$PY" manage.py collectstatic --noinput -v 0
"$PY" manage.py billing_setup
# One password for every demo login (customer, admin, Support and Finance staff); the commands print it.
DEMO_PASSWORD="${DEMO_PASSWORD:-$("$PY" -c 'import secrets; print(secrets.token_urlsafe(9))')}"
"$PY" manage.py demo_setup --password "$DEMO_PASSWORD"
"$PY" manage.py billing_demo
"$PY" manage.py demo_payments --password "$DEMO_PASSWORD"
# Staff with money powers log in with a second factor: print their TOTP secrets (development only).
"$PY" manage.py demo_staff_otp --password "$DEMO_PASSWORD"

if [ -n "${REDIS_URL:-}" ]; then
  echo "REDIS_URL is set: starting a Celery worker and beat (logs in ${RUN_DIR}/)"
  .venv/bin/celery -A billing_site worker --loglevel=INFO --concurrency=2 >"$RUN_DIR/worker.log" 2>&1 &
  pids+=($!)
  .venv/bin/celery -A billing_site beat --loglevel=INFO >"$RUN_DIR/beat.log" 2>&1 &
  pids+=($!)
else
  # No broker: tasks run in-process as they are enqueued, and the periodic jobs (the sweeps that apply stored
  # webhook events and retry failures, refunds and meter reports) run in one scheduler process of their own.
  echo "REDIS_URL is unset: Celery tasks run in-process; periodic jobs in the in-process scheduler (${RUN_DIR}/scheduler.log)."
  "$PY" manage.py run_scheduler >"$RUN_DIR/scheduler.log" 2>&1 &
  pids+=($!)
fi

echo "Serving ${SITE_URL} on port ${PORT} (back office at ${SITE_URL}/admin/). Ctrl-C to stop."
.venv/bin/gunicorn billing_site.wsgi:application --bind "127.0.0.1:${PORT}" --workers 2 --threads 4 \
    --access-logfile - --logger-class billing_site.gunicorn_logging.RedactingLogger --graceful-timeout 5 &
pids+=($!)
wait "${pids[-1]}"
