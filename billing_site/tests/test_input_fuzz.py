"""
Issue 10: no input gives a 5xx. Hypothesis sends arbitrary JSON (and valid bodies with one field replaced by
arbitrary JSON) to the API's JSON endpoints, and arbitrary text to the pages' forms and query strings; every answer
must be below 500. Derandomized and bounded, so it is quick and the same on every run.
"""
import json

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given, settings, strategies as st
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import APIKey
from accounts.tests.factories import make_team_with_owner
from billing.tests.conftest import billing_world  # noqa: F401  (the catalog pushed to the emulator)

pytestmark = pytest.mark.django_db

FUZZ = settings(max_examples=25, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Values that broke something once, or are known to break parsers: impossible dates, overflowing numbers, NUL,
# lone surrogates, non-ASCII digits, huge ids.
NASTY_TEXT = st.sampled_from([
    "", " ", "\x00", "\ud800", "abc", "-1", "0", "1e309", "NaN", "Infinity", "9" * 30, "٣", "²", "１",
    "2026-02-30T10:00:00Z", "2026-13-01", "2026-01-01T10:00:00+25:00", "pm_card_visa", "../../etc/passwd",
    "credits_10", "pro_monthly", "usd", "brl", "<script>", "%00", "' OR 1=1 --",
])
TEXT = st.one_of(NASTY_TEXT, st.text(max_size=60))
# Form fields cannot carry lone surrogates (the browser encodes UTF-8).
FORM_TEXT = st.one_of(NASTY_TEXT.filter(lambda t: t != "\ud800"),
                      st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**80), max_value=2**80),
                         st.floats(allow_nan=False, allow_infinity=False), TEXT)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(TEXT, children, max_size=4)), max_leaves=12)


def with_one_field(valid: dict) -> st.SearchStrategy:
    """A valid body with one of its fields (or a new one) replaced by any JSON value."""
    return st.tuples(st.sampled_from([*valid, "extra"]), JSON_VALUES).map(lambda kv: {**valid, kv[0]: kv[1]})


JSON_CALLS = [
    ("post", "api:usage-events", {"metric": "api_call", "quantity": 2, "occurred_at": None, "metadata": {"a": "b"}}),
    ("post", "api:usage-events", {"events": [{"idempotency_key": "k1", "metric": "api_call", "quantity": 1}]}),
    ("post", "api:billing-checkout-sessions", {"lookup_key": "credits_10", "quantity": 1, "currency": "usd"}),
    ("patch", "api:billing-subscription", {"lookup_key": "team_monthly"}),
    ("put", "api:usage-spend-cap", {"spend_cap_minor": 1000, "currency": "usd"}),
    ("post", "api:api-keys", {"name": "fuzz", "scope": "usage"}),
    ("post", "api:demo-premium", {}),
]


@pytest.fixture
def clients(billing_world, settings):
    settings.SITE_URL = "http://testserver"
    team, owner = make_team_with_owner(name="Fuzz")
    key = account_services.api_key_create(team=team, name="fuzz", created_by=owner, scope=APIKey.Scope.FULL).raw_key
    program = APIClient()
    program.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    person = APIClient()
    person.force_login(owner)
    return {"program": program, "person": person, "owner": owner}


def assert_no_5xx(response, what):
    assert response.status_code < 500, (what, response.status_code, response.content[:300])


@pytest.mark.parametrize("method, name, valid", JSON_CALLS, ids=[f"{m} {n}" for m, n, _ in JSON_CALLS])
def test_json_endpoints_answer_below_500_whatever_the_body(clients, method, name, valid):
    url = reverse(name)

    @FUZZ
    @given(body=st.one_of(JSON_VALUES, with_one_field(valid)), key=TEXT.filter(lambda t: "\n" not in t),
           as_key=st.booleans())
    def run(body, key, as_key):
        client = clients["program"] if as_key and name != "api:api-keys" else clients["person"]
        encoded = json.dumps(body)  # escapes NUL and lone surrogates as \u0000, \ud800: valid JSON text
        response = client.generic(method.upper(), url, encoded, content_type="application/json",
                                  HTTP_IDEMPOTENCY_KEY=key.encode("utf-8", "surrogatepass").decode("latin-1"))
        assert_no_5xx(response, (method, name, encoded[:200]))
        assert "error" in response.json() or response.status_code < 400

    run()


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["status", "kind", "created_gte", "created_lte", "ordering", "page",
                                               "page_size", "reason", "currency"]), FORM_TEXT, max_size=5),
       name=st.sampled_from(["api:billing-payments", "api:billing-invoices", "api:credits", "api:billing-plans",
                             "api:usage"]),
       team_header=FORM_TEXT)
def test_query_strings_and_team_headers_answer_below_500(clients, params, name, team_header):
    response = clients["person"].get(reverse(name), params, HTTP_X_TEAM_ID=team_header.encode().decode("latin-1"))
    assert_no_5xx(response, (name, params, team_header))


FORM_PAGES = [
    ("post", reverse("billing:checkout", args=["credits_10"]), ["quantity", "currency", "form_token"]),
    ("post", reverse("billing:change_plan", args=["team_monthly"]), ["proration_date"]),
    ("post", reverse("billing:pay_credit_pack", args=["credits_10"]), ["payment_method", "currency", "form_token"]),
    ("get", reverse("billing:payments"), ["status", "kind", "created_gte", "created_lte", "page"]),
    ("get", reverse("billing:checkout_success"), ["session_id"]),
    ("get", reverse("billing:payment_return"), ["payment_intent"]),
    ("get", reverse("billing:pricing"), ["currency"]),
    ("post", reverse("usage:spend_cap"), ["spend_cap_minor", "spend_cap", "currency"]),
    ("post", reverse("accounts:api_keys"), ["name", "scope"]),
    ("post", reverse("accounts:members"), ["email", "role"]),
]


@pytest.mark.parametrize("method, url, fields", FORM_PAGES, ids=[f"{m} {u}" for m, u, _ in FORM_PAGES])
def test_page_forms_and_query_strings_answer_below_500(clients, client, method, url, fields):
    client.force_login(clients["owner"])

    @FUZZ
    @given(data=st.fixed_dictionaries({}, optional={field: FORM_TEXT for field in fields}))
    def run(data):
        response = getattr(client, method)(url, data)
        assert_no_5xx(response, (method, url, data))

    run()


@FUZZ
@given(segment=FORM_TEXT.filter(lambda t: "/" not in t and "?" not in t and "#" not in t))
def test_ids_in_urls_answer_below_500(clients, client, segment):
    client.force_login(clients["owner"])
    from urllib.parse import quote

    part = quote(segment, safe="") or "x"
    for url in (f"/api/v1/payments/{part}/", f"/api/v1/api-keys/{part}/", f"/billing/payments/{part}/receipt.pdf",
                f"/billing/checkout/{part}/", f"/billing/change/{part}/", f"/billing/pay/{part}/",
                f"/accounts/team/switch/{part}/", f"/stripe/webhook/{part}/"):
        for response in (client.get(url), clients["person"].get(url)):
            assert_no_5xx(response, url)
