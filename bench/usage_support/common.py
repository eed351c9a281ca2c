"""Shared set-up for the usage benchmarks: Django on the bench database, a team, an API key."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
BENCH_SETTINGS = "bench.usage_support.settings"


def django_setup(settings_module: str = BENCH_SETTINGS) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def require_postgres_and_redis(need_redis: bool = True) -> bool:
    from django.conf import settings

    missing = []
    if not settings.USING_POSTGRES:
        missing.append("DATABASE_URL=postgres://...")
    if need_redis and not settings.USAGE_REDIS_URL:
        missing.append("REDIS_URL=redis://...")
    if missing:
        print(f"skipped: set {' and '.join(missing)} (figures on SQLite / without Redis would be meaningless)")
        return False
    return True


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def make_team(label: str):
    """A fresh team with an owner and an API key; returns (team, owner, raw_key)."""
    import uuid

    from accounts import services as account_services
    from accounts.models import User

    tag = uuid.uuid4().hex[:10]
    owner = User.objects.create_user(email=f"bench-{label}-{tag}@example.com", password=None)
    team = account_services.team_create(name=f"bench {label} {tag}", billing_email=owner.email, owner=owner)
    created = account_services.api_key_create(team=team, name="bench", created_by=owner, scope="full")
    return team, owner, created.raw_key


def load_average() -> str:
    """The 1-minute load average and the core count, for the figures' context on a shared machine."""
    return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


# --- gunicorn under test and a keep-alive HTTP load generator --------------------------------------------------

BENCH_ENV = {
    "DJANGO_SETTINGS_MODULE": BENCH_SETTINGS,
    # Production-like: DEBUG off (no query log), quiet logs. Throwaway secrets, shared by the set-up process and
    # the server so the API key created here verifies there.
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "bench-only-secret-key-not-for-production",
    "API_KEY_HMAC_SECRET": "bench-only-api-key-hmac-secret",
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
    "DJANGO_SECURE_SSL_REDIRECT": "false",
    "LOG_LEVEL": "WARNING",
    # Production mode refuses to start without these (security pass); the benchmarks send no mail and call only the
    # emulator, so throwaway values do.
    "STRIPE_SECRET_KEY": "sk_test_emulator000000000000000000000000",
    "EMAIL_URL": "smtp://127.0.0.1:9",
    "METRICS_BEARER_TOKEN": "bench-only-metrics-token",
}


def apply_bench_env() -> None:
    for key, value in BENCH_ENV.items():
        os.environ[key] = value


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(port: int, workers: int = 2, threads: int = 4):
    """The same server command as `make run` (scripts/run.sh): gthread workers with keep-alive."""
    import subprocess
    import time
    import urllib.request

    env = {**os.environ, **BENCH_ENV, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "gunicorn"), "billing_site.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--threads", str(threads), "--graceful-timeout", "5", "--log-level", "warning"],
        cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return process
        except Exception:
            if process.poll() is not None:
                raise RuntimeError("gunicorn exited: " + process.stderr.read().decode()[-2000:])
            time.sleep(0.3)
    process.terminate()
    raise RuntimeError("gunicorn did not come up")


def stop_process(process) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except Exception:
        process.kill()


def load_worker(args) -> dict:
    """
    Runs in a separate process: `connections` keep-alive connections, each sending requests back to back for
    `seconds`. Returns status counts and per-request latencies (seconds).
    """
    import http.client
    import threading
    import time

    port, method, path, headers, body, connections, seconds = args
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def run() -> None:
        local_lat: list[float] = []
        local_status: dict[int, int] = {}
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            local_lat.append(time.perf_counter() - started)
            local_status[status] = local_status.get(status, 0) + 1
        conn.close()
        with lock:
            latencies.extend(local_lat)
            for key, value in local_status.items():
                statuses[key] = statuses.get(key, 0) + value

    threads = [threading.Thread(target=run) for _ in range(connections)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "statuses": statuses, "elapsed": time.perf_counter() - began}


def generate_load(port: int, method: str, path: str, headers: dict, body: bytes | None, connections: int,
                  seconds: float) -> dict:
    """The load generator in a second process (spawned), as the benchmark brief asks."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(load_worker, ((port, method, path, headers, body, connections, seconds),))
