"""`GET /v1/account`: the emulator's own (test-mode) platform account, which dj-stripe reads."""
from __future__ import annotations

from typing import Any

from ..registry import Request, object_type, route
from ..state import new_id

object_type("account")


def account_for(req: Any) -> dict[str, Any]:
    store = req.store
    acct = None
    for a in store.all("account"):
        acct = a
    if acct is not None:
        return acct
    acct_id = new_id("acct", 16)
    empty_addr = {k: None for k in ("city", "country", "line1", "line2", "postal_code", "state")}
    requirements = {"alternatives": [], "current_deadline": None, "currently_due": [], "disabled_reason": None,
                    "errors": [], "eventually_due": [], "past_due": [], "pending_verification": []}
    acct = {
        "id": acct_id,
        "object": "account",
        "business_profile": {
            "annual_revenue": None, "estimated_worker_count": None, "mcc": "5734",
            "minority_owned_business_designation": None, "name": "Stripe Emulator Test Account",
            "product_description": None, "support_address": empty_addr, "support_email": None,
            "support_phone": None, "support_url": None, "url": None,
        },
        "business_type": "company",
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True,
        "controller": {"type": "account"},
        "country": "US",
        "created": store.clock.now(),
        "default_currency": "usd",
        "details_submitted": True,
        "email": "emulator@example.com",
        "external_accounts": {"object": "list", "data": [], "has_more": False,
                              "url": f"/v1/accounts/{acct_id}/external_accounts"},
        "future_requirements": dict(requirements),
        "metadata": {},
        "payouts_enabled": True,
        "requirements": dict(requirements),
        "settings": {
            "bacs_debit_payments": {"display_name": None, "service_user_number": None},
            "branding": {"icon": None, "logo": None, "primary_color": None, "secondary_color": None},
            "card_issuing": {"tos_acceptance": {"date": None, "ip": None}},
            "card_payments": {"decline_on": {"avs_failure": False, "cvc_failure": False},
                              "statement_descriptor_prefix": "EMULATOR", "statement_descriptor_prefix_kana": None,
                              "statement_descriptor_prefix_kanji": None},
            "dashboard": {"display_name": "Stripe Emulator", "timezone": "Etc/UTC"},
            "invoices": {"default_account_tax_ids": None, "hosted_payment_method_save": "offer"},
            "payments": {"statement_descriptor": "EMULATOR", "statement_descriptor_kana": None,
                         "statement_descriptor_kanji": None, "statement_descriptor_prefix_kana": None,
                         "statement_descriptor_prefix_kanji": None},
            "payouts": {"debit_negative_balances": True, "schedule": {"delay_days": 2, "interval": "daily"},
                        "statement_descriptor": None},
            "sepa_debit_payments": {},
        },
        "tos_acceptance": {"date": None, "ip": None, "user_agent": None},
        "type": "standard",
    }
    store.add(acct)
    return acct


@route("GET", "/v1/account", "AccountRetrieveCurrentParams", returns="account")
def retrieve_account(req: Request) -> dict[str, Any]:
    return account_for(req)
