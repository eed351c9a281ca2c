"""Billing pages: pricing, the team's billing overview, Checkout start/success/cancel, plan change, cancel, resume,
portal and credit packs paid with a saved card (3-D Secure aware). Thin: they call services and render."""
import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.core import signing
from django.utils.crypto import constant_time_compare
from django.utils.translation import get_language, gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from accounts.selectors import user_current_membership
from billing_site.errors import ApplicationError, PermissionDeniedError

from . import selectors
from .catalog import load_catalog
from .extensions import credit_ledger
from billing_site.money import format_money

from .forms_checkout import CheckoutStartForm, PlanChangeConfirmForm, form_cleaned_or_400
from .services import checkout as checkout_services
from .services import payment_methods as payment_method_services
from .services import subscriptions as subscription_services


def _membership(request, *, manage: bool = False):
    membership = user_current_membership(user=request.user, team_id=request.session.get("team_id"))
    if membership is None:
        raise Http404("No team")
    if manage and not membership.can_manage:
        raise PermissionDeniedError("forbidden", _("Only the team's owner or an admin can change billing."))
    return membership


def _currency(request) -> str:
    """
    The currency the customer chose (query or form, remembered in the session); without a choice, the language's
    (BRL in Portuguese). Only a choice is remembered, so switching to Português keeps a chosen USD, while a visitor
    who never chose sees reais in Portuguese and dollars in English.
    """
    catalog = load_catalog()
    chosen = (request.GET.get("currency") or request.POST.get("currency") or "").lower()
    if chosen in catalog.currencies:
        request.session["currency"] = chosen
        return chosen
    remembered = (request.session.get("currency") or "").lower()
    if remembered in catalog.currencies:
        return remembered
    return "brl" if (get_language() or "").lower().startswith("pt") else catalog.default_currency


def pricing(request):
    currency = _currency(request)
    current_plan = None
    current_price = ""
    if request.user.is_authenticated:
        membership = user_current_membership(user=request.user, team_id=request.session.get("team_id"))
        if membership is not None:
            current_plan = selectors.team_plan(team=membership.team)
            summary = selectors.subscription_summary(selectors.team_subscription(team=membership.team))
            current_price = (summary or {}).get("lookup_key") or ""
    return render(request, "billing/pricing.html", {
        "pricing": selectors.pricing_table(currency=currency, language=get_language()),
        "currency": currency,
        "currencies": load_catalog().currencies,
        "current_plan": current_plan, "current_price": current_price,
        "form_token": uuid.uuid4().hex,  # one per rendered form: a double submit reuses the checkout
    })


@login_required
def overview(request):
    membership = _membership(request)
    team = membership.team
    context = selectors.billing_overview(team=team, language=get_language())
    context.update(team=team, membership=membership, form_token=uuid.uuid4().hex,
                   card_test_shortcut_offered=payment_method_services.card_test_shortcut_offered())
    context["usage_panel"] = credit_ledger().panel_context(team=team)
    if context["has_customer"]:
        default_id = payment_method_services.team_default_payment_method_id(team=team)
        context["cards"] = [{**card, "is_default": card["id"] == default_id}
                            for card in selectors.team_saved_cards(team=team)]
        context["scheduled_change"] = subscription_services.subscription_scheduled_change(team=team)
        context["pending_change"] = subscription_services.subscription_pending_change(team=team)
        context["async_payments"] = [
            {**row, "amount_text": format_money(row["amount"], row["currency"], get_language())}
            for row in selectors.team_async_payments(team=team)]
    return render(request, "billing/overview.html", context)


@login_required
@require_POST
def checkout_start(request, lookup_key: str):
    team = _membership(request, manage=True).team
    try:
        start = checkout_services.checkout_session_start(
            team=team, user=request.user, lookup_key=lookup_key, currency=_currency(request),
            quantity=form_cleaned_or_400(CheckoutStartForm(request.POST), code="invalid_quantity")["quantity"] or 1,
            request_token=request.POST.get("form_token", ""),
        )
    except ApplicationError as error:
        if error.code == "already_subscribed":
            messages.info(request, error.user_message)
            return redirect(error.extra["change_url"])
        raise
    return redirect(start.url, permanent=False)


@login_required
def checkout_success(request):
    team = _membership(request).team
    session_id = request.GET.get("session_id", "")
    if not session_id:
        return redirect("billing:overview")
    result = checkout_services.checkout_session_confirm(team=team, session_id=session_id)
    return render(request, "billing/checkout_success.html", {
        "result": result, "amount": format_money(result.amount_total, result.currency, get_language()),
    })


@login_required
def checkout_cancel(request):
    return render(request, "billing/checkout_cancel.html", {"lookup_key": request.GET.get("lookup_key", "")})


_CHANGE_SALT = "billing.change_plan"


def _change_signature(*, team_id: int, lookup_key: str, proration_date: int) -> str:
    """Ties the form's proration date to the team and the plan: the confirmed change is the change previewed."""
    return signing.Signer(salt=_CHANGE_SALT).signature(f"{team_id}:{lookup_key}:{proration_date}")


def _form_error(request, message: str, status: int = 400):
    return render(request, "error.html", {"code": "invalid", "message": message}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def change_plan(request, lookup_key: str):
    team = _membership(request, manage=True).team
    if request.method == "POST":
        # Malformed input is refused before anything is read from Stripe (a downgrade posts no proration date).
        proration_date = form_cleaned_or_400(PlanChangeConfirmForm(request.POST),
                                             code="invalid_proration_date")["proration_date"]
    downgrade = subscription_services.plan_change_is_downgrade(team=team, lookup_key=lookup_key)
    if request.method == "POST":
        if downgrade:
            subscription_services.subscription_downgrade_at_period_end(team=team, lookup_key=lookup_key)
            messages.success(request, _("Your plan changes at the end of the current period."))
            return redirect("billing:overview")
        if proration_date is None:
            return _form_error(request, _("This price preview is not valid. Please review the change again."))
        expected = _change_signature(team_id=team.pk, lookup_key=lookup_key, proration_date=proration_date)
        if not constant_time_compare(expected, request.POST.get("signature", "")):
            return _form_error(request, _("This price preview is not valid. Please review the change again."))
        outcome = subscription_services.subscription_change_on_session(
            team=team, lookup_key=lookup_key, proration_date=proration_date)
        if outcome.status == "requires_action" and outcome.redirect_url:
            return redirect(outcome.redirect_url)
        return _plan_change_message(request, outcome)
    summary = selectors.subscription_summary(selectors.team_subscription(team=team))
    currency = (summary or {}).get("currency") or "usd"
    plan, price = load_catalog().plan_for_lookup_key(lookup_key) or (None, None)
    new_price = selectors.price_amounts(lookup_key=lookup_key).get(currency, price.amounts.get(currency) if price else 0)
    context = {"downgrade": downgrade, "plan": plan, "price": price, "summary": summary,
               "new_price": format_money(new_price, currency, get_language())}
    if not downgrade:
        preview = subscription_services.subscription_change_preview(team=team, lookup_key=lookup_key)
        renewal = summary and summary["current_period_end"]
        if summary and summary["interval"] != price.interval:
            renewal = None  # a new interval restarts the cycle today: the next renewal is a period from now
        context.update(
            preview=preview, amount=format_money(preview.amount_due, preview.currency, get_language()),
            signature=_change_signature(team_id=team.pk, lookup_key=lookup_key,
                                        proration_date=preview.proration_date),
            renewal=renewal,
            lines=[{"description": _("Unused time on your current plan") if line["amount"] < 0
                    else _("The new plan until your next renewal"),
                    "amount_text": format_money(line["amount"], preview.currency, get_language())}
                   for line in preview.lines if line["amount"]],
        )
    return render(request, "billing/change_plan.html", context)


@login_required
def plan_change_return(request):
    """Where the bank's 3-D Secure page sends the customer back after a plan change."""
    team = _membership(request, manage=True).team
    outcome = subscription_services.plan_change_authentication_result(
        team=team, payment_intent_id=request.GET.get("payment_intent", ""))
    return _plan_change_message(request, outcome)


def _plan_change_message(request, outcome):
    if outcome.status == "changed":
        messages.success(request, _("Your plan was changed."))
    else:
        messages.error(request, _("The payment did not go through, so your plan was not changed: %(reason)s "
                                  "Add or choose another card below and try again.")
                       % {"reason": outcome.error or _("Your card was declined.")})
        return redirect(reverse("billing:overview") + "#cards")
    return redirect("billing:overview")


@login_required
@require_POST
def scheduled_change_cancel(request):
    team = _membership(request, manage=True).team
    subscription_services.subscription_downgrade_cancel(team=team)
    messages.success(request, _("You keep your current plan."))
    return redirect("billing:overview")


# -- saved cards --------------------------------------------------------------------------------------------------
@login_required
@require_POST
def card_default(request, payment_method_id: str):
    team = _membership(request, manage=True).team
    payment_method_services.payment_method_set_default(team=team, payment_method_id=payment_method_id)
    messages.success(request, _("Your default card was changed."))
    return redirect(reverse("billing:overview") + "#cards")


@login_required
@require_POST
def card_remove(request, payment_method_id: str):
    team = _membership(request, manage=True).team
    payment_method_services.payment_method_remove(team=team, payment_method_id=payment_method_id)
    messages.success(request, _("The card was removed."))
    return redirect(reverse("billing:overview") + "#cards")


@login_required
@require_POST
def card_checkout(request):
    """"Add a card": off to Stripe's hosted card form (Checkout in setup mode), in test and live mode alike."""
    team = _membership(request, manage=True).team
    start = payment_method_services.card_setup_session_start(
        team=team, user=request.user, request_token=request.POST.get("form_token", ""))
    return redirect(start.url, permanent=False)


@login_required
def card_checkout_success(request):
    team = _membership(request, manage=True).team
    outcome = payment_method_services.card_setup_session_result(
        team=team, session_id=request.GET.get("session_id", ""))
    return _card_message(request, outcome)


@login_required
def card_checkout_cancel(request):
    _membership(request, manage=True)
    messages.info(request, _("No card was added."))
    return redirect(reverse("billing:overview") + "#cards")


@login_required
@require_http_methods(["GET", "POST"])
def card_add(request):
    """The way to the hosted card form and, in test mode, the test-card shortcut beside it."""
    team = _membership(request, manage=True).team
    if request.method == "POST":
        outcome = payment_method_services.setup_intent_start(
            team=team, test_card=request.POST.get("card", ""), request_token=request.POST.get("form_token", ""))
        if outcome.status == "requires_action" and outcome.redirect_url:
            return redirect(outcome.redirect_url)
        return _card_message(request, outcome)
    test_cards = payment_method_services.card_test_shortcut_offered()
    return render(request, "billing/card_add.html", {
        "cards": payment_method_services.TEST_CARDS if test_cards else {}, "form_token": uuid.uuid4().hex,
        "test_form_token": uuid.uuid4().hex,
    })


@login_required
def card_return(request):
    team = _membership(request, manage=True).team
    outcome = payment_method_services.setup_intent_result(
        team=team, setup_intent_id=request.GET.get("setup_intent", ""))
    return _card_message(request, outcome)


def _card_message(request, outcome):
    if outcome.status == "succeeded":
        messages.success(request, _("Your card was saved."))
    else:
        messages.error(request, _("The card was not saved: %(reason)s") % {
            "reason": outcome.error or _("Your card was declined.")})
    return redirect(reverse("billing:overview") + "#cards")


@login_required
@require_http_methods(["GET", "POST"])
def subscription_cancel(request):
    team = _membership(request, manage=True).team
    if request.method == "POST":
        subscription_services.subscription_cancel_at_period_end(team=team)
        messages.success(request, _("Your subscription will end at the end of the current period."))
        return redirect("billing:overview")
    return render(request, "billing/confirm.html", {
        "title": _("Cancel your subscription?"),
        "text": _("Your plan stays active until the end of the period you paid for; nothing more is charged."),
        "action": reverse("billing:subscription_cancel"), "button": _("Cancel at period end"),
    })


@login_required
@require_POST
def subscription_resume(request):
    team = _membership(request, manage=True).team
    subscription_services.subscription_resume(team=team)
    messages.success(request, _("Your subscription will continue."))
    return redirect("billing:overview")


@login_required
@require_POST
def portal(request):
    team = _membership(request, manage=True).team
    return redirect(subscription_services.portal_session_start(team=team))


@login_required
@require_http_methods(["GET", "POST"])
def pay_credit_pack(request, lookup_key: str):
    """Buy a credit pack with a saved card, without Checkout. 3-D Secure sends the user to the bank's challenge."""
    team = _membership(request, manage=True).team
    pack = load_catalog().credit_pack_for_lookup_key(lookup_key)
    if pack is None:
        raise Http404("Unknown credit pack")
    currency = _currency(request)
    if request.method == "POST":
        outcome = subscription_services.credit_pack_pay_with_card(
            team=team, lookup_key=lookup_key, payment_method_id=request.POST.get("payment_method", ""),
            currency=currency, request_token=request.POST.get("form_token", ""),
        )
        if outcome.status == "requires_action" and outcome.redirect_url:
            return redirect(outcome.redirect_url)
        return _payment_message(request, outcome)
    return render(request, "billing/pay.html", {
        "pack": pack, "amount": format_money(pack.amounts[currency], currency, get_language()), "currency": currency,
        "cards": selectors.team_saved_cards(team=team), "form_token": uuid.uuid4().hex,
    })


@login_required
def payment_return(request):
    """Where the 3-D Secure challenge returns: re-read the payment intent, never trust the query string."""
    team = _membership(request).team
    outcome = subscription_services.payment_intent_status(
        team=team, payment_intent_id=request.GET.get("payment_intent", "")
    )
    return _payment_message(request, outcome)


def _payment_message(request, outcome):
    if outcome.status == "succeeded":
        messages.success(request, _("Payment received. Your credits will appear in a moment."))
    elif outcome.status == "processing":
        messages.info(request, _("Your payment is processing."))
    else:
        messages.error(request, outcome.error or _("The payment did not go through. Nothing was charged."))
    return redirect("billing:overview")
