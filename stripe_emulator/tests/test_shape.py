"""Every object type the emulator serves carries exactly the keys (and JSON types) of Stripe's own example."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable

import pytest

import stripe_emulator.tests as tests_pkg
from stripe_emulator.registry import OBJECT_TYPES
from stripe_emulator.server import load_resources

from .shapecheck import compare, fixtures

load_resources()


def _all_makers() -> dict[str, Callable[..., dict[str, Any]]]:
    makers: dict[str, Callable[..., dict[str, Any]]] = {}
    for mod in pkgutil.iter_modules(tests_pkg.__path__):
        if mod.name.startswith("shape_makers_"):
            makers.update(importlib.import_module(f"{tests_pkg.__name__}.{mod.name}").MAKERS)
    return makers


MAKERS = _all_makers()
SERVED = sorted(OBJECT_TYPES)


def test_every_served_type_has_a_maker() -> None:
    assert sorted(set(SERVED) - set(MAKERS)) == []


def test_every_served_type_has_a_stripe_fixture() -> None:
    assert sorted(t for t in SERVED if t not in fixtures()) == []


@pytest.mark.parametrize("object_type", SERVED)
def test_shape_matches_stripe_fixture(object_type: str, client: Any) -> None:
    maker = MAKERS.get(object_type)
    if maker is None:
        pytest.fail(f"no shape maker for {object_type}")
    served = maker(client)
    expected = fixtures()[object_type]
    assert served["object"] == expected["object"]
    assert compare(expected, served) == []
