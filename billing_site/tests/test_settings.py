"""Production settings refuse to start without their secrets, and pass Django's deployment checks."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "a" * 20 + "production-secret-key-with-enough-entropy-0123456789",
    "API_KEY_HMAC_SECRET": "hmac-secret-for-api-keys",
    "STRIPE_SECRET_KEY": "sk_test_from_the_environment",
    "SITE_URL": "https://billing.example.com",
    "EMAIL_URL": "smtp+tls://mailer:mail-password@smtp.example.com:587",
    "METRICS_BEARER_TOKEN": "metrics-token-from-the-environment",
}


def manage(*args, **env_changes):
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DJANGO_", "STRIPE_", "API_KEY", "EMAIL_", "METRICS_"))}
    env.pop("PYTEST_CURRENT_TEST", None)
    env.update(PRODUCTION)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("name", ["DJANGO_SECRET_KEY", "API_KEY_HMAC_SECRET", "STRIPE_SECRET_KEY"])
def test_production_refuses_to_start_without_a_secret(name):
    result = manage("check", **{name: None})
    assert result.returncode != 0
    assert f"The environment variable {name} must be set when DJANGO_DEBUG=false" in result.stderr


def test_deploy_checks_pass_in_production():
    result = manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues (0 silenced)" in result.stdout


def test_production_settings_are_hardened():
    script = (
        "from django.conf import settings as s;"
        "print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT,"
        " s.SECURE_HSTS_SECONDS >= 31536000, s.SECURE_PROXY_SSL_HEADER, s.ALLOWED_HOSTS)"
    )
    result = manage("shell", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "False True True True True ('HTTP_X_FORWARDED_PROTO', 'https') ['billing.example.com']"
    )


@pytest.mark.parametrize("backend", ["django.core.mail.backends.console.EmailBackend",
                                     "django.core.mail.backends.locmem.EmailBackend"])
def test_production_refuses_an_email_backend_that_delivers_nothing(backend):
    # The console backend printed password-reset and invitation links into the logs.
    result = manage("check", EMAIL_URL=None, EMAIL_BACKEND=backend)
    assert result.returncode != 0
    assert "EMAIL_BACKEND" in result.stderr and "EMAIL_URL" in result.stderr


def test_production_refuses_to_start_without_a_metrics_token():
    result = manage("check", METRICS_BEARER_TOKEN=None)
    assert result.returncode != 0
    assert "METRICS_BEARER_TOKEN must be set when DJANGO_DEBUG=false" in result.stderr


def test_production_sends_mail_through_the_email_url():
    result = manage("shell", "-c", "from django.conf import settings as s; print(s.EMAIL_BACKEND, s.EMAIL_HOST)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "django.core.mail.backends.smtp.EmailBackend smtp.example.com"
