"""Shared set-up for the usage benchmarks: Django on the bench database, a team, an API key."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_SETTINGS = "bench.usage_bench_settings"


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
    created = account_services.api_key_create(team=team, name="bench", created_by=owner)
    return team, owner, created.raw_key


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]
