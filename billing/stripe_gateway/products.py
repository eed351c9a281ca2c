"""Catalog objects pushed by `billing_setup`: products, prices, billing meters and the portal configuration."""
from ._core import client, stripe_operation, to_dict, write_options


def _all(list_call, params: dict) -> list[dict]:
    """Every object of a list endpoint, following `starting_after` pagination."""
    params = {**params, "limit": 100}
    out: list[dict] = []
    while True:
        page = list_call(params=params)
        out.extend(to_dict(o) for o in page.data)
        if not page.has_more or not page.data:
            return out
        params["starting_after"] = page.data[-1].id


@stripe_operation("product_list")
def product_list() -> list[dict]:
    return _all(client().v1.products.list, {})


@stripe_operation("product_create")
def product_create(*, params: dict, idempotency_key: str) -> dict:
    return to_dict(client().v1.products.create(params=params, options=write_options(idempotency_key)))


@stripe_operation("product_update")
def product_update(*, product_id: str, params: dict, idempotency_key: str) -> dict:
    return to_dict(client().v1.products.update(product_id, params=params, options=write_options(idempotency_key)))


@stripe_operation("price_list")
def price_list(*, lookup_keys: list[str] | None = None, product: str | None = None) -> list[dict]:
    params: dict = {"expand": ["data.currency_options"]}
    if lookup_keys:
        params["lookup_keys"] = lookup_keys
    if product:
        params["product"] = product
    return _all(client().v1.prices.list, params)


@stripe_operation("price_retrieve")
def price_retrieve(*, price_id: str) -> dict:
    return to_dict(client().v1.prices.retrieve(price_id, params={"expand": ["currency_options"]}))


@stripe_operation("price_create")
def price_create(*, params: dict, idempotency_key: str) -> dict:
    return to_dict(client().v1.prices.create(params=params, options=write_options(idempotency_key)))


@stripe_operation("price_update")
def price_update(*, price_id: str, params: dict, idempotency_key: str) -> dict:
    return to_dict(client().v1.prices.update(price_id, params=params, options=write_options(idempotency_key)))


@stripe_operation("billing_meter_list")
def billing_meter_list() -> list[dict]:
    return _all(client().v1.billing.meters.list, {})


@stripe_operation("billing_meter_create")
def billing_meter_create(*, params: dict, idempotency_key: str) -> dict:
    return to_dict(client().v1.billing.meters.create(params=params, options=write_options(idempotency_key)))


@stripe_operation("portal_configuration_list")
def portal_configuration_list() -> list[dict]:
    return _all(client().v1.billing_portal.configurations.list, {})


@stripe_operation("portal_configuration_create")
def portal_configuration_create(*, params: dict, idempotency_key: str) -> dict:
    return to_dict(client().v1.billing_portal.configurations.create(params=params, options=write_options(idempotency_key)))


@stripe_operation("portal_configuration_update")
def portal_configuration_update(*, configuration_id: str, params: dict, idempotency_key: str) -> dict:
    return to_dict(
        client().v1.billing_portal.configurations.update(
            configuration_id, params=params, options=write_options(idempotency_key)
        )
    )


@stripe_operation("account_retrieve")
def account_retrieve() -> dict:
    return to_dict(client().v1.accounts.retrieve_current())
