#!/usr/bin/env bash
# Twenty fresh `make run` starts, one checkout each, and the count of 500 answers (issue 11: "a new team's first
# checkout answered 500 'database is locked' in 3 of 7 fresh starts").
#
# Each start is scripts/run.sh itself (emulator, migrate, billing_setup, demo data, in-process scheduler, gunicorn
# with 2 workers x 4 threads) on an empty emulator state and a fresh SQLite database. To keep twenty starts in
# minutes rather than half an hour, the database is a copy of one migrated once (`migrate` still runs and finds
# nothing to do); everything after migrations starts from nothing. Then, as a new customer would: sign up, start a
# Checkout for Pro, pay on the emulator's hosted page (its webhooks reach the site while the buyer lands on the
# success page), open the billing page until the plan shows. Every answer is counted, and the site's access log too.
#
# Usage: scripts/run_smoke.sh [starts] (default 20). Ports: PORT (default 18192) and STRIPE_EMULATOR_PORT (default 18193).
# Prints one line per start and a summary; exits non-zero when any 500 was seen.
set -euo pipefail
cd "$(dirname "$0")/.."
STARTS="${1:-20}"
export PORT="${PORT:-18192}"
export STRIPE_EMULATOR_PORT="${STRIPE_EMULATOR_PORT:-18193}"
export SITE_URL="http://127.0.0.1:${PORT}"
PY=.venv/bin/python
WORK="$(mktemp -d /tmp/run-smoke.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
unset REDIS_URL USAGE_REDIS_URL DATABASE_URL STRIPE_API_BASE STRIPE_SECRET_KEY

echo "run_smoke: migrating a template SQLite database once (${WORK}/template.sqlite3)..."
DATABASE_URL="sqlite:///${WORK}/template.sqlite3" "$PY" manage.py migrate --noinput -v 0

total_500=0
failed_starts=0
for n in $(seq 1 "$STARTS"); do
  rm -f .run/emulator-state.json
  cp "${WORK}/template.sqlite3" "${WORK}/db-${n}.sqlite3"
  log="${WORK}/run-${n}.log"
  DATABASE_URL="sqlite:///${WORK}/db-${n}.sqlite3" DEMO_PASSWORD="smoke-${n}-password" \
    setsid bash scripts/run.sh >"$log" 2>&1 &
  run_pid=$!
  set +e
  result="$("$PY" - "$SITE_URL" "http://127.0.0.1:${STRIPE_EMULATOR_PORT}" "$n" <<'PYEOF'
import re, sys, time, uuid
import requests

site, emulator, n = sys.argv[1], sys.argv[2], sys.argv[3]
codes = []

def call(method, url, **kwargs):
    kwargs.setdefault("timeout", 30)
    answer = session.request(method, url, **kwargs)
    codes.append(answer.status_code)
    return answer

deadline = time.monotonic() + 240
while True:  # run.sh migrates, sets up the catalog and demo data before serving
    try:
        if requests.get(site + "/healthz", timeout=1).status_code == 200:
            break
    except requests.RequestException:
        pass
    if time.monotonic() > deadline:
        print("error=site-did-not-start 500s=0 plan=none")
        sys.exit(0)
    time.sleep(0.5)

session = requests.Session()
call("GET", site + "/accounts/signup/")
email = f"smoke-{n}-{uuid.uuid4().hex[:6]}@example.com"
call("POST", site + "/accounts/signup/", allow_redirects=True, data={
    "email": email, "password": "smoke-Password-123!", "team_name": f"Smoke {n}",
    "csrfmiddlewaretoken": session.cookies["csrftoken"]})
call("GET", site + "/pricing/?currency=usd")
start = call("POST", site + "/billing/checkout/pro_monthly/", allow_redirects=False, data={
    "currency": "usd", "form_token": uuid.uuid4().hex, "csrfmiddlewaretoken": session.cookies["csrftoken"]})
plan = "none"
match = re.search(r"(cs_[A-Za-z0-9_]+)", start.headers.get("Location", ""))
if match:
    paid = requests.post(f"{emulator}/_emulator/checkout_sessions/{match.group(1)}/complete",
                         data={"card_number": "4242424242424242"}, allow_redirects=False, timeout=30)
    success = paid.headers.get("Location", "")
    if success.startswith(site):
        call("GET", success)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "Pro plan" in call("GET", site + "/billing/").text:
            plan = "pro"
            break
        time.sleep(1)
print(f"checkout={start.status_code} 500s={sum(1 for c in codes if c >= 500 and c != 503)} plan={plan} "
      f"answers={len(codes)}")
PYEOF
)"
  set -e
  kill -TERM -- "-${run_pid}" 2>/dev/null || true
  wait "$run_pid" 2>/dev/null || true
  # Every answer of the site, not only the smoke's own: the emulator's webhook deliveries too.
  log_500="$(grep -cE '" 500 ' "$log" || true)"
  client_500="$(sed -nE 's/.*500s=([0-9]+).*/\1/p' <<<"$result")"
  seen=$(( ${client_500:-0} > ${log_500:-0} ? ${client_500:-0} : ${log_500:-0} ))
  total_500=$(( total_500 + seen ))
  if ! grep -q "plan=pro" <<<"$result"; then failed_starts=$(( failed_starts + 1 )); fi
  echo "start ${n}: ${result} access-log-500s=${log_500}"
  if [ "$seen" -gt 0 ]; then grep -E '" 500 |database is locked|Traceback' "$log" | head -n 5 || true; fi
  sleep 1
done
echo "run_smoke: ${STARTS} fresh starts, ${total_500} answers with status 500, ${failed_starts} starts without the Pro plan shown"
[ "$total_500" -eq 0 ] && [ "$failed_starts" -eq 0 ]
