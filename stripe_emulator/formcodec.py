"""Stripe's form encoding: `a[b][0][c]=v`, `expand[]=x`, `metadata[k]=v`.

Parsed into nested dicts; a dict whose keys are all decimal indexes becomes a list (ordered by
index), and `[]` appends. Every leaf stays a string: types are applied by `params.validate`.
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from .errors import StripeError

_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART_RE = re.compile(r"\[([^\[\]]*)\]")


class _Append:
    """Marker container for `key[]` lists while parsing."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[Any] = []


def malformed(message: str) -> StripeError:
    return StripeError(message, status=400, store_idempotent=False)


def parse_form(raw: str) -> dict[str, Any]:
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (ValueError, UnicodeDecodeError) as exc:
        raise malformed(f"Invalid request body: {exc}") from None
    root: dict[str, Any] = {}
    for key, value in pairs:
        m = _KEY_RE.match(key)
        if not m:
            raise malformed(f"Invalid parameter name: {key}")
        parts = [m.group(1)] + _PART_RE.findall(m.group(2))
        _insert(root, parts, value, key)
    return _finalise(root)


def _insert(node: Any, parts: list[str], value: str, key: str) -> None:
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, _Append):
            if last:
                node.items.append(value)
                return
            # `a[][b]=1`: a new dict per element unless the key is new in the previous element.
            if node.items and isinstance(node.items[-1], dict) and parts[i + 1] not in node.items[-1]:
                node = node.items[-1]
            else:
                child: dict[str, Any] = {}
                node.items.append(child)
                node = child
            continue
        if not isinstance(node, dict):
            raise malformed(f"Invalid parameter: {key} conflicts with another parameter")
        if part == "" and i > 0:
            raise malformed(f"Invalid parameter name: {key}")
        nxt = parts[i + 1] if not last else None
        if last:
            if part in node and isinstance(node[part], (dict, _Append)):
                raise malformed(f"Invalid parameter: {key} conflicts with another parameter")
            node[part] = value
            return
        existing = node.get(part)
        if existing is None:
            existing = _Append() if nxt == "" else {}
            node[part] = existing
        elif isinstance(existing, str):
            if existing == "":
                existing = _Append() if nxt == "" else {}
                node[part] = existing
            else:
                raise malformed(f"Invalid parameter: {key} conflicts with another parameter")
        if nxt == "" and isinstance(existing, dict):
            if existing:
                raise malformed(f"Invalid parameter: {key} conflicts with another parameter")
            existing = _Append()
            node[part] = existing
        node = existing


def _finalise(node: Any) -> Any:
    if isinstance(node, _Append):
        return [_finalise(v) for v in node.items]
    if isinstance(node, dict):
        out = {k: _finalise(v) for k, v in node.items()}
        if out and all(k.isdigit() for k in out):
            return [out[k] for k in sorted(out, key=int)]
        return out
    return node
