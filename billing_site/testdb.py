"""
A reusable test database whose name is a fingerprint of every migration that builds it.

Why: creating the test database runs all migrations, and dj-stripe's ~500 field removals make Django re-render its
interrelated models tens of thousands of times: about 60 s of CPU on SQLite and on PostgreSQL alike (measured; the
cost is in Python, not in the database). Skipping migrations (`--nomigrations`) is not an option because data
migrations (e.g. the Support/Finance staff groups) must run.

So the suite keeps its migrated database between runs (`--reuse-db` in pytest.ini) and names it after a SHA-256 of
the Django version and the bytes of every migration file of every installed app. Any change to any migration, ours
or a package's, gives a new name and therefore a database built from scratch by the real migrations; nothing is
ever applied on top of a schema built from an older version of a migration. The first run on a clean clone pays
for the migrations once; later runs start in about a second. `pytest --create-db` forces a rebuild.

Settings call this only under pytest, before Django is set up, so it reads files and never imports Django models.
"""
import hashlib
import importlib.util
from pathlib import Path


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
            migrations = Path(location) / "migrations"
            for path in sorted(migrations.glob("*.py")):
                digest.update(f"{entry}/{path.name}".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def configure_test_database(database: dict, *, installed_apps: list[str], cache_dir: Path) -> None:
    """Point the test database at a fingerprinted, reusable name (mutates the DATABASES entry)."""
    fingerprint = migration_fingerprint(installed_apps)
    test = database.setdefault("TEST", {})
    if database["ENGINE"].endswith("sqlite3"):
        cache_dir.mkdir(exist_ok=True)
        name = cache_dir / f"test-{fingerprint}.sqlite3"
        # Databases built from older migrations can never be used again: remove them.
        for stale in cache_dir.glob("test-*.sqlite3*"):
            if not stale.name.startswith(name.name):
                stale.unlink(missing_ok=True)
        test["NAME"] = str(name)
        # A test database needs no durability against power loss; skipping fsync makes writes much cheaper.
        database.setdefault("OPTIONS", {})["init_command"] = "PRAGMA synchronous=OFF;"
    else:
        test["NAME"] = f"test_{database['NAME']}_{fingerprint}"
