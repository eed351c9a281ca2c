"""Products, prices (lookup keys, currency options, metered), coupons and promotion codes."""
from __future__ import annotations

import pytest
import stripe


def test_price_lookup_key_is_unique_and_transferable(fresh_client: stripe.StripeClient) -> None:
    c = fresh_client
    prod = c.v1.products.create(params={"name": "Pro"})
    old = c.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 4900,
                                     "recurring": {"interval": "month"}, "lookup_key": "pro_monthly"})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        c.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 5900,
                                   "recurring": {"interval": "month"}, "lookup_key": "pro_monthly"})
    assert exc.value.param == "lookup_key" and old.id in exc.value.user_message
    new = c.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 5900,
                                     "recurring": {"interval": "month"}, "lookup_key": "pro_monthly",
                                     "transfer_lookup_key": True})
    assert c.v1.prices.retrieve(old.id).lookup_key is None
    found = c.v1.prices.list(params={"lookup_keys": ["pro_monthly", "nope"]}).data
    assert [p.id for p in found] == [new.id]
    assert c.v1.prices.search(params={"query": "lookup_key:'pro_monthly'"}).data[0].id == new.id


def test_currency_options_only_when_expanded(fresh_client: stripe.StripeClient) -> None:
    c = fresh_client
    prod = c.v1.products.create(params={"name": "Global"})
    price = c.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 4990,
                                       "currency_options": {"brl": {"unit_amount": 24990}}})
    assert "currency_options" not in price
    got = c.v1.prices.retrieve(price.id, params={"expand": ["currency_options"]})
    assert got.currency_options["brl"].unit_amount == 24990 and got.currency_options["usd"].unit_amount == 4990
    listed = c.v1.prices.list(params={"product": prod.id, "expand": ["data.currency_options"]})
    assert listed.data[0].currency_options["brl"].unit_amount_decimal == "24990"


def test_price_kinds_and_filters(fresh_client: stripe.StripeClient) -> None:
    c = fresh_client
    prod = c.v1.products.create(params={"name": "Kinds"})
    once = c.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 1500})
    yearly = c.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 49000,
                                        "recurring": {"interval": "year"}, "nickname": "Yearly"})
    assert (once.type, once.recurring) == ("one_time", None)
    assert (yearly.type, yearly.recurring.interval, yearly.recurring.usage_type) == ("recurring", "year", "licensed")
    assert [p.id for p in c.v1.prices.list(params={"type": "one_time"}).data] == [once.id]
    assert [p.id for p in c.v1.prices.list(params={"recurring": {"interval": "year"}}).data] == [yearly.id]
    c.v1.prices.update(once.id, params={"active": False})
    assert [p.id for p in c.v1.prices.list(params={"active": True}).data] == [yearly.id]
    with pytest.raises(stripe.InvalidRequestError) as exc:
        c.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 1,
                                   "recurring": {"interval": "month", "usage_type": "metered"}})
    assert exc.value.param == "recurring[meter]"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        c.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 1,
                                   "recurring": {"interval": "month", "usage_type": "metered", "meter": "mtr_missing"}})
    assert exc.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        c.v1.prices.create(params={"product": "prod_missing", "currency": "usd", "unit_amount": 1})
    assert exc.value.code == "resource_missing" and exc.value.param == "product"
    inline = c.v1.prices.create(params={"product_data": {"name": "Inline"}, "currency": "brl", "unit_amount": 990})
    assert c.v1.products.retrieve(inline.product).name == "Inline"


def test_product_default_price_and_delete_rules(fresh_client: stripe.StripeClient) -> None:
    c = fresh_client
    prod = c.v1.products.create(params={"name": "With default", "default_price_data": {"currency": "usd", "unit_amount": 700}})
    assert prod.default_price and c.v1.prices.retrieve(prod.default_price).unit_amount == 700
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.products.delete(prod.id)
    bare = c.v1.products.create(params={"name": "Bare"})
    assert c.v1.products.delete(bare.id).deleted is True
    assert [p.id for p in c.v1.products.search(params={"query": "name:'With default'"}).data] == [prod.id]


def test_coupons_and_promotion_codes(fresh_client: stripe.StripeClient) -> None:
    c = fresh_client
    pct = c.v1.coupons.create(params={"percent_off": "20", "duration": "once", "id": "LAUNCH20"})
    assert (pct.id, pct.percent_off, pct.valid) == ("LAUNCH20", 20, True)
    amt = c.v1.coupons.create(params={"amount_off": 500, "currency": "BRL", "duration": "repeating", "duration_in_months": 3})
    assert (amt.amount_off, amt.currency, amt.duration_in_months) == (500, "brl", 3)
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.coupons.create(params={"duration": "once"})
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.coupons.create(params={"percent_off": "10", "duration": "repeating"})
    promo = c.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": pct.id}, "code": "SPRING",
                                                "max_redemptions": 5})
    assert (promo.code, promo.promotion.coupon, promo.active) == ("SPRING", pct.id, True)
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": pct.id}, "code": "spring"})
    assert [p.id for p in c.v1.promotion_codes.list(params={"code": "SPRING"}).data] == [promo.id]
    c.v1.promotion_codes.update(promo.id, params={"active": False})
    assert c.v1.promotion_codes.list(params={"active": True}).data == []
    assert c.v1.coupons.delete(amt.id).deleted is True
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.coupons.retrieve(amt.id)
