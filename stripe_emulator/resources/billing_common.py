"""Shared pieces of the billing resources (EMU-B): SDK param names in sub-namespaces, billing periods,
proration arithmetic, and the look of the hosted billing pages.

Every amount is an integer in minor units; proration uses integer arithmetic only (never floats).
"""
from __future__ import annotations

import calendar
import html
import importlib
from datetime import datetime, timezone
from typing import Any

import stripe.params as sdk_params

DAY = 86400


def sdk_params_name(dotted: str) -> str:
    """Make `stripe.params.<namespace>.<Name>` reachable as the route's params name.

    The framework looks a route's TypedDict up with `getattr(stripe.params, name)`; checkout, billing portal,
    billing meters and test clocks keep theirs in sub-packages (and `SessionCreateParams` exists in two of
    them), so the dotted name is registered as an attribute once here instead of changing the framework.
    """
    if not hasattr(sdk_params, dotted):
        namespace, name = dotted.rsplit(".", 1)
        module = importlib.import_module(f"stripe.params.{namespace}")
        setattr(sdk_params, dotted, getattr(module, name))
    return dotted


# ------------------------------------------------------------------ billing periods

def add_interval(ts: int, interval: str, count: int, anchor_day: int | None = None) -> int:
    """`ts` moved forward by `count` intervals, the way Stripe bills calendar months: the day of month of the
    billing cycle anchor is kept and clamped to the month's last day (Jan 31 -> Feb 28 -> Mar 31)."""
    if interval == "day":
        return ts + count * DAY
    if interval == "week":
        return ts + count * 7 * DAY
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    months = count * (12 if interval == "year" else 1)
    total = dt.month - 1 + months
    year, month = dt.year + total // 12, total % 12 + 1
    day = min(anchor_day or dt.day, calendar.monthrange(year, month)[1])
    return int(dt.replace(year=year, month=month, day=day).timestamp())


def anchor_day_of(ts: int) -> int:
    return datetime.fromtimestamp(ts, tz=timezone.utc).day


def prorate(amount: int, remaining: int, period: int) -> int:
    """`amount * remaining / period` rounded half away from zero to a whole minor unit (integers only)."""
    if period <= 0 or remaining <= 0:
        return 0
    sign = -1 if amount < 0 else 1
    num = abs(amount) * remaining
    return sign * ((2 * num + period) // (2 * period))


def fmt_date(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%d %b %Y").lstrip("0")


# ------------------------------------------------------------------ hosted pages

_CSS = """
*{box-sizing:border-box}body{margin:0;font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:#1a1f36;background:#f6f9fc}.wrap{display:flex;min-height:100vh}.side{flex:1;padding:4rem 3rem;background:#fff}
.main{flex:1;padding:4rem 3rem;max-width:36rem}.brand{font-weight:600;color:#635bff;margin-bottom:2rem}
h1{font-size:1.4rem;margin:.2rem 0 1.5rem}h2{font-size:1.05rem;margin:1.5rem 0 .6rem}.total{font-size:2.2rem;font-weight:600}
table{width:100%;border-collapse:collapse}td{padding:.55rem 0;border-bottom:1px solid #e6ebf1;vertical-align:top}
td.r{text-align:right;white-space:nowrap}.muted{color:#697386;font-size:.88rem}label{display:block;font-size:.85rem;
color:#3c4257;margin:.9rem 0 .3rem}input,select{width:100%;padding:.6rem .7rem;border:1px solid #cfd7df;border-radius:6px;
font-size:1rem;background:#fff}.row{display:flex;gap:.7rem}.row>div{flex:1}button,.btn{display:inline-block;margin-top:1.2rem;
width:100%;padding:.75rem;border:0;border-radius:6px;background:#635bff;color:#fff;font-size:1rem;font-weight:600;
cursor:pointer;text-align:center;text-decoration:none}.btn.secondary,button.secondary{background:#e3e8ee;color:#1a1f36}
.error{background:#fdecea;color:#a41c1c;padding:.7rem .9rem;border-radius:6px;margin:1rem 0}.ok{background:#e6f6ec;
color:#1d6b3a;padding:.7rem .9rem;border-radius:6px;margin:1rem 0}.card{background:#fff;border:1px solid #e6ebf1;
border-radius:8px;padding:1.2rem 1.4rem;margin-bottom:1.2rem}.badge{display:inline-block;padding:.1rem .5rem;border-radius:4px;
background:#e3e8ee;font-size:.8rem}.test{position:fixed;top:0;right:0;background:#ffde92;color:#7a4b00;font-size:.75rem;
padding:.2rem .6rem;border-bottom-left-radius:6px}
@media (max-width:700px){.wrap{flex-direction:column;min-height:0}.side,.main{padding:2rem 1.25rem;max-width:none}}
"""


def page(title: str, body: str) -> str:
    """A complete HTML page with inline CSS only (no external assets)."""
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            "<div class='test'>TEST MODE &middot; Stripe emulator</div>" + body + "</body></html>")


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)
