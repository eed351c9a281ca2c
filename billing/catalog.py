"""Loads the catalog data file (catalog.toml) into typed, immutable objects. No Stripe calls here."""
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from django.conf import settings
from django.utils import translation


def _translated(translations: dict[str, dict[str, str]], field_name: str, default: str) -> str:
    """The catalog's text for the active language (`pt-br`, then `pt`), else the base text."""
    language = (translation.get_language() or "").lower()
    for code in (language, language.split("-")[0]):
        text = (translations.get(code) or {}).get(field_name)
        if text:
            return text
    return default

DEFAULT_CATALOG_PATH = Path(__file__).with_name("catalog.toml")


@dataclass(frozen=True)
class Meter:
    key: str
    display_name: str
    event_name: str
    metric: str
    translations: dict[str, dict[str, str]] = field(default_factory=dict, hash=False, compare=False)

    @property
    def label(self) -> str:
        return _translated(self.translations, "display_name", self.display_name)


@dataclass(frozen=True)
class RecurringPrice:
    lookup_key: str
    interval: str  # "month" | "year"
    amounts: dict[str, int]  # currency -> minor units


@dataclass(frozen=True)
class OveragePrice:
    lookup_key: str
    meter: str
    unit_amount_decimal: dict[str, str]  # currency -> decimal string in minor units
    # Stripe bills every item of a (classic) subscription on one interval: this price goes with flat prices of it.
    interval: str = "month"


@dataclass(frozen=True)
class Plan:
    key: str
    name: str
    description: str
    seats: int
    rate_limit_per_second: int
    overage: str  # "credits" | "metered"
    included: dict[str, int]
    prices: tuple[RecurringPrice, ...] = ()
    overage_prices: tuple[OveragePrice, ...] = ()
    contact_sales: bool = False
    translations: dict[str, dict[str, str]] = field(default_factory=dict, hash=False, compare=False)

    @property
    def display_name(self) -> str:
        """The plan's name in the active language (what customers read; `name` is the catalog's own)."""
        return _translated(self.translations, "name", self.name)

    @property
    def display_description(self) -> str:
        return _translated(self.translations, "description", self.description)

    @property
    def is_free(self) -> bool:
        return not self.prices and not self.contact_sales

    def overage_prices_for(self, interval: str) -> tuple[OveragePrice, ...]:
        """The metered prices a subscription to this plan at `interval` carries next to its flat price."""
        return tuple(price for price in self.overage_prices if price.interval == interval)


@dataclass(frozen=True)
class CreditPack:
    key: str
    lookup_key: str
    name: str
    credits: int
    amounts: dict[str, int]
    translations: dict[str, dict[str, str]] = field(default_factory=dict, hash=False, compare=False)

    @property
    def display_name(self) -> str:
        return _translated(self.translations, "name", self.name)


@dataclass(frozen=True)
class Catalog:
    currencies: tuple[str, ...]
    default_currency: str
    plans: tuple[Plan, ...]
    credit_packs: tuple[CreditPack, ...]
    meters: tuple[Meter, ...] = field(default_factory=tuple)

    def plan(self, key: str) -> Plan:
        for plan in self.plans:
            if plan.key == key:
                return plan
        raise KeyError(key)

    @property
    def free_plan(self) -> Plan:
        return self.plan("free")

    def plan_for_lookup_key(self, lookup_key: str) -> tuple[Plan, RecurringPrice] | None:
        for plan in self.plans:
            for price in plan.prices:
                if price.lookup_key == lookup_key:
                    return plan, price
        return None

    def credit_pack_for_lookup_key(self, lookup_key: str) -> CreditPack | None:
        return next((pack for pack in self.credit_packs if pack.lookup_key == lookup_key), None)

    def meter(self, key: str) -> Meter:
        return next(meter for meter in self.meters if meter.key == key)

    @property
    def metrics(self) -> tuple[str, ...]:
        names = {metric for plan in self.plans for metric in plan.included}
        return tuple(sorted(names))


def _parse(data: dict) -> Catalog:
    plans = tuple(
        Plan(
            key=p["key"],
            name=p["name"],
            description=p.get("description", ""),
            seats=int(p["seats"]),
            rate_limit_per_second=int(p["rate_limit_per_second"]),
            overage=p["overage"],
            included={k: int(v) for k, v in p.get("included", {}).items()},
            prices=tuple(RecurringPrice(**price) for price in p.get("prices", [])),
            overage_prices=tuple(OveragePrice(**price) for price in p.get("overage_prices", [])),
            contact_sales=bool(p.get("contact_sales", False)),
            translations=p.get("translations", {}),
        )
        for p in data["plans"]
    )
    return Catalog(
        currencies=tuple(data["currencies"]),
        default_currency=data["default_currency"],
        plans=plans,
        credit_packs=tuple(CreditPack(**pack) for pack in data.get("credit_packs", [])),
        meters=tuple(Meter(**meter) for meter in data.get("meters", [])),
    )


@cache
def load_catalog(path: str | None = None) -> Catalog:
    path = Path(path or getattr(settings, "BILLING_CATALOG_PATH", "") or DEFAULT_CATALOG_PATH)
    with path.open("rb") as handle:
        return _parse(tomllib.load(handle))
