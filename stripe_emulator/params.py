"""Parameter specs compiled from the installed `stripe` SDK's params TypedDicts.

Each endpoint is tied to one TypedDict (e.g. `CustomerCreateParams`). At startup it is compiled
once into a small tree of specs; `validate` walks the parsed form against it, coerces strings into
ints/bools, and raises Stripe's errors for unknown, missing or mistyped parameters.
"""
from __future__ import annotations

import sys
import types
import typing

import typing_extensions
from functools import lru_cache
from typing import Any, ForwardRef

import stripe.params as sdk_params
from stripe._request_options import RequestOptions

from .errors import param_error, unknown_param, missing_param

# Keys of the SDK's RequestOptions are client-side options, never sent as parameters.
_REQUEST_OPTION_KEYS = frozenset(RequestOptions.__annotations__)


class Spec:
    __slots__ = ("kind", "fields", "required", "item", "choices", "alts", "name")

    def __init__(self, kind: str, **kw: Any) -> None:
        self.kind = kind  # str|int|bool|num|any|enum|list|map|obj|union
        self.fields: dict[str, Spec] = kw.get("fields", {})
        self.required: frozenset[str] = kw.get("required", frozenset())
        self.item: Spec | None = kw.get("item")
        self.choices: tuple[str, ...] = kw.get("choices", ())
        self.alts: list[Spec] = kw.get("alts", [])
        self.name: str = kw.get("name", "")

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Spec({self.kind}, {self.name or ''})"


_STR, _INT, _BOOL, _NUM, _ANY = (Spec(k) for k in ("str", "int", "bool", "num", "any"))


def _strip(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    name = getattr(origin, "_name", None) or getattr(tp, "_name", None)
    if name in ("NotRequired", "Required") or str(origin).endswith(("NotRequired", "Required")):
        return typing.get_args(tp)[0]
    return tp


def _resolve(tp: Any, module_globals: dict[str, Any]) -> Any:
    if isinstance(tp, str):
        return eval(tp, module_globals)  # noqa: S307 - the SDK's own annotation strings
    if isinstance(tp, ForwardRef):
        return eval(tp.__forward_arg__, module_globals)  # noqa: S307
    return tp


def _compile(tp: Any, module_globals: dict[str, Any], memo: dict[int, Spec]) -> Spec:
    tp = _resolve(_strip(_resolve(tp, module_globals)), module_globals)
    tp = _strip(tp)
    if tp is str:
        return _STR
    if tp is int:
        return _INT
    if tp is bool:
        return _BOOL
    if tp is float:
        return _NUM
    if tp is Any or tp is object:
        return _ANY
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return Spec("enum", choices=tuple(str(a) for a in args))
    if origin in (typing.Union, types.UnionType):
        alts = [_compile(a, module_globals, memo) for a in args if a is not type(None)]
        enums = [a for a in alts if a.kind == "enum"]
        # The SDK adds `|str` beside enums for forward compatibility; Stripe itself rejects
        # values outside the enum, so keep the enum strict unless it only allows ''.
        if any(c != "" for e in enums for c in e.choices):
            alts = [a for a in alts if a is not _STR]
        if len(alts) == 1:
            return alts[0]
        return Spec("union", alts=alts)
    if origin in (list, typing.List):
        return Spec("list", item=_compile(args[0], module_globals, memo) if args else _ANY)
    if origin in (dict, typing.Dict) or (origin is not None and "UntypedStripeObject" in str(origin)):
        val = args[1] if len(args) == 2 else (args[0] if args else Any)
        return Spec("map", item=_compile(val, module_globals, memo))
    if "UntypedStripeObject" in str(tp):
        return Spec("map", item=_ANY)
    if isinstance(tp, type) and (typing.is_typeddict(tp) or typing_extensions.is_typeddict(tp)):
        return compile_typeddict(tp, memo)
    if tp in (dict, list):
        return _ANY
    return _ANY


def compile_typeddict(td: type, memo: dict[int, Spec] | None = None) -> Spec:
    memo = {} if memo is None else memo
    if id(td) in memo:
        return memo[id(td)]
    spec = Spec("obj", name=td.__name__)
    memo[id(td)] = spec  # recursive types
    module_globals = dict(vars(sys.modules[td.__module__]))
    fields: dict[str, Spec] = {}
    for key, ann in td.__annotations__.items():
        if key in _REQUEST_OPTION_KEYS and issubclass(td, dict) and RequestOptions in getattr(td, "__orig_bases__", ()):
            continue
        if key in _REQUEST_OPTION_KEYS and _is_request_options_subclass(td):
            continue
        fields[key] = _compile(ann, module_globals, memo)
    spec.fields = fields
    spec.required = frozenset(k for k in td.__required_keys__ if k in fields)
    return spec


def _is_request_options_subclass(td: type) -> bool:
    return any(getattr(b, "__name__", "") == "RequestOptions" for b in getattr(td, "__orig_bases__", ()))


@lru_cache(maxsize=None)
def spec_for(name: str) -> Spec:
    """Compiled spec of `stripe.params.<name>` (cached: compiled once per process)."""
    return compile_typeddict(getattr(sdk_params, name))


def field_names(name: str) -> frozenset[str]:
    return frozenset(spec_for(name).fields)


# ---------------------------------------------------------------- validation

def validate(name: str, data: dict[str, Any]) -> dict[str, Any]:
    spec = spec_for(name)
    return _validate_obj(spec, data, "")


def _path(prefix: str, key: str) -> str:
    return f"{prefix}[{key}]" if prefix else key


def _validate_obj(spec: Spec, value: Any, path: str) -> dict[str, Any]:
    if isinstance(value, list) and not value:
        value = {}
    if not isinstance(value, dict):
        raise param_error(f"Invalid object", path or "body")
    out: dict[str, Any] = {}
    for key, raw in value.items():
        field = spec.fields.get(key)
        if field is None:
            raise unknown_param(_path(path, key))
        out[key] = _validate(field, raw, _path(path, key))
    for req in spec.required:
        if req not in value:
            raise missing_param(_path(path, req))
    return out


def _validate(spec: Spec, value: Any, path: str) -> Any:
    kind = spec.kind
    if kind == "str":
        if not isinstance(value, str):
            raise param_error(f"Invalid string: {_show(value)}", path)
        return value
    if kind == "int":
        if isinstance(value, str):
            v = value.strip()
            if v.lstrip("-").isdigit():
                return int(v)
        raise param_error(f"Invalid integer: {_show(value)}", path, "parameter_invalid_integer")
    if kind == "bool":
        if value in ("true", "false"):
            return value == "true"
        raise param_error(f"Invalid boolean: {_show(value)}", path)
    if kind == "num":
        if isinstance(value, str):
            try:
                float(value)
                return value  # kept as decimal string: money is never a float here
            except ValueError:
                pass
        raise param_error(f"Invalid decimal: {_show(value)}", path)
    if kind == "enum":
        if isinstance(value, str) and value in spec.choices:
            return value
        allowed = [c for c in spec.choices if c != ""]
        listed = ", ".join(allowed[:-1]) + (", or " if len(allowed) > 2 else " or ") + allowed[-1] if len(allowed) > 1 else (allowed[0] if allowed else "''")
        raise param_error(f"Invalid {path.split('[')[-1].rstrip(']') or path}: must be one of {listed}", path)
    if kind == "list":
        if isinstance(value, dict) and not value:
            value = []
        if isinstance(value, dict) and all(k.isdigit() for k in value):
            value = [value[k] for k in sorted(value, key=int)]
        if not isinstance(value, list):
            raise param_error(f"Invalid array", path)
        return [_validate(spec.item, v, f"{path}[{i}]") for i, v in enumerate(value)]  # type: ignore[arg-type]
    if kind == "map":
        if isinstance(value, list) and not value:
            return {}
        if not isinstance(value, dict):
            raise param_error(f"Invalid object", path)
        return {k: _validate(spec.item, v, _path(path, k)) for k, v in value.items()}  # type: ignore[arg-type]
    if kind == "obj":
        return _validate_obj(spec, value, path)
    if kind == "union":
        return _validate_union(spec, value, path)
    return value


def _validate_union(spec: Spec, value: Any, path: str) -> Any:
    # Literal[''] means "unset": let it through as ''.
    errors = []
    container = isinstance(value, (dict, list))
    for alt in spec.alts:
        alt_container = alt.kind in ("obj", "map", "list")
        if container != alt_container and alt.kind != "any":
            continue
        try:
            return _validate(alt, value, path)
        except Exception as exc:  # StripeError
            errors.append(exc)
    if errors:
        raise errors[0]
    if container:
        raise param_error("Invalid value: expected a scalar", path)
    # A scalar where only objects are accepted.
    for alt in spec.alts:
        if alt.kind == "obj":
            raise param_error("Invalid object", path)
        if alt.kind == "list":
            raise param_error("Invalid array", path)
    raise param_error(f"Invalid value: {_show(value)}", path)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else type(value).__name__
