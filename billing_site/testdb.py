"""
The test database: built once by the real migrations, then copied fresh for every test run.

Why: creating the test database runs all migrations, and dj-stripe's ~500 field removals make Django re-render its
interrelated models tens of thousands of times: about 60 s of CPU, on SQLite and on PostgreSQL alike (measured;
the cost is in Python, not in the database). Skipping migrations (`--nomigrations`) is not an option because data
migrations (e.g. the Support/Finance staff groups) must run. Plain `--reuse-db` is not sound either: whatever a
run leaves behind (a transactional test flushes every table, data-migration rows included) would leak into the
next run.

So, under pytest only:
1. A *template* database is migrated once, in a separate `manage.py migrate` process, and never touched by tests.
   Its name carries a fingerprint (SHA-256 of the Django version and the bytes of every installed app's migration
   files): any change to any migration, ours or a package's, gives a new template built from scratch.
2. Every run starts from a fresh copy of the template (a file copy on SQLite, `CREATE DATABASE ... TEMPLATE` on
   PostgreSQL), which pytest-django then reuses as is (`--reuse-db` in pytest.ini): identical to a freshly
   migrated database, in well under a second.
A clean clone pays for the migrations once. `TESTDB_REBUILD=1` (`make test-fresh`) rebuilds the template;
`pytest --create-db` still works and makes pytest-django migrate the run's copy in-process, as it always does.

Settings call `configure_test_database()` before Django is set up, so this module never imports Django models.
"""
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def _app_package(entry: str) -> str:
    # "whitenoise.runserver_nostatic" and "accounts" are packages; "x.apps.XConfig" would name a config class.
    return entry.split(".apps.")[0]


def migration_fingerprint(installed_apps: list[str]) -> str:
    import django

    digest = hashlib.sha256(f"django={django.__version__}".encode())
    for entry in installed_apps:
        spec = importlib.util.find_spec(_app_package(entry))
        if spec is None or not spec.submodule_search_locations:
            continue
        for location in spec.submodule_search_locations:
            for path in sorted((Path(location) / "migrations").glob("*.py")):
                digest.update(f"{entry}/{path.name}".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _migrate_into(database_url: str) -> None:
    """Run the real migrations into `database_url` in a plain (non-pytest) process."""
    env = {key: value for key, value in os.environ.items() if key != "PYTEST_CURRENT_TEST"}
    env["DATABASE_URL"] = database_url
    print(f"Test database: migrating a new template ({database_url.rsplit('/', 1)[-1]}); this happens once per "
          f"set of migrations and takes about a minute...", file=sys.stderr, flush=True)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "migrate", "--run-syncdb", "--noinput", "-v", "0"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"Migrating the test database template failed:\n{result.stdout}\n{result.stderr}")
    print(f"Test database: template ready in {time.monotonic() - started:.0f}s.", file=sys.stderr, flush=True)


def _prepare_sqlite(database: dict, fingerprint: str, cache_dir: Path, rebuild: bool) -> None:
    cache_dir.mkdir(exist_ok=True)
    template = cache_dir / f"template-{fingerprint}.sqlite3"
    run = cache_dir / f"run-{fingerprint}.sqlite3"
    for stale in cache_dir.glob("*.sqlite3*"):  # databases of older migrations can never be used again
        if fingerprint not in stale.name:
            stale.unlink(missing_ok=True)
    if rebuild:
        template.unlink(missing_ok=True)
    if not template.exists():
        partial = template.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        _migrate_into(f"sqlite:///{partial}")
        partial.replace(template)  # atomic: an interrupted build never leaves a half-migrated template
    run.unlink(missing_ok=True)
    Path(f"{run}-journal").unlink(missing_ok=True)
    shutil.copyfile(template, run)
    database.setdefault("TEST", {})["NAME"] = str(run)
    # A test database needs no durability against power loss; skipping fsync makes writes much cheaper.
    database.setdefault("OPTIONS", {})["init_command"] = "PRAGMA synchronous=OFF;"


def _prepare_postgres(database: dict, fingerprint: str, rebuild: bool) -> None:
    import psycopg
    from psycopg import sql

    base = database["NAME"]
    template, run = f"tmpl_{base}_{fingerprint}", f"test_{base}_{fingerprint}"
    params = {"host": database.get("HOST") or None, "port": database.get("PORT") or None,
              "user": database.get("USER") or None, "password": database.get("PASSWORD") or None}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        existing = {row[0] for row in admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s OR datname LIKE %s",
            [f"tmpl_{base}_%", f"test_{base}_%"],
        )}
        for name in sorted(existing - {template, run}):  # databases of older migrations
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if rebuild and template in existing:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(template)))
            existing.discard(template)
        if template not in existing:
            building = f"{template}_partial"
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(building)))
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(building)))
            _migrate_into(_postgres_url(database, building))
            admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(building), sql.Identifier(template)))
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(run)))
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(run), sql.Identifier(template)))
    database.setdefault("TEST", {})["NAME"] = run


def _postgres_url(database: dict, name: str) -> str:
    from urllib.parse import quote

    credentials = quote(database.get("USER") or "", safe="")
    if database.get("PASSWORD"):
        credentials += ":" + quote(database["PASSWORD"], safe="")
    host = database.get("HOST") or "localhost"
    port = f":{database['PORT']}" if database.get("PORT") else ""
    return f"postgres://{credentials + '@' if credentials else ''}{host}{port}/{name}"


def configure_test_database(database: dict, *, installed_apps: list[str], cache_dir: Path) -> None:
    """Give this pytest run a fresh copy of the migrated template (mutates the DATABASES entry)."""
    fingerprint = migration_fingerprint(installed_apps)
    rebuild = os.environ.get("TESTDB_REBUILD", "") not in ("", "0")
    if database["ENGINE"].endswith("sqlite3"):
        _prepare_sqlite(database, fingerprint, cache_dir, rebuild)
    elif "postgresql" in database["ENGINE"]:
        _prepare_postgres(database, fingerprint, rebuild)
