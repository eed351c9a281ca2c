"""Map (method, path) -> params TypedDict name, read from the installed SDK's `StripeClient` services.

Used by the parameter test (each route must name the TypedDict the SDK itself sends for that endpoint)
and handy when adding routes. Not used while serving requests.
"""
from __future__ import annotations

import os
import re

import stripe

_CALL = re.compile(
    r'params:\s*Optional\["(?P<p1>\w+)"\]|params:\s*"(?P<p2>\w+)"|'
    r'self\._request\(\s*"(?P<m>get|post|delete)",\s*"(?P<path>/v1/[^"]+)"',
    re.S,
)


def _normalise(path: str) -> str:
    return re.sub(r"\{[a-z_]+\}", "{}", path)


def sdk_endpoints() -> dict[tuple[str, str], str]:
    """{(METHOD, '/v1/customers/{}'): 'CustomerUpdateParams', ...} from every *_service.py (sync methods)."""
    root = os.path.dirname(stripe.__file__)
    out: dict[tuple[str, str], str] = {}
    for dirpath, _, files in os.walk(root):
        for fn in files:
            if not fn.endswith("_service.py"):
                continue
            with open(os.path.join(dirpath, fn), encoding="utf-8") as fh:
                text = fh.read()
            last_params = None
            for m in _CALL.finditer(text):
                if m.group("p1") or m.group("p2"):
                    last_params = m.group("p1") or m.group("p2")
                elif m.group("path"):
                    key = (m.group("m").upper(), _normalise(m.group("path")))
                    if last_params and key not in out:
                        out[key] = last_params
                    last_params = None
    return out


def normalise(pattern: str) -> str:
    return _normalise(pattern)
