"""
The billing app's own reactions to Stripe events (the mirror itself is dj-stripe's, run before these). Which event
types call which handler is written in one table, `billing.webhooks.registry`.

Each handler is safe to run twice: grants are idempotent on (team, reason, reference), flags are set not toggled,
emails are the only repeatable side effect and go out after commit. When state matters more than the event's
snapshot, the handler re-reads it (the freshly synced mirror, or Stripe through the gateway).
"""
import logging

from django.utils.translation import gettext_noop

from billing_site.money import format_money

from ..catalog import load_catalog
from ..emails import send_staff_email, send_team_email
from ..extensions import credit_ledger
from ..receipts import receipt_email_queue, refund_receipt_email_queue, refunds_new_in_event
from ..selectors import customer_team
from ..services.customers import billing_profile_flag_dispute, customer_unlink
from ..services.mirror import mirror_refresh
from ..services.payment_methods import card_default_if_first_enqueue, card_setup_mirror

logger = logging.getLogger("billing.webhooks")


def _obj(event: dict) -> dict:
    return event["data"]["object"]


def _date(ts: int | None) -> str:
    if not ts:
        return ""
    from datetime import datetime, timezone as dt_timezone

    return datetime.fromtimestamp(ts, tz=dt_timezone.utc).date().isoformat()


def _plan_name_of_subscription(subscription: dict) -> str:
    from ..selectors import plan_of_items

    found = plan_of_items((subscription.get("items") or {}).get("data") or [])
    return found[0].name if found else "?"


def credits_grant_for_purchase(*, team, amount: int, reference: str) -> None:
    # The usage app owns the ledger (registered with billing.extensions). Idempotent on (team, reason, reference).
    credit_ledger().grant(team=team, amount=amount, reason="purchase", reference=reference,
                  note=gettext_noop("Credit pack bought through Stripe Checkout"))


def checkout_session_completed(*, event: dict) -> None:
    """Credit pack → credits granted once per session; subscription → the subscription mirrored now; setup (a card
    added on the hosted page) → the card mirrored, nothing bought or granted."""
    from ..stripe_gateway.checkout import checkout_session_retrieve

    session = checkout_session_retrieve(session_id=_obj(event)["id"])
    metadata = session.get("metadata") or {}
    team = customer_team(stripe_customer_id=session.get("customer"))
    if team is None and metadata.get("team_id"):
        from accounts.models import Team

        team = Team.objects.filter(pk=int(metadata["team_id"])).first()
    if team is None:
        logger.warning("checkout session %s has no known team; ignored", session["id"])
        return
    if session.get("mode") == "setup":
        # Also done by the page the customer returns to; the mirror write is an upsert, so both (or a replay) agree.
        # A team's first card becomes its default even if the customer never comes back to that page: a Stripe
        # write, so it runs in a task after this transaction commits (and does nothing once a default exists).
        intent = session.get("setup_intent")
        if isinstance(intent, dict) and intent.get("status") == "succeeded":
            payment_method = intent.get("payment_method")
            card_setup_mirror(team=team, payment_method=payment_method)
            if isinstance(payment_method, dict):
                card_default_if_first_enqueue(team_id=team.pk, payment_method_id=payment_method["id"])
    elif session.get("mode") == "payment" and metadata.get("kind") == "credit_pack":
        if session.get("payment_status") != "paid":
            # Delayed payment methods: credits come with checkout.session.async_payment_succeeded.
            logger.info("checkout session %s not paid yet (%s)", session["id"], session.get("payment_status"))
            return
        credits = int(metadata.get("credits") or 0)
        if credits <= 0:
            pack = load_catalog().credit_pack_for_lookup_key(metadata.get("lookup_key", ""))
            credits = pack.credits * int(metadata.get("quantity") or 1) if pack else 0
        if credits <= 0:
            raise ValueError(f"checkout session {session['id']} bought an unknown credit pack {metadata!r}")
        credits_grant_for_purchase(team=team, amount=credits, reference=session["id"])
        intent = session.get("payment_intent")
        receipt_email_queue(team=team, payment_intent_id=intent["id"] if isinstance(intent, dict) else intent or "")
    elif session.get("mode") == "subscription" and session.get("subscription"):
        subscription = session["subscription"]
        subscription_id = subscription["id"] if isinstance(subscription, dict) else subscription
        mirror_refresh(kind="subscription", object_id=subscription_id)


def subscription_created(*, event: dict) -> None:
    subscription = _obj(event)
    team = customer_team(stripe_customer_id=subscription.get("customer"))
    if team is None:
        return
    send_team_email(team=team, template="subscription_started", context={
        "plan_name": _plan_name_of_subscription(subscription),
        "trial_end": _date(subscription.get("trial_end")) if subscription.get("status") == "trialing" else "",
    })


def subscription_updated(*, event: dict) -> None:
    """Tell the team when its plan or its cancellation changed (not for every renewal's period move)."""
    subscription = _obj(event)
    previous = (event.get("data") or {}).get("previous_attributes") or {}
    if not ({"items", "cancel_at_period_end", "cancel_at"} & set(previous)):
        return  # a renewal's period move: nothing to tell (and no team lookup on a renewal day's storm)
    team = customer_team(stripe_customer_id=subscription.get("customer"))
    if team is None:
        return
    items = (subscription.get("items") or {}).get("data") or []
    period_end = subscription.get("cancel_at") or max((i.get("current_period_end") or 0 for i in items), default=0)
    send_team_email(team=team, template="subscription_changed", context={
        "plan_name": _plan_name_of_subscription(subscription),
        "cancel_at_period_end": bool(subscription.get("cancel_at_period_end") or subscription.get("cancel_at")),
        "period_end": _date(period_end),
    })


def subscription_deleted(*, event: dict) -> None:
    subscription = _obj(event)
    team = customer_team(stripe_customer_id=subscription.get("customer"))
    if team is None:
        return
    send_team_email(team=team, template="subscription_canceled",
                    context={"plan_name": _plan_name_of_subscription(subscription)})


def subscription_trial_will_end(*, event: dict) -> None:
    subscription = _obj(event)
    team = customer_team(stripe_customer_id=subscription.get("customer"))
    if team is None:
        return
    send_team_email(team=team, template="trial_ending", context={
        "plan_name": _plan_name_of_subscription(subscription), "trial_end": _date(subscription.get("trial_end")),
    })


def invoice_paid(*, event: dict) -> None:
    invoice = _obj(event)
    team = customer_team(stripe_customer_id=invoice.get("customer"))
    if team is None or not invoice.get("amount_paid"):
        return  # a zero invoice (trial start) is not a payment
    # The charge is found when the email is sent (the task): the invoice names it only through its payments.
    intent = invoice.get("payment_intent")  # API versions before 2025-03
    receipt_email_queue(team=team, invoice_id=invoice["id"],
                        payment_intent_id=intent["id"] if isinstance(intent, dict) else intent or "",
                        charge_id=invoice.get("charge") if isinstance(invoice.get("charge"), str) else "")


def invoice_payment_paid(*, event: dict) -> None:
    """Keep which invoice the payment intent paid: the payment history recognises subscription payments by it."""
    from ..services.invoice_payments import invoice_payment_link_record

    invoice_payment_link_record(invoice_payment=_obj(event))


def invoice_payment_failed(*, event: dict) -> None:
    """Dunning notice: Stripe retries the card; the team is asked to update it (portal link on /billing/)."""
    invoice = _obj(event)
    team = customer_team(stripe_customer_id=invoice.get("customer"))
    if team is None or _pending_change_invoice(invoice):
        return
    send_team_email(team=team, template="payment_failed", context={
        "amount": format_money(invoice.get("amount_due") or 0, invoice.get("currency") or "usd"),
        "hosted_invoice_url": invoice.get("hosted_invoice_url") or "",
    })


def _pending_change_invoice(invoice: dict) -> bool:
    """
    The invoice of a plan change waiting for payment (pending_if_incomplete): Stripe does not retry it and the
    subscription is not in dunning; the customer was told on the page, so no "update your card" email.
    """
    from ..stripe_gateway import subscriptions as subscriptions_gateway

    subscription_id = ((invoice.get("parent") or {}).get("subscription_details") or {}).get("subscription")
    if invoice.get("billing_reason") != "subscription_update" or not subscription_id:
        return False
    subscription = subscriptions_gateway.subscription_retrieve(subscription_id=subscription_id)
    return bool(subscription.get("pending_update")) and subscription.get("latest_invoice") == invoice.get("id")


def charge_refunded(*, event: dict) -> None:
    """Refund email with its receipt(s), for the refunds of this event (a charge may be refunded in parts)."""
    charge = _obj(event)
    team = customer_team(stripe_customer_id=charge.get("customer"))
    previous = (event.get("data") or {}).get("previous_attributes") or {}
    refunded_now = (charge.get("amount_refunded") or 0) - (previous.get("amount_refunded") or 0)
    if team is None or refunded_now <= 0:
        return
    refund_receipt_email_queue(team=team, charge_id=charge["id"],
                               refund_ids=refunds_new_in_event(charge=charge, previous=previous,
                                                               refunded_now=refunded_now),
                               refunded_now=refunded_now)


def dispute_created(*, event: dict) -> None:
    """Flag the team for staff and tell finance: a dispute has a response deadline."""
    dispute = _obj(event)
    customer_id = None
    charge_id = dispute.get("charge")
    if isinstance(charge_id, dict):
        customer_id, charge_id = charge_id.get("customer"), charge_id.get("id")
    if customer_id is None and charge_id:
        from ..stripe_gateway.payments import charge_retrieve

        customer_id = charge_retrieve(charge_id=charge_id).get("customer")
    note = (f"Dispute {dispute['id']} on charge {charge_id}: {dispute.get('reason')}, "
            f"{format_money(dispute.get('amount') or 0, dispute.get('currency') or 'usd')}")
    team = billing_profile_flag_dispute(stripe_customer_id=customer_id, note=note)
    team_text = f"team {team} (#{team.pk})" if team else f"unknown customer {customer_id}"
    send_staff_email(subject=f"Dispute opened: {dispute['id']}", body=f"{note}\nCustomer: {team_text}\n")


def customer_deleted(*, event: dict) -> None:
    customer_unlink(stripe_customer_id=_obj(event)["id"])


def payment_intent_succeeded(*, event: dict) -> None:
    """
    Credit packs bought outside Checkout (card + 3-D Secure on our page): granted once per payment intent. Every
    other one-time payment of a team (a saved-card payment, a charge made by staff) gets its receipt email here;
    invoice payments get theirs from invoice.paid and Checkout payments from checkout.session.completed.
    """
    from ..stripe_gateway.payments import payment_intent_retrieve

    intent = _obj(event)
    metadata = intent.get("metadata") or {}
    if metadata.get("kind") != "credit_pack":
        _one_time_payment_receipt(intent)
        return
    intent = payment_intent_retrieve(payment_intent_id=intent["id"])  # current state, not the snapshot
    if intent.get("status") != "succeeded":
        return
    team = customer_team(stripe_customer_id=intent.get("customer"))
    if team is None:
        logger.warning("payment intent %s has no known team; ignored", intent["id"])
        return
    credits_grant_for_purchase(team=team, amount=int(metadata.get("credits") or 0), reference=intent["id"])
    receipt_email_queue(team=team, payment_intent_id=intent["id"])


def _one_time_payment_receipt(intent: dict) -> None:
    from ..services.invoice_payments import payment_intent_invoice_id

    if intent.get("status") != "succeeded" or (intent.get("metadata") or {}).get("source") == "checkout":
        return
    team = customer_team(stripe_customer_id=intent.get("customer"))
    if team is None:
        return
    # An invoice's payment: before API 2025-03 the intent names its invoice; since, only the invoice's payments do.
    if intent.get("invoice") or payment_intent_invoice_id(payment_intent_id=intent["id"]):
        return
    receipt_email_queue(team=team, payment_intent_id=intent["id"])


def checkout_session_async_payment_failed(*, event: dict) -> None:
    """
    A Boleto expired unpaid or a Pix was not paid: nothing was bought. Tell the team by email; the failed payment,
    mirrored here, is what /billing/ shows ("Your Boleto for 10 credits was not paid").
    """
    from ..stripe_gateway.checkout import checkout_session_retrieve

    session = checkout_session_retrieve(session_id=_obj(event)["id"])
    team = customer_team(stripe_customer_id=session.get("customer"))
    if team is None:
        logger.warning("checkout session %s has no known team; async failure ignored", session["id"])
        return
    intent = session.get("payment_intent")
    intent_id = intent["id"] if isinstance(intent, dict) else intent
    if intent_id:
        mirror_refresh(kind="payment_intent", object_id=intent_id)
    metadata = session.get("metadata") or {}
    pack = load_catalog().credit_pack_for_lookup_key(metadata.get("lookup_key", ""))
    send_team_email(team=team, template="async_payment_failed", context={
        "amount": format_money(session.get("amount_total") or 0, session.get("currency") or "brl"),
        "pack_key": pack.key if pack else "",
    })
