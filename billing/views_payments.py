"""
The team's payment history (/billing/payments/) and the project's own PDF receipts (issue 13). Any member of the team
may read them; another team's payment answers 404, like an id that does not exist. Thin: selectors and services.
"""
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils.translation import get_language
from django.views.decorators.http import require_GET

from billing_site.errors import NotFoundError
from billing_site.money import format_money

from . import selectors
from .forms_payments import PaymentFilterForm, PaymentKind, PaymentStatus
from .receipts import receipt_filename, receipt_for_charge_get_or_create, receipt_for_refund_get_or_create
from .views import _membership

PAYMENTS_PER_PAGE = 20


def _payment_view(payment: selectors.PaymentRow, *, language: str, receipts: dict[str, str]) -> dict:
    money = lambda amount: format_money(amount, payment.currency, language)  # noqa: E731
    return {
        "payment": payment, "amount_text": money(payment.amount_minor),
        "status_text": PaymentStatus(payment.status).label, "kind_text": PaymentKind(payment.kind).label,
        "refunds": [{"refund": r, "amount_text": money(r.amount_minor), "receipt_number": receipts.get(r.id, "")}
                    for r in payment.refunds if r.status == "succeeded"],
        "receipt_number": receipts.get("payment", ""),
    }


@login_required
@require_GET
def payments(request):
    team = _membership(request).team
    form = PaymentFilterForm(request.GET or None)
    form.is_valid()  # an invalid filter is shown with its error; the valid ones still apply
    filters = form.filters() if form.is_bound else PaymentFilterForm().filters()
    rows = selectors.team_payments(team=team, status=filters.status, kind=filters.kind,
                                   created_gte=filters.created_gte, created_lte=filters.created_lte)
    page = Paginator(rows, PAYMENTS_PER_PAGE).get_page(request.GET.get("page"))
    receipts = selectors.team_receipts_by_charge(team=team, charge_ids=[p.id for p in page.object_list])
    language = get_language()
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "billing/payments.html", {
        "form": form, "page": page, "query": query.urlencode(), "team": team,
        "payments": [_payment_view(p, language=language, receipts=receipts.get(p.id, {})) for p in page.object_list],
        "filtered": any([filters.status, filters.kind, filters.created_gte, filters.created_lte]),
    })


def _pdf_response(receipt) -> HttpResponse:
    response = HttpResponse(bytes(receipt.pdf), content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{receipt_filename(receipt)}"'
    # A receipt names the team and its card: private to the browser that fetched it.
    response["Cache-Control"] = "private, max-age=3600"
    return response


@login_required
@require_GET
def payment_receipt(request, payment_id: str):
    """The payment's receipt, issued on the first request (in the team owner's language) and served as issued."""
    team = _membership(request).team
    try:
        receipt = receipt_for_charge_get_or_create(team=team, payment_id=payment_id)
    except NotFoundError as error:
        raise Http404(error.user_message) from error
    return _pdf_response(receipt)


@login_required
@require_GET
def refund_receipt(request, payment_id: str, refund_id: str):
    team = _membership(request).team
    try:
        receipt = receipt_for_refund_get_or_create(team=team, payment_id=payment_id, refund_id=refund_id)
    except NotFoundError as error:
        raise Http404(error.user_message) from error
    return _pdf_response(receipt)
