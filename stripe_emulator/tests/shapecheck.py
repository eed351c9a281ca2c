"""Compare a served object with Stripe's example object (fixtures3.json `resources.<type>`)."""
from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any

FIXTURES = os.environ.get("STRIPE_FIXTURES3", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "stripe", "fixtures3.json"))
_CANDIDATES = [FIXTURES, "/work/shared/stripe/fixtures3.json"]

# Free-form maps: any keys (string values for metadata), compared by type only.
FREE_FORM_KEYS = {"metadata"}
# Polymorphic members: any object is fine (an event carries whatever object changed).
POLYMORPHIC_PATHS = {"data.object", "data.previous_attributes"}
# Keys Stripe sends only in some variants of an object, which the fixture's single example leaves out
# (by the leaf name of the object holding them): the price of an invoice line / invoice item
# (`pricing.price_details`), the PaymentIntent or charge of an `invoice_payment.payment`.
CONDITIONAL_KEYS = {"pricing": {"price_details"}, "payment": {"payment_intent", "charge"}}


@lru_cache(maxsize=1)
def fixtures() -> dict[str, Any]:
    for path in _CANDIDATES:
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                return json.load(fh)["resources"]
    raise FileNotFoundError("fixtures3.json not found; set STRIPE_FIXTURES3")


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def compare(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Differences between Stripe's example and ours. Rules: same key set for every nested object; same JSON
    type where both sides are non-null (null in the fixture allows any value; null in ours is a nullable
    field left empty); an empty fixture object `{}` has no known keys so any object is fine."""
    problems: list[str] = []
    if expected is None or actual is None:
        return problems
    ek, ak = _kind(expected), _kind(actual)
    if ek != ak:
        return [f"{path or '<root>'}: fixture has {ek} ({json.dumps(expected)[:60]}), emulator has {ak} ({json.dumps(actual)[:60]})"]
    if ek == "object":
        leaf = path.rsplit(".", 1)[-1]
        if leaf in FREE_FORM_KEYS:
            return [f"{path}.{k}: metadata values must be strings" for k, v in actual.items() if not isinstance(v, str)]
        if path in POLYMORPHIC_PATHS or not expected:
            return problems
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected) - CONDITIONAL_KEYS.get(leaf, set()))
        if missing:
            problems.append(f"{path or '<root>'}: missing keys {missing}")
        if extra:
            problems.append(f"{path or '<root>'}: unexpected keys {extra}")
        for k in set(expected) & set(actual):
            problems.extend(compare(expected[k], actual[k], f"{path}.{k}" if path else k))
    elif ek == "array" and expected and actual:
        problems.extend(compare(expected[0], actual[0], f"{path}[0]"))
    return problems
