"""
Refund requests (DESIGN invariant 2): executed at most once (idempotency key derived from the request), never above the
refundable amount, `billing.approve_refund` and a second person above REFUND_APPROVAL_THRESHOLD, every step audited.

Lock order: the mirrored charge row (djstripe_charge) first, then the refund request row, then the audit chain.
Two staff acting on the same charge at once therefore queue on the charge row, and the second one sees the first
one's request in the refundable amount.

Execution (Zulip-style markers): a short transaction moves the request to `processing` and stamps
`execution_started_at` (STARTED); the Stripe call happens outside any transaction; a second short transaction stores
the refund id and `execution_finished_at` (DONE). A request found STARTED without DONE is resolved by repeating the
call with the same idempotency key (Stripe answers with the refund it already made) after looking the refund up at
Stripe by its metadata, never by a call with a fresh key.
"""
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone
from djstripe import models as djstripe_models

from accounts.models import Team
from billing.extensions import credit_ledger
from billing.models import AuditEntry, RefundRequest
from billing.stripe_gateway import refunds as refund_gateway
from billing_site.backoff import backoff_seconds
from billing_site.errors import ApplicationError, BillingError, NotFoundError, PermissionDeniedError
from billing_site.money import format_money

from .audit import StaffContext, audit_record, staff_require
from billing.services.mirror import mirror_store

logger = logging.getLogger("billing.backoffice")

Status = RefundRequest.Status


class RefundInputError(ApplicationError):
    """Bad refund input (amount, currency, charge state): shown as a form error; nothing is sent to Stripe."""

    http_status = 400


@dataclass(frozen=True)
class ChargeRefundFacts:
    charge_id: str
    amount_minor: int
    currency: str
    status: str
    disputed: bool
    stripe_amount_refunded: int
    customer_id: str
    payment_intent_id: str
    team: Team | None
    refundable_minor: int

    @property
    def refundable_display(self) -> str:
        return format_money(self.refundable_minor, self.currency)

    @property
    def amount_display(self) -> str:
        return format_money(self.amount_minor, self.currency)


def refund_request_idempotency_key(*, refund_request: RefundRequest) -> str:
    """
    `refund_request:<id>` for the first attempt. Stripe stores the answer of a key for 24 hours, errors included, so a
    staff retry after a recorded failure uses `refund_request:<id>:attempt:<n>`, and only after Stripe was searched
    for a refund carrying this request's id in its metadata (see refund_request_execute).
    """
    if refund_request.attempts <= 1:
        return f"refund_request:{refund_request.pk}"
    return f"refund_request:{refund_request.pk}:attempt:{refund_request.attempts}"


def refund_approval_threshold(*, currency: str) -> int:
    """Minor units of `currency` above which a second person must approve (DESIGN: REFUND_APPROVAL_THRESHOLD)."""
    return int(settings.REFUND_APPROVAL_THRESHOLD)


# --------------------------------------------------------------------------------------------------- refundable

def _committed_minor(*, charge: djstripe_models.Charge, exclude_request_id: int | None = None) -> int:
    """What is refunded or on its way: Stripe's refunded amount (or our settled requests if the mirror lags) plus
    requests that still hold a share of the charge."""
    data = charge.stripe_data or {}
    requests = RefundRequest.objects.filter(stripe_charge_id=charge.id)
    if exclude_request_id is not None:
        requests = requests.exclude(pk=exclude_request_id)
    settled = (
        requests.filter(status=Status.SUCCEEDED).aggregate(total=Sum("amount_minor"))["total"] or 0
    ) + (
        requests.filter(status=Status.PROCESSING, stripe_refund_status__in=["succeeded", "pending"])
        .aggregate(total=Sum("amount_minor"))["total"] or 0
    )
    reserved = (
        requests.filter(status__in=RefundRequest.RESERVING_STATUSES)
        .exclude(status=Status.PROCESSING, stripe_refund_status__in=["succeeded", "pending"])
        .aggregate(total=Sum("amount_minor"))["total"] or 0
    )
    return max(int(data.get("amount_refunded") or 0), settled) + reserved


def charge_refund_facts(*, charge: djstripe_models.Charge, exclude_request_id: int | None = None) -> ChargeRefundFacts:
    data = charge.stripe_data or {}
    amount = int(data.get("amount") or 0)
    customer = charge.customer if charge.customer_id else None
    refundable = max(0, amount - _committed_minor(charge=charge, exclude_request_id=exclude_request_id))
    return ChargeRefundFacts(
        charge_id=charge.id,
        amount_minor=amount,
        currency=(data.get("currency") or charge.currency or "").lower(),
        status=data.get("status") or str(charge.status or ""),
        disputed=bool(data.get("disputed")),
        stripe_amount_refunded=int(data.get("amount_refunded") or 0),
        customer_id=charge.customer_id or "",
        payment_intent_id=charge.payment_intent_id or "",
        team=customer.subscriber if customer is not None else None,
        refundable_minor=refundable,
    )


def charge_for_refund(*, charge_id: str, refresh: bool = True) -> djstripe_models.Charge:
    """The mirrored charge, refreshed from Stripe first (refunded amount and disputes move outside our control)."""
    if refresh:
        try:
            return mirror_store(kind="charge", data=refund_gateway.charge_retrieve(charge_id=charge_id))
        except BillingError as error:
            if error.code == "stripe_resource_missing":
                raise NotFoundError("charge_not_found", f"Stripe has no charge {charge_id}.") from error
            logger.warning("charge %s not refreshed before a refund (%s); using the mirror", charge_id, error.code)
    charge = djstripe_models.Charge.objects.select_related("customer").filter(id=charge_id).first()
    if charge is None:
        raise NotFoundError("charge_not_found", f"No charge {charge_id} in the mirror.")
    return charge


def charge_invoice_id(*, charge: djstripe_models.Charge) -> str:
    """
    The invoice a charge paid ("" for a one-off payment). Since API 2025-03 neither the charge nor its payment
    intent names the invoice: Stripe's invoice payments do (the recorded link, else one read that records it).
    """
    from billing.services.invoice_payments import payment_intent_invoice_id

    if not charge.payment_intent_id:
        return ""
    try:
        return payment_intent_invoice_id(payment_intent_id=charge.payment_intent_id)
    except BillingError as error:
        logger.warning("invoice of charge %s unknown (%s)", charge.id, error.code)
        raise


def _check_refundable(*, facts: ChargeRefundFacts, amount_minor: int, currency: str) -> None:
    if facts.status != "succeeded":
        raise RefundInputError("charge_not_refundable",
                               f"This charge has the status “{facts.status}”: only a successful charge can be refunded.")
    if facts.disputed:
        raise RefundInputError("charge_disputed",
                               "This charge is disputed: the dispute decides the money, a refund cannot be issued.")
    if currency.lower() != facts.currency:
        raise RefundInputError("currency_mismatch",
                               f"A refund is in the charge's currency ({facts.currency.upper()}), "
                               f"not {currency.upper()}.")
    if amount_minor <= 0:
        raise RefundInputError("amount_not_positive", "The refund amount must be more than zero.")
    if amount_minor > facts.refundable_minor:
        raise RefundInputError(
            "amount_above_refundable",
            f"The refund amount ({format_money(amount_minor, facts.currency)}) is more than what can still be "
            f"refunded ({facts.refundable_display}, counting refunds already made or in progress).",
        )


def _lock_charge(charge: djstripe_models.Charge) -> djstripe_models.Charge:
    return djstripe_models.Charge.objects.select_for_update(of=("self",)).select_related("customer").get(pk=charge.pk)


def _snapshot(rr: RefundRequest) -> dict:
    snapshot = {"status": rr.status, "amount_minor": rr.amount_minor, "currency": rr.currency,
                "stripe_refund_id": rr.stripe_refund_id}
    if rr.stripe_invoice_id:
        snapshot |= {"invoice": rr.stripe_invoice_id, "credit_to_balance": rr.credit_to_balance,
                     "stripe_credit_note_id": rr.stripe_credit_note_id}
    return snapshot


def refund_request_enqueue_now(*, refund_request_id: int, expires_seconds: float | None = None) -> bool:
    """
    Send the execution task; False (logged) when the broker is unreachable. Never raises: the request row says what
    is left to do (APPROVED or PROCESSING with `next_attempt_at`), and the periodic sweep sends it again.
    """
    # Imported when used: the tasks module imports this one (service -> task enqueue is the one allowed cycle).
    from billing_site.celery import task_send

    from .tasks import refund_request_execute_task

    return task_send(refund_request_execute_task, (refund_request_id,), what=f"refund request {refund_request_id}",
                     **({"expires": expires_seconds} if expires_seconds else {}))


def _enqueue_execution(refund_request_id: int) -> None:
    transaction.on_commit(lambda: refund_request_enqueue_now(refund_request_id=refund_request_id))


def _lease_end():
    """Until then a running attempt owns the request; after it the sweep may resume it (same idempotency key)."""
    return timezone.now() + timedelta(seconds=settings.BACKOFFICE_REFUND_LEASE_SECONDS)


def refund_retry_delay_seconds(tries: int) -> int:
    """Wait before the next call after `tries` calls could not reach Stripe: 20 s, 40 s ... capped at 10 minutes."""
    return backoff_seconds(attempts=tries + 1, base=10, cap=600)


# --------------------------------------------------------------------------------------------------- workflow

def refund_request_create(*, staff: StaffContext, charge_id: str, amount_minor: int, currency: str, reason: str,
                          note: str = "", invoice_id: str = "", credit_to_balance: bool = False) -> RefundRequest:
    """
    Ask for a refund of (part of) a charge. At or below the threshold, a requester who may approve refunds gets it
    approved at once; everything else waits for an approver. With `invoice_id` (the charge paid that invoice, see
    `charge_invoice_id`), the refund is issued as a credit note on the invoice, to the card or, with
    `credit_to_balance`, to the customer's Stripe balance.
    """
    staff_require(staff=staff, permission="billing.request_refund", attempted="refund_request_create",
                  target_type="stripe.charge", target_id=charge_id)
    if reason not in RefundRequest.Reason.values:
        raise RefundInputError("invalid_reason", "Choose a refund reason.")
    if not isinstance(amount_minor, int):
        raise RefundInputError("amount_not_integer", "The amount must be a whole number of minor units.")
    if credit_to_balance and not invoice_id:
        raise RefundInputError("balance_needs_invoice",
                               "Only an invoice's payment can be credited to the customer balance.")
    charge = charge_for_refund(charge_id=charge_id)
    if invoice_id and charge_invoice_id(charge=charge) != invoice_id:
        raise RefundInputError("invoice_mismatch", "This payment did not pay that invoice.")
    # Cheap checks before the lock (so a bad form never waits on a busy charge); repeated under the lock.
    _check_refundable(facts=charge_refund_facts(charge=charge), amount_minor=amount_minor, currency=currency)
    with transaction.atomic():
        charge = _lock_charge(charge)
        facts = charge_refund_facts(charge=charge)
        _check_refundable(facts=facts, amount_minor=amount_minor, currency=currency)
        refund_request = RefundRequest(
            team=facts.team,
            stripe_charge_id=facts.charge_id,
            stripe_payment_intent_id=facts.payment_intent_id,
            stripe_customer_id=facts.customer_id,
            amount_minor=amount_minor,
            currency=facts.currency,
            charge_amount_minor=facts.amount_minor,
            reason=reason,
            note=note or "",
            requested_by=staff.user,
            stripe_invoice_id=invoice_id or "",
            credit_to_balance=bool(credit_to_balance),
        )
        refund_request.full_clean()
        refund_request.save()
        audit_record(staff=staff, action=AuditEntry.Action.REFUND_REQUESTED, target_type="refund_request",
                     target_id=refund_request.pk, team=facts.team, before={"refundable_minor": facts.refundable_minor},
                     after=_snapshot(refund_request) | {"charge": facts.charge_id}, reason=note)
        if staff.has_perm("billing.approve_refund") and amount_minor <= refund_approval_threshold(
            currency=facts.currency
        ):
            _approve_locked(refund_request=refund_request, staff=staff, note="approved at request (at or below "
                            "the approval threshold)")
    logger.info("refund request %s created for charge %s: %s %s by user %s", refund_request.pk, charge_id,
                amount_minor, currency, staff.user.pk if staff.user else None)
    return refund_request


def _approve_locked(*, refund_request: RefundRequest, staff: StaffContext, note: str = "") -> None:
    before = _snapshot(refund_request)
    refund_request.status = Status.APPROVED
    refund_request.approved_by = staff.user
    refund_request.approved_at = timezone.now()
    refund_request.next_attempt_at = _lease_end()  # the sweep sends it if this enqueue is lost
    refund_request.save(update_fields=["status", "approved_by", "approved_at", "next_attempt_at", "updated"])
    audit_record(staff=staff, action=AuditEntry.Action.REFUND_APPROVED, target_type="refund_request",
                 target_id=refund_request.pk, team=refund_request.team, before=before,
                 after=_snapshot(refund_request), reason=note)
    _enqueue_execution(refund_request.pk)


def _get_request(refund_request_id: int) -> RefundRequest:
    refund_request = RefundRequest.objects.select_related("team").filter(pk=refund_request_id).first()
    if refund_request is None:
        raise NotFoundError("refund_request_not_found", "No such refund request.")
    return refund_request


def _lock_charge_and_request(refund_request: RefundRequest) -> tuple[djstripe_models.Charge | None, RefundRequest]:
    """Locks in the documented order: the charge row, then the request row."""
    charge = (djstripe_models.Charge.objects.select_for_update(of=("self",)).select_related("customer")
              .filter(id=refund_request.stripe_charge_id).first())
    locked = RefundRequest.objects.select_for_update().get(pk=refund_request.pk)
    return charge, locked


def refund_request_approve(*, staff: StaffContext, refund_request_id: int, note: str = "") -> RefundRequest:
    """Approve a pending request. Never by its requester; re-checks the refundable amount under the charge lock."""
    refund_request = _get_request(refund_request_id)
    staff_require(staff=staff, permission="billing.approve_refund", attempted="refund_request_approve",
                  target_type="refund_request", target_id=refund_request.pk, team=refund_request.team)
    if staff.user is not None and refund_request.requested_by_id == staff.user.pk:
        audit_record(staff=staff, action=AuditEntry.Action.PERMISSION_DENIED, outcome=AuditEntry.Outcome.DENIED,
                     target_type="refund_request", target_id=refund_request.pk, team=refund_request.team,
                     after={"attempted": "refund_request_approve", "rule": "four_eyes"})
        raise PermissionDeniedError("four_eyes", "You asked for this refund, so someone else must approve it.")
    with transaction.atomic():
        charge, refund_request = _lock_charge_and_request(refund_request)
        if refund_request.status != Status.REQUESTED:
            raise ApplicationError("refund_request_not_pending",
                                   f"This refund request is already {refund_request.get_status_display().lower()}.",
                                   http_status=409)
        if charge is not None:
            facts = charge_refund_facts(charge=charge, exclude_request_id=refund_request.pk)
            _check_refundable(facts=facts, amount_minor=refund_request.amount_minor, currency=refund_request.currency)
        _approve_locked(refund_request=refund_request, staff=staff, note=note)
    return refund_request


def refund_request_reject(*, staff: StaffContext, refund_request_id: int, note: str = "") -> RefundRequest:
    refund_request = _get_request(refund_request_id)
    staff_require(staff=staff, permission="billing.approve_refund", attempted="refund_request_reject",
                  target_type="refund_request", target_id=refund_request.pk, team=refund_request.team)
    return _close(staff=staff, refund_request=refund_request, status=Status.REJECTED,
                  action=AuditEntry.Action.REFUND_REJECTED, allowed=(Status.REQUESTED,), note=note)


def refund_request_cancel(*, staff: StaffContext, refund_request_id: int, note: str = "") -> RefundRequest:
    """The requester (or an approver) withdraws a request that has not reached Stripe, or a failed one."""
    refund_request = _get_request(refund_request_id)
    if not (staff.user is not None and refund_request.requested_by_id == staff.user.pk):
        staff_require(staff=staff, permission="billing.approve_refund", attempted="refund_request_cancel",
                      target_type="refund_request", target_id=refund_request.pk, team=refund_request.team)
    return _close(staff=staff, refund_request=refund_request, status=Status.CANCELED,
                  action=AuditEntry.Action.REFUND_CANCELED, allowed=(Status.REQUESTED, Status.FAILED), note=note)


def _close(*, staff, refund_request, status, action, allowed, note) -> RefundRequest:
    with transaction.atomic():
        _charge, refund_request = _lock_charge_and_request(refund_request)
        if refund_request.status not in allowed or refund_request.stripe_refund_id:
            raise ApplicationError("refund_request_not_closable",
                                   f"A {refund_request.get_status_display().lower()} request cannot be closed now.",
                                   http_status=409)
        before = _snapshot(refund_request)
        refund_request.status = status
        refund_request.decided_by = staff.user
        refund_request.decision_note = note or ""
        refund_request.completed_at = timezone.now()
        refund_request.save(update_fields=["status", "decided_by", "decision_note", "completed_at", "updated"])
        audit_record(staff=staff, action=action, target_type="refund_request", target_id=refund_request.pk,
                     team=refund_request.team, before=before, after=_snapshot(refund_request), reason=note)
    return refund_request


def refund_request_retry(*, staff: StaffContext, refund_request_id: int, note: str = "") -> RefundRequest:
    """Send a failed request again (approvers only), after re-checking the refundable amount."""
    refund_request = _get_request(refund_request_id)
    staff_require(staff=staff, permission="billing.approve_refund", attempted="refund_request_retry",
                  target_type="refund_request", target_id=refund_request.pk, team=refund_request.team)
    with transaction.atomic():
        charge, refund_request = _lock_charge_and_request(refund_request)
        if refund_request.status != Status.FAILED or refund_request.stripe_refund_id or (
                refund_request.stripe_credit_note_id):
            raise ApplicationError("refund_request_not_retryable",
                                   "Only a failed request that never reached a Stripe refund can be retried; "
                                   "otherwise open a new request.", http_status=409)
        if charge is not None:
            facts = charge_refund_facts(charge=charge, exclude_request_id=refund_request.pk)
            _check_refundable(facts=facts, amount_minor=refund_request.amount_minor, currency=refund_request.currency)
        before = _snapshot(refund_request)
        refund_request.status = Status.APPROVED
        refund_request.last_error = ""
        refund_request.last_error_code = ""
        refund_request.next_attempt_at = _lease_end()
        refund_request.save(update_fields=["status", "last_error", "last_error_code", "next_attempt_at", "updated"])
        audit_record(staff=staff, action=AuditEntry.Action.REFUND_RETRIED, target_type="refund_request",
                     target_id=refund_request.pk, team=refund_request.team, before=before,
                     after=_snapshot(refund_request), reason=note)
        _enqueue_execution(refund_request.pk)
    return refund_request


# --------------------------------------------------------------------------------------------------- execution

class RefundStripeUnavailable(Exception):
    """Stripe could not be reached: the outcome is unknown, the request stays STARTED and the task retries."""


def _find_refund_at_stripe(refund_request: RefundRequest) -> dict | None:
    for refund in refund_gateway.refunds_for_charge(charge_id=refund_request.stripe_charge_id):
        if (refund.get("metadata") or {}).get("refund_request_id") == str(refund_request.pk):
            return refund
    return None


def refund_request_execute(*, refund_request_id: int, final_attempt: bool = True) -> RefundRequest:
    """
    Send an approved request to Stripe (safe to run twice: a second run finds it done or resumes it with the same key).
    With `final_attempt=False`, an unreachable Stripe records the retry state (tries, last error, next attempt time)
    and raises RefundStripeUnavailable so the task can retry later.

    Each run takes a lease (`next_attempt_at`, BACKOFFICE_REFUND_LEASE_SECONDS ahead) in the same short transaction
    that marks STARTED: a second copy of the task arriving meanwhile does nothing, and if this worker dies the sweep
    resumes the request once the lease ends (within a minute), with the same idempotency key.
    """
    with transaction.atomic():
        refund_request = RefundRequest.objects.select_for_update().get(pk=refund_request_id)
        if refund_request.status == Status.APPROVED:
            refund_request.status = Status.PROCESSING
            refund_request.attempts += 1
            refund_request.stripe_tries = 0
            refund_request.execution_started_at = timezone.now()  # STARTED
            refund_request.execution_finished_at = None
            refund_request.next_attempt_at = _lease_end()
            refund_request.save(update_fields=["status", "attempts", "stripe_tries", "execution_started_at",
                                               "execution_finished_at", "next_attempt_at", "updated"])
            resuming = False
        elif refund_request.status == Status.PROCESSING and not refund_request.stripe_refund_id:
            # STARTED without DONE: a worker died or Stripe was unreachable. Not while another run holds the lease.
            if refund_request.next_attempt_at is not None and refund_request.next_attempt_at > timezone.now():
                return refund_request
            refund_request.next_attempt_at = _lease_end()
            refund_request.save(update_fields=["next_attempt_at", "updated"])
            resuming = True
        else:
            return refund_request

    if refund_request.is_credit_note:
        return _execute_credit_note(refund_request=refund_request, resuming=resuming, final_attempt=final_attempt)
    try:
        refund = None
        if resuming or refund_request.attempts > 1:
            # A refund may exist that we never heard about: adopt it rather than risk a second one.
            refund = _find_refund_at_stripe(refund_request)
        if refund is None:
            refund = refund_gateway.refund_create(
                charge_id=refund_request.stripe_charge_id,
                amount_minor=refund_request.amount_minor,
                reason=refund_request.reason,
                idempotency_key=refund_request_idempotency_key(refund_request=refund_request),
                metadata={"refund_request_id": str(refund_request.pk),
                          "team_id": str(refund_request.team_id or "")},
            )
    except BillingError as error:
        if error.code == "stripe_unavailable" and not final_attempt:
            _mark_retrying(refund_request_id=refund_request.pk, code=error.code, message=_stripe_error_text(error))
            raise RefundStripeUnavailable(str(error)) from error
        return _mark_failed(refund_request_id=refund_request.pk, code=error.code,
                            message=_stripe_error_text(error))
    refund_request = refund_request_apply_stripe_refund(refund=refund, refund_request_id=refund_request.pk)
    try:  # the mirror's refunded amount feeds the next refundable computation
        mirror_store(kind="charge", data=refund_gateway.charge_retrieve(charge_id=refund_request.stripe_charge_id))
    except BillingError:
        logger.warning("charge %s mirror not refreshed after refund", refund_request.stripe_charge_id)
    return refund_request


def _execute_credit_note(*, refund_request: RefundRequest, resuming: bool, final_attempt: bool) -> RefundRequest:
    """The credit-note twin of the refund call above: same key, same look-up-first rule, same failure handling."""
    from .credit_notes import credit_note_apply, credit_note_issue

    try:
        note = credit_note_issue(refund_request=refund_request,
                                 idempotency_key=refund_request_idempotency_key(refund_request=refund_request),
                                 look_up_first=resuming or refund_request.attempts > 1)
    except BillingError as error:
        if error.code == "stripe_unavailable" and not final_attempt:
            logger.warning("refund request %s: Stripe unavailable, will retry", refund_request.pk)
            raise RefundStripeUnavailable(str(error)) from error
        return _mark_failed(refund_request_id=refund_request.pk, code=error.code, message=_stripe_error_text(error))
    refund_request = credit_note_apply(refund_request_id=refund_request.pk, note=note)
    try:  # the mirror's refunded amount feeds the next refundable computation
        mirror_store(kind="charge", data=refund_gateway.charge_retrieve(charge_id=refund_request.stripe_charge_id))
    except BillingError:
        logger.warning("charge %s mirror not refreshed after credit note", refund_request.stripe_charge_id)
    return refund_request


def _stripe_error_text(error: BillingError) -> str:
    cause = error.__cause__
    detail = getattr(cause, "user_message", None) or (str(cause) if cause else "")
    return f"{error.user_message} ({error.code}{': ' + detail if detail else ''})"


def _mark_retrying(*, refund_request_id: int, code: str, message: str) -> None:
    """Stripe was unreachable: record the try, its error and when the next one is due (what staff see)."""
    with transaction.atomic():
        refund_request = RefundRequest.objects.select_for_update().get(pk=refund_request_id)
        if refund_request.status != Status.PROCESSING or refund_request.stripe_refund_id:
            return
        refund_request.stripe_tries += 1
        refund_request.last_error = message[:2000]
        refund_request.last_error_code = code[:64]
        refund_request.next_attempt_at = timezone.now() + timedelta(
            seconds=refund_retry_delay_seconds(refund_request.stripe_tries))
        refund_request.save(update_fields=["stripe_tries", "last_error", "last_error_code", "next_attempt_at",
                                           "updated"])
    logger.warning("refund request %s: Stripe unavailable (try %s), next try at %s", refund_request_id,
                   refund_request.stripe_tries, refund_request.next_attempt_at.isoformat(),
                   extra={"refund_request_id": refund_request_id})


def _mark_failed(*, refund_request_id: int, code: str, message: str) -> RefundRequest:
    with transaction.atomic():
        refund_request = RefundRequest.objects.select_for_update().get(pk=refund_request_id)
        if refund_request.status not in (Status.PROCESSING, Status.APPROVED, Status.SUCCEEDED):
            return refund_request
        before = _snapshot(refund_request)
        refund_request.status = Status.FAILED
        refund_request.last_error = message[:2000]
        refund_request.last_error_code = code[:64]
        refund_request.execution_finished_at = timezone.now()  # DONE (with an answer: failure)
        refund_request.next_attempt_at = None
        refund_request.save(update_fields=["status", "last_error", "last_error_code", "execution_finished_at",
                                           "next_attempt_at", "updated"])
        audit_record(staff=StaffContext.system(), action=AuditEntry.Action.REFUND_FAILED,
                     target_type="refund_request", target_id=refund_request.pk, team=refund_request.team,
                     before=before, after=_snapshot(refund_request) | {"error": message[:500]})
    logger.warning("refund request %s failed: %s", refund_request_id, code)
    return refund_request


def refund_request_apply_stripe_refund(*, refund: dict, refund_request_id: int | None = None) -> RefundRequest | None:
    """
    Record what Stripe says about a refund (API answer or webhook): store the refund id (DONE marker) and move the
    request to its end state. Safe to run any number of times, in any order.
    """
    if refund_request_id is None:
        match = RefundRequest.objects.filter(stripe_refund_id=refund["id"]).values_list("pk", flat=True).first()
        if match is None:
            meta_id = (refund.get("metadata") or {}).get("refund_request_id")
            match = int(meta_id) if meta_id and str(meta_id).isdigit() else None
        if match is None:
            return None  # a refund made elsewhere (Stripe dashboard): nothing of ours to move
        refund_request_id = match
    stripe_status = refund.get("status") or ""
    with transaction.atomic():
        refund_request = RefundRequest.objects.select_for_update().filter(pk=refund_request_id).first()
        if refund_request is None:
            return None
        if refund_request.stripe_refund_id and refund_request.stripe_refund_id != refund["id"]:
            logger.error("refund request %s already has refund %s, ignoring %s", refund_request.pk,
                         refund_request.stripe_refund_id, refund["id"])
            return refund_request
        before = _snapshot(refund_request)
        first_answer = not refund_request.stripe_refund_id
        refund_request.stripe_refund_id = refund["id"]
        refund_request.stripe_refund_status = stripe_status
        if first_answer:
            refund_request.execution_finished_at = timezone.now()  # DONE
            refund_request.next_attempt_at = None  # nothing left to send
            if refund_request.status in (Status.APPROVED, Status.FAILED):
                refund_request.status = Status.PROCESSING
        refund_request.save(update_fields=["stripe_refund_id", "stripe_refund_status", "execution_finished_at",
                                           "next_attempt_at", "status", "updated"])
        if first_answer:
            audit_record(staff=StaffContext.system(), action=AuditEntry.Action.REFUND_SENT,
                         target_type="refund_request", target_id=refund_request.pk, team=refund_request.team,
                         before=before, after=_snapshot(refund_request))
        if stripe_status == "succeeded" and refund_request.status == Status.PROCESSING:
            _complete_locked(refund_request)
        elif stripe_status in ("failed", "canceled") and refund_request.status in (Status.PROCESSING,
                                                                                   Status.SUCCEEDED):
            before = _snapshot(refund_request)
            refund_request.status = Status.FAILED
            refund_request.last_error = f"Stripe reports the refund {stripe_status}" + (
                f": {refund.get('failure_reason')}" if refund.get("failure_reason") else "")
            refund_request.last_error_code = f"refund_{stripe_status}"
            refund_request.save(update_fields=["status", "last_error", "last_error_code", "updated"])
            audit_record(staff=StaffContext.system(), action=AuditEntry.Action.REFUND_FAILED,
                         target_type="refund_request", target_id=refund_request.pk, team=refund_request.team,
                         before=before, after=_snapshot(refund_request) | {"error": refund_request.last_error})
    return refund_request


def _complete_locked(refund_request: RefundRequest) -> None:
    before = _snapshot(refund_request)
    refund_request.status = Status.SUCCEEDED
    refund_request.completed_at = timezone.now()
    refund_request.credits_clawed_back = _clawback_credits(refund_request)
    refund_request.save(update_fields=["status", "completed_at", "credits_clawed_back", "updated"])
    audit_record(staff=StaffContext.system(), action=AuditEntry.Action.REFUND_SUCCEEDED,
                 target_type="refund_request", target_id=refund_request.pk, team=refund_request.team,
                 before=before, after=_snapshot(refund_request) | {"credits_clawed_back":
                                                                   refund_request.credits_clawed_back})


# --------------------------------------------------------------------------------------------------- claw-back

def credit_pack_credits_for_charge(*, team: Team, payment_intent_id: str) -> int:
    """Credits granted for the credit-pack purchase this payment made (0 when it was not a credit pack)."""
    if not payment_intent_id:
        return 0
    # A paid pack's credits are granted with reference = the Checkout Session id (or the PaymentIntent id for a
    # direct payment): look under both.
    references = [payment_intent_id] + list(
        djstripe_models.Session.objects.filter(stripe_data__payment_intent=payment_intent_id).values_list("id",
                                                                                                        flat=True)
    )
    for reference in references:
        credits = int(credit_ledger().purchased_for(team=team, reference=reference) or 0)
        if credits:
            return credits
    return 0


def _clawback_credits(refund_request: RefundRequest) -> int:
    """
    Remove the refunded share of a credit pack's credits: cumulative over the charge's refunds, so partial refunds
    add up to exactly the pack (floor, in the customer's favour). Never below zero: `allow_partial` takes what is
    left and the usage ledger records the shortfall.
    """
    team = refund_request.team
    if team is None or refund_request.charge_amount_minor <= 0:
        return 0
    purchased = credit_pack_credits_for_charge(team=team, payment_intent_id=refund_request.stripe_payment_intent_id)
    if purchased <= 0:
        return 0
    siblings = RefundRequest.objects.filter(stripe_charge_id=refund_request.stripe_charge_id,
                                            status=Status.SUCCEEDED).exclude(pk=refund_request.pk)
    refunded_total = (siblings.aggregate(total=Sum("amount_minor"))["total"] or 0) + refund_request.amount_minor
    already = siblings.aggregate(total=Sum("credits_clawed_back"))["total"] or 0
    target = purchased * min(refunded_total, refund_request.charge_amount_minor) // refund_request.charge_amount_minor
    to_remove = max(0, target - already)
    if to_remove == 0:
        return 0
    note = f"Refund of {refund_request.amount_display} on {refund_request.stripe_charge_id}"
    entry = credit_ledger().remove(team=team, amount=to_remove, reason="refund_clawback",
                                   reference=f"refund_request:{refund_request.pk}", note=note, allow_partial=True)
    removed = abs(int(entry.delta))
    audit_record(staff=StaffContext.system(), action=AuditEntry.Action.CREDITS_CLAWED_BACK, target_type="team",
                 target_id=team.pk, team=team, before={"credits_to_remove": to_remove},
                 after={"credits_removed": removed, "shortfall": to_remove - removed},
                 reason=f"refund_request:{refund_request.pk}")
    return removed


def refund_requests_stuck():
    """
    Requests with nothing at Stripe yet whose time has come: approved ones whose enqueue was lost, retries due, and
    attempts whose lease ended (the worker that started them is gone). The sweep (every
    BACKOFFICE_REFUND_SWEEP_SECONDS) sends them again; resuming reuses the request's idempotency key and first looks
    the refund up at Stripe, so a refund Stripe did create is found, not made twice. Rows without a lease (made
    before it existed) are resumed after BACKOFFICE_REFUND_RESUME_AFTER_MINUTES.
    """
    now = timezone.now()
    cutoff = now - timedelta(minutes=settings.BACKOFFICE_REFUND_RESUME_AFTER_MINUTES)
    return RefundRequest.objects.filter(
        Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True, updated__lt=cutoff),
        status__in=[Status.PROCESSING, Status.APPROVED], stripe_refund_id__isnull=True,
    )


def refund_requests_close_for_dispute(*, charge_id: str, dispute_id: str) -> int:
    """Cancel requests of a now disputed charge that never reached Stripe (the dispute decides the money)."""
    closed = 0
    pending = RefundRequest.objects.filter(stripe_charge_id=charge_id, status__in=[Status.REQUESTED, Status.APPROVED],
                                           stripe_refund_id__isnull=True)
    if not pending.exists():
        return 0
    for refund_request_id in pending.values_list("pk", flat=True):
        with transaction.atomic():
            refund_request = RefundRequest.objects.select_for_update().get(pk=refund_request_id)
            if refund_request.status not in (Status.REQUESTED, Status.APPROVED) or refund_request.execution_started_at:
                continue
            before = _snapshot(refund_request)
            refund_request.status = Status.CANCELED
            refund_request.decision_note = f"Charge disputed ({dispute_id}): refunds are decided by the dispute."
            refund_request.completed_at = timezone.now()
            refund_request.save(update_fields=["status", "decision_note", "completed_at", "updated"])
            audit_record(staff=StaffContext.system(), action=AuditEntry.Action.REFUND_CANCELED,
                         target_type="refund_request", target_id=refund_request.pk, team=refund_request.team,
                         before=before, after=_snapshot(refund_request), reason=refund_request.decision_note)
            closed += 1
    return closed
