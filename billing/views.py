"""Billing pages: pricing, the team's billing overview, Checkout start/success/cancel, plan change, cancel, resume,
portal and credit packs paid with a saved card (3-D Secure aware). Thin: they call services and render."""
import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import get_language, gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from accounts.selectors import user_current_membership
from billing_site.errors import ApplicationError, PermissionDeniedError

from . import selectors
from .catalog import load_catalog
from .extensions import credit_ledger
from .forms_checkout import CheckoutStartForm, PlanChangeConfirmForm, form_cleaned_or_400
from .services import checkout as checkout_services
from .services import subscriptions as subscription_services


def _membership(request, *, manage: bool = False):
    membership = user_current_membership(user=request.user, team_id=request.session.get("team_id"))
    if membership is None:
        raise Http404("No team")
    if manage and not membership.can_manage:
        raise PermissionDeniedError("forbidden", _("Only the team's owner or an admin can change billing."))
    return membership


def _currency(request) -> str:
    catalog = load_catalog()
    chosen = (request.GET.get("currency") or request.POST.get("currency") or request.session.get("currency") or "").lower()
    if chosen not in catalog.currencies:
        chosen = "brl" if (get_language() or "").lower().startswith("pt") else catalog.default_currency
    request.session["currency"] = chosen
    return chosen


def pricing(request):
    currency = _currency(request)
    current_plan = None
    if request.user.is_authenticated:
        membership = user_current_membership(user=request.user, team_id=request.session.get("team_id"))
        if membership is not None:
            current_plan = selectors.team_plan(team=membership.team)
    return render(request, "billing/pricing.html", {
        "pricing": selectors.pricing_table(currency=currency, language=get_language()),
        "currency": currency,
        "currencies": load_catalog().currencies,
        "current_plan": current_plan,
        "form_token": uuid.uuid4().hex,  # one per rendered form: a double submit reuses the checkout
    })


@login_required
def overview(request):
    membership = _membership(request)
    team = membership.team
    context = selectors.billing_overview(team=team, language=get_language())
    context.update(team=team, membership=membership, form_token=uuid.uuid4().hex)
    context["usage_panel"] = credit_ledger().panel_context(team=team)
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
    from billing_site.money import format_money

    return render(request, "billing/checkout_success.html", {
        "result": result, "amount": format_money(result.amount_total, result.currency, get_language()),
    })


@login_required
def checkout_cancel(request):
    return render(request, "billing/checkout_cancel.html", {"lookup_key": request.GET.get("lookup_key", "")})


@login_required
@require_http_methods(["GET", "POST"])
def change_plan(request, lookup_key: str):
    team = _membership(request, manage=True).team
    if request.method == "POST":
        confirmed = form_cleaned_or_400(PlanChangeConfirmForm(request.POST), code="invalid_proration_date")
        subscription_services.subscription_change(
            team=team, lookup_key=lookup_key, proration_date=confirmed["proration_date"] or 0
        )
        messages.success(request, _("Your plan was changed."))
        return redirect("billing:overview")
    preview = subscription_services.subscription_change_preview(team=team, lookup_key=lookup_key)
    from billing_site.money import format_money

    return render(request, "billing/change_plan.html", {
        "preview": preview, "amount": format_money(preview.amount_due, preview.currency, get_language()),
        "lines": [{**line, "amount_text": format_money(line["amount"], preview.currency, get_language())}
                  for line in preview.lines],
    })


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
    from billing_site.money import format_money

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
