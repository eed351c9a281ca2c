"""The payments side's internal API in one import, for the billing resources (invoices, checkout, portal,
subscriptions) that were written against it. The code lives in one module per resource:

- `payment_engine`: build/confirm PaymentIntents, declines, 3-D Secure completion, `AFTER_3DS_HOOKS`, `cancel_pi`;
- `payment_intents`: the `/v1/payment_intents` routes; `three_d_secure`: the hosted challenge page;
- `charges`: charge objects, capture, receipts; `balance_transactions`: fees and balance entries;
- `refunds`: `refund_charge` (refund a charge, as `POST /v1/refunds`); `disputes`: `create_dispute`;
- `payment_triggers`: `/_emulator/trigger` for payment events.

New code should import from those modules; this one only re-exports.
"""
from __future__ import annotations

from .balance_transactions import DAY, card_fee, create_balance_transaction
from .charges import build_charge, capture_charge
from .disputes import DISPUTE_FEE, create_dispute
from .payment_engine import (
    AFTER_3DS_HOOKS,
    PaymentOutcome,
    _confirm,
    build_payment_intent,
    cancel_pi,
    charge_payment_method,
    complete_3ds_payment,
    confirm_with,
    decline_behaviours,
    decline_error_fields,
)
from .payment_methods import attach_payment_method, card_behaviour, resolve_payment_method
from .refunds import create_refund, refund_charge

# Importing this module registers every payment route, as the single module did: invoices.py wraps the
# PaymentIntent confirm handler at import time and must find it registered.
from . import payment_intents, payment_triggers, three_d_secure  # noqa: E402,F401  isort: skip

__all__ = [
    "AFTER_3DS_HOOKS", "DAY", "DISPUTE_FEE", "PaymentOutcome", "_confirm", "attach_payment_method", "build_charge",
    "build_payment_intent", "cancel_pi", "capture_charge", "card_behaviour", "card_fee", "charge_payment_method",
    "complete_3ds_payment", "confirm_with", "create_balance_transaction", "create_dispute", "create_refund",
    "decline_behaviours", "decline_error_fields", "refund_charge", "resolve_payment_method",
]
