"""
Reconciliation: compare the local mirror and our own records with Stripe, record drift, repair it by resync.

Checks: subscriptions (status, price), invoices (status, total), charges (refunded amount), objects Stripe has and the
mirror lacks, refund requests processing for too long, and credit-pack payments vs credits granted. Stripe is walked
page by page (100 objects) and compared with one mirror query per page, so a run is O(pages) queries.
"""
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from djstripe import models as djstripe_models

from billing.extensions import credit_ledger
from billing.models import AuditEntry, ReconciliationDrift, ReconciliationRun, RefundRequest
from billing.stripe_gateway import backoffice as gateway
from billing_site.errors import ApplicationError, BillingError, NotFoundError

from .audit import StaffContext, audit_record, staff_require
from billing.services.mirror import mirror_refresh

logger = logging.getLogger("billing.backoffice")
Kind = ReconciliationDrift.Kind

MIRROR = {
    "subscription": djstripe_models.Subscription,
    "invoice": djstripe_models.Invoice,
    "charge": djstripe_models.Charge,
}


def _price_key(data: dict) -> str:
    items = ((data.get("items") or {}).get("data")) or []
    price = (items[0].get("price") or {}) if items else {}
    return price.get("id") or "" if isinstance(price, dict) else str(price)


def _comparisons(kind: str, stripe: dict, local: dict) -> list[tuple[str, str, str]]:
    """(drift kind, local value, Stripe value) for every field that differs."""
    out = []
    if kind == "subscription":
        if stripe.get("status") != local.get("status"):
            out.append((Kind.SUBSCRIPTION_STATUS, str(local.get("status")), str(stripe.get("status"))))
        if _price_key(stripe) != _price_key(local):
            out.append((Kind.SUBSCRIPTION_PLAN, _price_key(local), _price_key(stripe)))
    elif kind == "invoice":
        if stripe.get("status") != local.get("status"):
            out.append((Kind.INVOICE_STATUS, str(local.get("status")), str(stripe.get("status"))))
        if stripe.get("total") != local.get("total"):
            out.append((Kind.INVOICE_TOTAL, str(local.get("total")), str(stripe.get("total"))))
    elif kind == "charge":
        if int(stripe.get("amount_refunded") or 0) != int(local.get("amount_refunded") or 0):
            out.append((Kind.CHARGE_REFUNDED, str(local.get("amount_refunded") or 0),
                        str(stripe.get("amount_refunded") or 0)))
    return out


def _team_by_customer(customer_ids: set[str]) -> dict[str, int]:
    return dict(djstripe_models.Customer.objects.filter(id__in=customer_ids).values_list("id", "subscriber_id"))


def _check_kind(run: ReconciliationRun, kind: str, since: datetime | None, progress: Callable[[str], None]) -> dict:
    checked = drift = 0
    page: list[dict] = []

    def flush() -> int:
        found = 0
        ids = [obj["id"] for obj in page]
        local = dict(MIRROR[kind].objects.filter(id__in=ids).values_list("id", "stripe_data"))
        teams = _team_by_customer({obj.get("customer") for obj in page if isinstance(obj.get("customer"), str)})
        rows = []
        for obj in page:
            team_id = teams.get(obj.get("customer"))
            if obj["id"] not in local:
                rows.append(ReconciliationDrift(run=run, kind=Kind.MISSING_LOCALLY, object_type=kind,
                                                object_id=obj["id"], team_id=team_id, local_value="(none)",
                                                stripe_value=str(obj.get("status") or "present")))
                continue
            for drift_kind, local_value, stripe_value in _comparisons(kind, obj, local[obj["id"]] or {}):
                rows.append(ReconciliationDrift(run=run, kind=drift_kind, object_type=kind, object_id=obj["id"],
                                                team_id=team_id, local_value=local_value[:255],
                                                stripe_value=stripe_value[:255]))
        ReconciliationDrift.objects.bulk_create(rows)
        found += len(rows)
        page.clear()
        return found

    created_gte = int(since.timestamp()) if since else None
    for obj in gateway.objects_list(kind=kind, created_gte=created_gte):
        page.append(obj)
        checked += 1
        if len(page) >= 100:
            drift += flush()
            progress(f"  {kind}: {checked} checked, {drift} drifting")
    if page:
        drift += flush()
    progress(f"  {kind}: {checked} checked, {drift} drifting (done)")
    return {"checked": checked, "drift": drift}


def _check_stuck_refunds(run: ReconciliationRun) -> dict:
    cutoff = timezone.now() - timedelta(minutes=settings.BACKOFFICE_REFUND_STUCK_MINUTES)
    stuck = list(RefundRequest.objects.filter(status__in=[RefundRequest.Status.PROCESSING,
                                                          RefundRequest.Status.APPROVED], updated__lt=cutoff))
    ReconciliationDrift.objects.bulk_create([
        ReconciliationDrift(run=run, kind=Kind.REFUND_STUCK, object_type="refund_request", object_id=str(rr.pk),
                            team_id=rr.team_id, local_value=rr.status, stripe_value=rr.stripe_refund_status or "?",
                            detail=f"{rr.status} since {rr.updated:%Y-%m-%d %H:%M} UTC")
        for rr in stuck
    ])
    return {"checked": len(stuck), "drift": len(stuck)}


def _check_credit_packs(run: ReconciliationRun, since: datetime | None) -> dict:
    """Paid credit-pack Checkout Sessions in the mirror vs credits the usage ledger granted for them."""
    credits_purchased_for = credit_ledger().purchased_for
    from billing.catalog import load_catalog

    catalog = load_catalog()
    sessions = djstripe_models.Session.objects.filter(stripe_data__mode="payment",
                                                      stripe_data__payment_status="paid")
    if since:
        sessions = sessions.filter(created__gte=since)
    checked = 0
    rows = []
    for session in sessions.select_related("customer").iterator(chunk_size=500):
        data = session.stripe_data or {}
        lookup_key = (data.get("metadata") or {}).get("lookup_key") or (data.get("metadata") or {}).get("credit_pack")
        pack = catalog.credit_pack_for_lookup_key(lookup_key) if lookup_key else None
        team = session.customer.subscriber if session.customer_id and session.customer else None
        if pack is None or team is None:
            continue
        checked += 1
        expected = int(getattr(pack, "credits", 0)) * int(data.get("metadata", {}).get("quantity") or 1)
        granted = max(int(credits_purchased_for(team=team, reference=session.id) or 0),
                      int(credits_purchased_for(team=team, reference=data.get("payment_intent") or "") or 0))
        if granted != expected:
            rows.append(ReconciliationDrift(run=run, kind=Kind.CREDITS_MISMATCH, object_type="checkout_session",
                                            object_id=session.id, team=team, local_value=str(granted),
                                            stripe_value=str(expected), detail=f"credit pack {lookup_key}"))
    ReconciliationDrift.objects.bulk_create(rows)
    return {"checked": checked, "drift": len(rows)}


def reconciliation_run(*, since: datetime | None = None, triggered_by: str = "command",
                       progress: Callable[[str], None] | None = None) -> ReconciliationRun:
    progress = progress or (lambda message: logger.info("%s", message))
    run = ReconciliationRun.objects.create(since=since, triggered_by=triggered_by)
    checked: dict = {}
    try:
        for kind in ("subscription", "invoice", "charge"):
            progress(f"Comparing {kind}s with Stripe…")
            try:
                checked[kind] = _check_kind(run, kind, since, progress)
            except BillingError as error:
                # One kind Stripe cannot list (or an outage) must not hide the others' drift.
                checked[kind] = {"error": f"{error.code}: {error.user_message}"}
                progress(f"  {kind}: not compared ({error.code})")
        progress("Refund requests processing for too long…")
        checked["refund_request"] = _check_stuck_refunds(run)
        progress("Credit-pack payments vs credits granted…")
        checked["credit_pack"] = _check_credit_packs(run, since)
    except Exception as error:  # recorded for the admin page, then re-raised for the task's own handling
        run.status = ReconciliationRun.Status.FAILED
        run.error = repr(error)[:2000]
        run.finished_at = timezone.now()
        run.checked = checked
        run.drift_count = run.drifts.count()
        run.save()
        raise
    run.status = ReconciliationRun.Status.FINISHED
    run.finished_at = timezone.now()
    run.checked = checked
    run.drift_count = run.drifts.count()
    run.save()
    progress(f"Done: {run.drift_count} drifting object(s). See /admin/billing/reconciliationdrift/.")
    return run


def reconciliation_drift_repair(*, staff: StaffContext, drift_id: int) -> ReconciliationDrift:
    """Repair one drift: resync the object from Stripe (or resume a stuck refund request)."""
    drift = ReconciliationDrift.objects.select_related("team").filter(pk=drift_id).first()
    if drift is None:
        raise NotFoundError("drift_not_found", "No such drift.")
    staff_require(staff=staff, permission="billing.resync_customer", attempted="reconciliation_drift_repair",
                  target_type=drift.object_type, target_id=drift.object_id, team=drift.team)
    if drift.status != ReconciliationDrift.Status.OPEN:
        return drift
    if drift.kind == Kind.REFUND_STUCK:
        from billing.stripe_gateway.refunds import refund_retrieve

        from .refunds import refund_request_apply_stripe_refund, refund_request_execute

        refund_request = RefundRequest.objects.get(pk=int(drift.object_id))
        if refund_request.stripe_refund_id:
            # Stripe answered but the end state never arrived (lost webhook): ask Stripe for it.
            refund_request_apply_stripe_refund(refund=refund_retrieve(refund_id=refund_request.stripe_refund_id),
                                               refund_request_id=refund_request.pk)
        else:
            refund_request_execute(refund_request_id=refund_request.pk)
        result = RefundRequest.objects.get(pk=refund_request.pk).status
    elif drift.object_type in MIRROR:
        mirror_refresh(kind=drift.object_type, object_id=drift.object_id)
        result = "resynced"
    else:
        raise ApplicationError("not_repairable",
                               "This drift needs a person: check the ledger and the payment, then grant or remove "
                               "credits from the customer's page.")
    with transaction.atomic():
        drift.status = ReconciliationDrift.Status.REPAIRED
        drift.resolved_at = timezone.now()
        drift.resolved_by = staff.user
        drift.save(update_fields=["status", "resolved_at", "resolved_by"])
        audit_record(staff=staff, action=AuditEntry.Action.DRIFT_REPAIRED, target_type=drift.object_type,
                     target_id=drift.object_id, team=drift.team,
                     before={"kind": drift.kind, "local": drift.local_value, "stripe": drift.stripe_value},
                     after={"result": result})
    return drift
