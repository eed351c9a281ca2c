"""Every setting the code reads is documented in .env.example and README, and the Docker files agree with it."""
import io
import re
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]


def setting_names() -> set[str]:
    source = (ROOT / "billing_site" / "settings.py").read_text()
    names = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]+)"', source))
    names |= set(re.findall(r'required_in_production\("([A-Z][A-Z0-9_]+)"', source))
    return names


def test_settings_are_all_in_env_example_and_documented():
    names = setting_names()
    assert {"DATABASE_URL", "REDIS_URL", "STRIPE_API_BASE", "DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS"} <= names
    example = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert names - example == set()
    # Documented in the README's settings table, or in the owning app's docs/<area>.md that it links to.
    docs = (ROOT / "README.md").read_text() + "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    assert {name for name in names if f"`{name}`" not in docs} == set()


def test_compose_runs_every_process_from_the_one_image():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"web", "worker", "beat", "postgres", "redis", "stripe-emulator"} <= set(services)
    assert services["worker"]["command"][:4] == ["celery", "-A", "billing_site", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "billing_site", "beat"]
    assert services["stripe-emulator"]["command"][:3] == ["python", "-m", "stripe_emulator"]
    for name in ("web", "worker", "beat", "migrate", "stripe-emulator"):
        assert services[name]["image"] == "billing-back-office:latest"
    env = services["web"]["environment"]
    assert env["DJANGO_DEBUG"] == "false" and env["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?")


def test_dockerfile_runs_as_a_non_root_user_and_serves_with_gunicorn():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.count("\nFROM ") + dockerfile.startswith("FROM ") >= 2  # multi-stage
    assert re.search(r"^USER app$", dockerfile, re.M)
    assert "gunicorn billing_site.wsgi:application" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".env"} <= set(ignored)


@pytest.mark.django_db
def test_models_and_migrations_agree_for_every_app_including_dj_stripe():
    # dj-stripe's JSON fields get an encoder at runtime (billing.apps): that must not look like a model change.
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
