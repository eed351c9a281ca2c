"""List pagination, search queries and `expand[]`, shared by every resource."""
from __future__ import annotations

import base64
import copy
import json
import re
from typing import Any, Callable, Iterable

from .errors import StripeError, param_error
from .registry import INCLUDABLE, Request
from .state import Store


# ------------------------------------------------------------------ lists

def equal_filter(objs: Iterable[dict[str, Any]], params: dict[str, Any], keys: Iterable[str]) -> list[dict[str, Any]]:
    """Keep the objects whose field equals the list parameter of the same name, for each one the caller passed."""
    wanted = {key: params[key] for key in keys if key in params}
    return [o for o in objs if all(o.get(key) == value for key, value in wanted.items())]


def created_filter(objs: Iterable[dict[str, Any]], created: Any, key: str = "created") -> list[dict[str, Any]]:
    out = list(objs)
    if created is None:
        return out
    if isinstance(created, int):
        return [o for o in out if o.get(key) == created]
    for op, val in created.items():
        if op == "gt":
            out = [o for o in out if o.get(key, 0) > val]
        elif op == "gte":
            out = [o for o in out if o.get(key, 0) >= val]
        elif op == "lt":
            out = [o for o in out if o.get(key, 0) < val]
        elif op == "lte":
            out = [o for o in out if o.get(key, 0) <= val]
    return out


def list_response(req: Request, objs: list[dict[str, Any]], url: str | None = None) -> dict[str, Any]:
    """Paginate `objs` (already newest first) with limit / starting_after / ending_before."""
    params = req.params
    limit = params.get("limit", 10)
    if not isinstance(limit, int) or limit < 1 or limit > 100:
        raise param_error(
            "This value must be greater than or equal to 1." if (isinstance(limit, int) and limit < 1)
            else "This value must be less than or equal to 100.",
            "limit",
        )
    after = params.get("starting_after")
    before = params.get("ending_before")
    ids = [o["id"] for o in objs]
    if after:
        if after not in ids:
            raise _cursor_missing(req, after, "starting_after")
        start = ids.index(after) + 1
        page = objs[start : start + limit]
        has_more = start + limit < len(objs)
    elif before:
        if before not in ids:
            raise _cursor_missing(req, before, "ending_before")
        end = ids.index(before)
        start = max(0, end - limit)
        page = objs[start:end]
        has_more = start > 0
    else:
        page = objs[:limit]
        has_more = len(objs) > limit
    return {"object": "list", "data": page, "has_more": has_more, "url": url or req.path}


def _cursor_missing(req: Request, oid: str, param: str) -> StripeError:
    obj = req.store.objects.get(oid)
    kind = obj["object"] if obj else _kind_from_path(req.path)
    return StripeError(f"No such {kind}: '{oid}'", status=404 if obj is None else 400,
                       code="resource_missing", param=param)


def _kind_from_path(path: str) -> str:
    seg = path.rstrip("/").split("/")[-1]
    if seg in ("search",):
        seg = path.split("/")[-2]
    return seg[:-1] if seg.endswith("s") else seg


def empty_list(url: str) -> dict[str, Any]:
    return {"object": "list", "data": [], "has_more": False, "url": url}


# ------------------------------------------------------------------ search

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<and>AND\b) | (?P<or>OR\b) |
        (?P<neg>-)?(?P<field>[a-zA-Z_][a-zA-Z0-9_.]*(?:\[\s*(?:'[^']*'|"[^"]*")\s*\])?)\s*
        (?P<op>:|~|>=|<=|>|<)\s*
        (?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s]+)
    )""",
    re.X,
)


def parse_query(query: str) -> tuple[str, list[tuple[bool, str, str, str]]]:
    """Return (joiner, clauses) where each clause is (negated, field, op, value)."""
    pos, clauses, joiners = 0, [], set()
    query = query.strip()
    if not query:
        raise param_error("The query is empty.", "query")
    expect_clause = True
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if not m or m.end() == pos:
            raise _bad_query(query, pos)
        pos = m.end()
        if m.group("and") or m.group("or"):
            if expect_clause:
                raise _bad_query(query, m.start())
            joiners.add("AND" if m.group("and") else "OR")
            expect_clause = True
            continue
        if not expect_clause:
            # implicit AND is not allowed by Stripe; whitespace-separated clauses are an error
            raise _bad_query(query, m.start())
        value = m.group("value")
        if value[0] in "'\"":
            value = value[1:-1].replace("\\'", "'").replace('\\"', '"')
        field = re.sub(r"\s*\]$", "]", re.sub(r"\[\s*", "[", m.group("field"), count=1))
        clauses.append((bool(m.group("neg")), field, m.group("op"), value))
        expect_clause = False
        if pos < len(query) and query[pos:].strip() == "":
            break
    if expect_clause:
        raise _bad_query(query, len(query))
    if len(joiners) > 1:
        raise param_error("Queries cannot contain both AND and OR.", "query")
    return (joiners.pop() if joiners else "AND"), clauses


def _bad_query(query: str, pos: int) -> StripeError:
    return param_error(f"We were unable to parse your search query. Try using the format `metadata[\"key\"]:\"value\"` to query for metadata or key:\"value\" to query for other fields. (query: {query!r}, position {pos})", "query")


def _field_value(obj: dict[str, Any], field: str) -> Any:
    m = re.match(r"""^metadata\[(?:'([^']*)'|"([^"]*)")\]$""", field)
    if m:
        return (obj.get("metadata") or {}).get(m.group(1) if m.group(1) is not None else m.group(2))
    cur: Any = obj
    for part in field.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _clause_matches(obj: dict[str, Any], clause: tuple[bool, str, str, str]) -> bool:
    neg, field, op, value = clause
    actual = _field_value(obj, field)
    if op == ":":
        if value == "null":
            hit = actual is None
        elif isinstance(actual, bool):
            hit = str(actual).lower() == value.lower()
        elif isinstance(actual, (int, float)):
            hit = str(actual) == value
        else:
            hit = actual is not None and str(actual).lower() == value.lower()
    elif op == "~":
        hit = actual is not None and value.lower() in str(actual).lower()
    else:
        try:
            a, v = float(actual), float(value)
        except (TypeError, ValueError):
            return False
        hit = {">": a > v, "<": a < v, ">=": a >= v, "<=": a <= v}[op]
    return hit != neg


def search_response(req: Request, objs: list[dict[str, Any]], allowed_fields: set[str]) -> dict[str, Any]:
    joiner, clauses = parse_query(req.params["query"])
    for _, field, _, _ in clauses:
        base = "metadata" if field.startswith("metadata[") else field
        if base not in allowed_fields:
            raise param_error(f"Field `{base}` is an unsupported search field for resource `{_kind_from_path(req.path)}`. See http://stripe.com/docs/search#query-fields for a list of supported fields.", "query")
    combine = all if joiner == "AND" else any
    hits = [o for o in objs if combine(_clause_matches(o, c) for c in clauses)]
    limit = req.params.get("limit", 10)
    if not isinstance(limit, int) or not 1 <= limit <= 100:
        raise param_error("This value must be between 1 and 100.", "limit")
    offset = 0
    page_token = req.params.get("page")
    if page_token:
        try:
            offset = int(json.loads(base64.urlsafe_b64decode(page_token.encode()).decode())["o"])
        except Exception:
            raise param_error("Invalid page token.", "page") from None
    page = hits[offset : offset + limit]
    has_more = offset + limit < len(hits)
    next_page = base64.urlsafe_b64encode(json.dumps({"o": offset + limit}).encode()).decode() if has_more else None
    out = {"object": "search_result", "data": page, "has_more": has_more, "next_page": next_page, "url": req.path}
    if "total_count" in (req.params.get("expand") or []):
        out["total_count"] = len(hits)
    return out


# ------------------------------------------------------------------ expand

def expand(store: Store, obj: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """A copy of `obj` with each dotted path in `paths` expanded from id to object."""
    paths = [p for p in paths if p and p != "total_count"]
    if not paths:
        return obj
    out = copy.deepcopy(obj)
    for path in paths:
        parts = path.split(".")
        if len(parts) > 4:
            raise param_error(f"You cannot expand more than 4 levels of a property. Property: {path}", "expand")
        _expand_into(store, out, parts, path)
    return out


def _expand_into(store: Store, cur: Any, parts: list[str], full: str) -> None:
    if cur is None:
        return
    if isinstance(cur, list):
        for item in cur:
            _expand_into(store, item, parts, full)
        return
    if not isinstance(cur, dict):
        return
    key, rest = parts[0], parts[1:]
    if key not in cur and (cur.get("object"), key) in INCLUDABLE:
        cur[key] = INCLUDABLE[(cur.get("object"), key)](store, cur)
    if key not in cur:
        hint = ""
        if cur.get("object") == "list" or cur.get("object") == "search_result":
            hint = f" You may want to try expanding 'data.{full}' instead."
        raise param_error(f"This property cannot be expanded ({key}).{hint}", "expand")
    val = cur[key]
    if isinstance(val, str):
        target = store.objects.get(val)
        if target is None:
            if rest or not _looks_like_id(val):
                raise param_error(f"This property cannot be expanded ({key}).", "expand")
            return
        cur[key] = val = copy.deepcopy(target)
    elif isinstance(val, list) and val and all(isinstance(v, str) for v in val):
        resolved = [store.objects.get(v) for v in val]
        if all(r is not None for r in resolved):
            cur[key] = val = copy.deepcopy(resolved)
    elif key == "data" or isinstance(val, (dict, list)) or val is None:
        pass
    else:
        raise param_error(f"This property cannot be expanded ({key}).", "expand")
    if rest:
        _expand_into(store, val, rest, full)


def _looks_like_id(val: str) -> bool:
    return "_" in val and " " not in val


def snapshot(obj: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(obj)


Filter = Callable[[dict[str, Any]], bool]
