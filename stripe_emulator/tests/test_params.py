"""Each endpoint accepts exactly the parameters of its SDK TypedDict and rejects others like Stripe.

Checked over HTTP through the SDK (`StripeClient.raw_request`), one test per registered endpoint.
"""
from __future__ import annotations

from typing import Any

import pytest
import stripe
import stripe.params as sdk_params
from stripe._request_options import RequestOptions

from stripe_emulator import params
from stripe_emulator.registry import ROUTES, Route
from stripe_emulator.sdkmap import normalise, sdk_endpoints
from stripe_emulator.server import load_resources

load_resources()

API_ROUTES = [r for r in ROUTES if r.params is not None]
SDK = sdk_endpoints()
UNKNOWN = "zz_not_a_stripe_param"


def _path(route: Route) -> str:
    return route.pattern.replace("{", "x_").replace("}", "_404")


def _call(client: stripe.StripeClient, route: Route, **kwargs: Any) -> stripe.StripeError | None:
    try:
        client.raw_request(route.method.lower(), _path(route), **kwargs)
    except stripe.StripeError as exc:
        return exc
    return None


def _id(route: Route) -> str:
    return f"{route.method} {route.pattern}"


def test_routes_are_registered() -> None:
    assert len(API_ROUTES) > 50


@pytest.mark.parametrize("route", API_ROUTES, ids=_id)
def test_endpoint_params_match_sdk_typeddict(route: Route, client: stripe.StripeClient) -> None:
    td = getattr(sdk_params, route.params)  # type: ignore[arg-type]
    expected = set(td.__annotations__) - set(RequestOptions.__annotations__)
    assert set(params.spec_for(route.params).fields) == expected  # type: ignore[arg-type]

    # The route uses the TypedDict the SDK itself sends for this method and path.
    sdk_name = SDK.get((route.method, normalise(route.pattern)))
    assert sdk_name in (None, route.params.rsplit(".", 1)[-1])  # type: ignore[union-attr]  # "checkout.SessionCreateParams"

    # An unknown parameter is rejected with Stripe's error, through the SDK.
    err = _call(client, route, **{UNKNOWN: "1"})
    assert isinstance(err, stripe.InvalidRequestError)
    assert (err.http_status, err.code, err.param) == (400, "parameter_unknown", UNKNOWN)
    assert err.user_message == f"Received unknown parameter: {UNKNOWN}"

    # Every documented parameter is accepted: sent beside an unknown one, the error is never about it being
    # unknown (it is either the unknown one, or a type error about this one). Nothing is created.
    for field in sorted(expected):
        err = _call(client, route, **{field: "x", UNKNOWN: "1"})
        assert isinstance(err, stripe.InvalidRequestError), field
        assert not (err.code == "parameter_unknown" and err.param == field), field

    # Required parameters are enforced.
    required = set(td.__required_keys__) - set(RequestOptions.__annotations__)
    if required:
        err = _call(client, route)
        assert isinstance(err, stripe.InvalidRequestError)
        assert err.code == "parameter_missing" and err.param in required


def test_nested_unknown_param_is_named_with_brackets(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.customers.create(params={"address": {"city": "X", "planet": "Mars"}})  # type: ignore[typeddict-unknown-key]
    assert exc.value.code == "parameter_unknown"
    assert exc.value.param == "address[planet]"


def test_wrong_types_answer_stripe_codes(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.raw_request("post", "/v1/payment_intents", amount="ten", currency="usd")
    assert (exc.value.code, exc.value.param) == ("parameter_invalid_integer", "amount")
    assert exc.value.user_message == "Invalid integer: ten"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.raw_request("post", "/v1/refunds", charge="ch_x", reason="because")
    assert exc.value.param == "reason"
    assert "must be one of duplicate, fraudulent, or requested_by_customer" in exc.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.raw_request("post", "/v1/payment_intents", amount="1000", currency="usd", confirm="maybe")
    assert exc.value.param == "confirm"


def test_missing_required_param(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.raw_request("post", "/v1/payment_intents", currency="usd")
    assert (exc.value.code, exc.value.param) == ("parameter_missing", "amount")
    assert exc.value.user_message == "Missing required param: amount."
