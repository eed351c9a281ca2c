"""The hosted 3-D Secure challenge page (`/_emulator/3ds/<intent>`) for PaymentIntents and SetupIntents."""
from __future__ import annotations

import html
from urllib.parse import urlencode

from ..helpers import fmt_money
from ..registry import HtmlResponse, Request, route
from .hosted_page import simple_page as _page
from .payment_engine import AFTER_3DS_HOOKS, complete_3ds_payment
from .setup_intents import complete_3ds_setup


@route("GET", "/_emulator/3ds/{id}", auth=False)
def three_ds_page(req: Request) -> HtmlResponse:
    intent = req.store.get(req.path_params["id"])
    if intent is None or intent["object"] not in ("payment_intent", "setup_intent"):
        return HtmlResponse(_page("Not found", "<h1>Unknown intent</h1>"), status=404)
    if intent["status"] != "requires_action":
        return HtmlResponse(_page("3D Secure", f"<h1>Nothing to authenticate</h1><p>Status: {html.escape(intent['status'])}</p>"), status=409)
    amount = fmt_money(intent["amount"], intent["currency"]) if intent["object"] == "payment_intent" else "card setup"
    body = (f"<h1>3D Secure 2 Test Page</h1><p>Authenticate <strong>{html.escape(amount)}</strong> "
            f"({html.escape(intent['id'])}).</p>"
            f"<form method='post' action='/_emulator/3ds/{html.escape(intent['id'])}'>"
            "<button name='action' value='approve' id='approve'>Complete authentication</button>"
            "<button name='action' value='fail' id='fail'>Fail authentication</button></form>")
    return HtmlResponse(_page("3D Secure", body))


@route("POST", "/_emulator/3ds/{id}", auth=False, idempotent=False)
def three_ds_submit(req: Request) -> HtmlResponse:
    intent = req.store.get(req.path_params["id"])
    if intent is None or intent["object"] not in ("payment_intent", "setup_intent"):
        return HtmlResponse(_page("Not found", "<h1>Unknown intent</h1>"), status=404)
    if intent["status"] != "requires_action":
        return HtmlResponse(_page("3D Secure", "<h1>Already handled</h1>"), status=409)
    action = req.params.get("action", "approve")
    approve = action == "approve"
    return_url = req.store.private.get(intent["id"], {}).get("return_url")
    if intent["object"] == "payment_intent":
        complete_3ds_payment(req, intent, approve)
        query = {"payment_intent": intent["id"], "payment_intent_client_secret": intent["client_secret"],
                 "redirect_status": "succeeded" if intent["status"] in ("succeeded", "requires_capture") else "failed"}
    else:
        complete_3ds_setup(req, intent, approve)
        query = {"setup_intent": intent["id"], "setup_intent_client_secret": intent["client_secret"],
                 "redirect_status": "succeeded" if intent["status"] == "succeeded" else "failed"}
    hook = req.store.private.get(intent["id"], {}).get("after_3ds_hook")
    if hook and hook in AFTER_3DS_HOOKS:
        result = AFTER_3DS_HOOKS[hook](req, intent, approve)
        if isinstance(result, HtmlResponse):
            return result
    if return_url:
        sep = "&" if "?" in return_url else "?"
        return HtmlResponse.redirect(return_url + sep + urlencode(query))
    return HtmlResponse(_page("3D Secure", f"<h1>Authentication {'complete' if approve else 'failed'}</h1>"
                                            f"<p id='status'>{html.escape(intent['status'])}</p>"))
