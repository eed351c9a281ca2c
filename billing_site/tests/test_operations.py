import pytest
from django.db.utils import OperationalError
from django.test import override_settings
from django.urls import reverse

from billing_site import health
from billing_site.money import format_money


def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_ok(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["database"] == "ok"


@pytest.mark.django_db
def test_readyz_names_the_failed_database(client, monkeypatch):
    def database_down():
        raise OperationalError("connection refused")

    monkeypatch.setattr(health, "_check_database", database_down)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["database"]


@pytest.mark.django_db
def test_readyz_names_a_failed_redis(client):
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["redis"]


@pytest.mark.django_db
def test_metrics_and_schema_and_pages(client):
    assert b"django_http_requests" in client.get("/metrics").content
    schema = client.get(reverse("api-schema"))
    assert schema.status_code == 200 and b"/api/v1/api-keys/" in schema.content
    assert client.get(reverse("api-docs")).status_code == 200
    for url in ["/", "/pricing/", "/accounts/signup/", "/accounts/login/", "/accounts/password-reset/"]:
        assert client.get(url).status_code == 200, url


@pytest.mark.parametrize(
    ("amount", "currency", "language", "expected"),
    [
        (9900, "usd", None, "$99.00"),
        (49900, "brl", None, "R$ 499,00"),
        (499000, "brl", None, "R$ 4.990,00"),
        (99000, "usd", "en", "$990.00"),
        (123456789, "usd", "en", "$1,234,567.89"),
        (-250, "usd", None, "-$2.50"),
        (500, "jpy", None, "500 JPY"),
        (4990, "usd", "pt-br", "$49,90"),
    ],
)
def test_format_money(amount, currency, language, expected):
    assert format_money(amount, currency, language) == expected
