"""Small helpers shared by resource modules."""
from __future__ import annotations

import copy
from typing import Any

from .errors import StripeError, no_such
from .registry import Request


def get_or_404(req: Request, oid: str, object_type: str, kind: str | None = None, param: str = "id") -> dict[str, Any]:
    """The stored object or Stripe's 404 ("No such customer: 'cus_x'")."""
    obj = req.store.get(oid, object_type)
    if obj is None:
        raise no_such(kind or object_type.split(".")[-1].replace("_", " ").replace("test helpers ", ""), oid, param)
    return obj


def ref_or_400(req: Request, oid: str, object_type: str, param: str, kind: str | None = None) -> dict[str, Any]:
    """A referenced object given as a parameter: unknown id is `resource_missing` on that param (400)."""
    obj = req.store.get(oid, object_type)
    if obj is None:
        raise StripeError(
            f"No such {kind or object_type.replace('_', ' ')}: '{oid}'", status=400, code="resource_missing", param=param
        )
    return obj


def apply_metadata(obj: dict[str, Any], metadata: Any) -> None:
    """Stripe semantics: '' clears all keys, a key set to '' is removed, others are set."""
    if metadata is None:
        return
    if metadata == "":
        obj["metadata"] = {}
        return
    md = dict(obj.get("metadata") or {})
    for k, v in metadata.items():
        if v == "" or v is None:
            md.pop(k, None)
        else:
            md[k] = str(v)
    obj["metadata"] = md


def set_fields(obj: dict[str, Any], params: dict[str, Any], names: list[str], empty_is_null: bool = True) -> None:
    for name in names:
        if name in params:
            v = params[name]
            obj[name] = None if (v == "" and empty_is_null) else v


def merged(base: dict[str, Any] | None, patch: Any) -> Any:
    """Merge a nested hash param into an existing sub-object ('' unsets it)."""
    if patch == "":
        return None
    out = copy.deepcopy(base) if isinstance(base, dict) else {}
    for k, v in patch.items():
        out[k] = None if v == "" else v
    return out


def address(value: Any) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    return {k: value.get(k) for k in ("city", "country", "line1", "line2", "postal_code", "state")}


def deleted(obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": obj["id"], "object": obj["object"], "deleted": True}


ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
_SYMBOL = {"usd": "$", "brl": "R$", "eur": "€", "gbp": "£", "cad": "CA$", "aud": "A$"}


def fmt_money(amount: int, currency: str) -> str:
    """Display form of an integer minor-unit amount, e.g. 1050 usd -> "$10.50" (no floats)."""
    cur = (currency or "usd").lower()
    sign = "-" if amount < 0 else ""
    a = abs(int(amount))
    if cur in ZERO_DECIMAL:
        text = f"{a}"
    else:
        major, minor = divmod(a, 100)
        text = f"{major}.{minor:02d}"
    sym = _SYMBOL.get(cur)
    return f"{sign}{sym}{text}" if sym else f"{sign}{text} {cur.upper()}"


def minimum_charge_amount(currency: str) -> int:
    """Stripe's minimum charge in minor units (50 for most currencies; ¥50)."""
    return 50
