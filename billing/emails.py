"""
The one way to email anyone: `send_team_email` (billing's receipts and notices, usage's alerts) and
`send_staff_email` (disputes and other things a person must see). Both write an `OutboundEmail` row, the outbox.

- The row is written in the caller's transaction: a rolled-back webhook or alert emails no one, and a committed one
  always has its email on record. After commit the send task is sent with `task_send`, which never raises: with the
  broker down the request (or handler) still succeeds and the row waits, pending, for the sweep.
- `outbound_email_send` (the task's body) claims the row under its lock with a lease (status `sending`), renders and
  sends outside any transaction (a receipt may read Stripe; SMTP may be slow), then marks it `sent`. A second copy
  of the task finds it sent, or leased, and does nothing: a sent row is never sent again. A failure of any kind is
  recorded (`failed`, `last_error`, `next_attempt_at` with backoff), then `parked` after BILLING_EMAIL_MAX_ATTEMPTS;
  staff re-send parked rows from the admin (`billing.backoffice.support.outbound_emails_resend`, audited).
- `outbound_emails_enqueue_due` (beat `billing-emails-send-due`; `run_scheduler` under `make run`) re-sends pending
  rows older than BILLING_EMAIL_PENDING_GRACE_SECONDS, failed rows due, and sends whose lease ended (worker killed).
  Only a worker dying between SMTP's acceptance and the `sent` mark can send an email twice; the copy carries the
  same Message-ID (`outbound_email_message_id`), so mail clients that dedupe by it show one.
- `dedupe_key`: at most one row per key ("once per payment"). Builders may derive it from the context (the receipts
  do), so every caller of a template gets the guard; a caller may also pass one.
- Recipients: the team's billing address (`team_email_recipients`) unless the caller passes `to=`; staff emails go to
  BILLING_STAFF_EMAILS. Resolved when the row is written, so the admin shows who an email is for.
- Language: the team owner's. Templates: a bare name is `billing/email/<name>.txt`; another app passes its own path
  without `.txt` (`usage/email/quota_80`). The template's first line is the subject, the rest the body.
- Context must be JSON-serialisable and small (BILLING_EMAIL_CONTEXT_MAX_BYTES): ids and values, rendered when the
  email is sent; `team`, `site_url` and `language` are added then.
- A template with a registered builder (`team_email_builder`: the receipts of billing/receipts.py) makes its own
  HTML + text message with attachments instead.
"""
import json
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr

from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation

from accounts.models import Membership, Team
from billing_site.backoff import backoff_seconds

from .models import OutboundEmail

logger = logging.getLogger(__name__)

Status = OutboundEmail.Status
# One sweep run sends at most this many rows per state; the next run (seconds later) takes the rest.
SWEEP_BATCH = 500
# last_error keeps the end of the traceback: the error itself is at the end.
LAST_ERROR_MAX_CHARS = 4000


def team_owner_language(*, team: Team) -> str:
    owner = (
        Membership.objects.filter(team=team, role=Membership.Role.OWNER).select_related("user").order_by("created")
        .first()
    )
    return owner.user.language if owner else settings.LANGUAGE_CODE


def team_email_recipients(*, team: Team) -> list[str]:
    """Who gets a team's emails when the caller does not say: its billing address."""
    return [team.billing_email]


def _template_path(template: str) -> str:
    return f"{template}.txt" if "/" in template else f"billing/email/{template}.txt"


# --- Builders --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TeamEmailBuilder:
    # build(team=, context=, language=, to=) -> EmailMultiAlternatives | None (None: nothing found to send yet)
    build: Callable[..., EmailMultiAlternatives | None]
    # dedupe(context) -> a dedupe key or None: one email per key, whoever queues the template
    dedupe: Callable[[dict], str | None] | None = None


# Emails richer than a text template (HTML, attachments: the receipts of billing/receipts.py) register a builder
# here, called when the email is sent.
TEAM_EMAIL_BUILDERS: dict[str, TeamEmailBuilder] = {}


def team_email_builder(template: str, *, dedupe: Callable[[dict], str | None] | None = None):
    def register(func):
        TEAM_EMAIL_BUILDERS[template] = TeamEmailBuilder(build=func, dedupe=dedupe)
        return func

    return register


# --- Writing rows (the callers' side) --------------------------------------------------------------------------
def _context_checked(context: dict) -> dict:
    """JSON round trip (what the row will hold) within the size bound; anything else is the caller's bug."""
    text = json.dumps(context)
    if len(text.encode()) > settings.BILLING_EMAIL_CONTEXT_MAX_BYTES:
        raise ValueError(f"email context of {len(text.encode())} bytes exceeds BILLING_EMAIL_CONTEXT_MAX_BYTES "
                         f"({settings.BILLING_EMAIL_CONTEXT_MAX_BYTES}): pass ids, not documents")
    return json.loads(text)


def outbound_email_record(*, kind: str, team: Team | None, template: str, context: dict, recipients: list[str],
                          dedupe_key: str | None = None) -> OutboundEmail | None:
    """
    Write one email to the outbox in the caller's transaction and send it after commit. Returns the row, or None
    when `dedupe_key` was used before (that email exists already: nothing more is queued).
    """
    row = OutboundEmail(kind=kind, team=team, template=template, context=_context_checked(context),
                        recipients=[str(r) for r in recipients], dedupe_key=dedupe_key or None)
    if row.dedupe_key is not None:
        if OutboundEmail.objects.filter(dedupe_key=row.dedupe_key).exists():
            logger.info("email %s already queued once; not again", row.dedupe_key)
            return None
        try:
            with transaction.atomic():  # savepoint: a concurrent writer of the same key must not break the caller
                row.save(force_insert=True)
        except IntegrityError:
            logger.info("email %s queued concurrently; not again", row.dedupe_key)
            return None
    else:
        row.save(force_insert=True)
    row_id = row.pk
    transaction.on_commit(lambda: outbound_email_enqueue_now(outbound_email_id=row_id))
    return row


def send_team_email(*, team: Team, template: str, context: dict, to: list[str] | None = None,
                    dedupe_key: str | None = None) -> None:
    """
    Queue a templated email to the team: written to the outbox now, sent by a task once the current transaction
    commits (retried, then parked); nothing is sent if it rolls back. `to` replaces the default recipients
    (`team_email_recipients`). `dedupe_key` (optional; builders may supply one) sends at most one email per key.
    """
    builder = TEAM_EMAIL_BUILDERS.get(template)
    if dedupe_key is None and builder is not None and builder.dedupe is not None:
        dedupe_key = builder.dedupe(context)
    outbound_email_record(kind=OutboundEmail.Kind.TEAM, team=team, template=template, context=context,
                          recipients=list(to) if to else team_email_recipients(team=team), dedupe_key=dedupe_key)


def send_staff_email(*, subject: str, body: str) -> None:
    """Queue a plain email to BILLING_STAFF_EMAILS, like a team email (outbox row, sent after commit)."""
    outbound_email_record(kind=OutboundEmail.Kind.STAFF, team=None, template="",
                          context={"subject": subject, "body": body}, recipients=list(settings.BILLING_STAFF_EMAILS))


def outbound_email_enqueue_now(*, outbound_email_id: int, expires_seconds: float | None = None) -> bool:
    """
    Send the send task for a stored email; False (logged) when the broker is unreachable. Never raises: the row is
    the record, and `outbound_emails_enqueue_due` sends what a lost message left pending.
    """
    from billing_site.celery import task_send

    from .tasks import outbound_email_send_task

    return task_send(outbound_email_send_task, (outbound_email_id,), what=f"outbound email {outbound_email_id}",
                     **({"expires": expires_seconds} if expires_seconds else {}))


# --- Rendering -------------------------------------------------------------------------------------------------
def team_email_build(*, team_id: int, template: str, context: dict,
                     to: list[str] | None = None) -> EmailMessage | None:
    """The message of a team email, rendered in the owner's language; None when there is nothing to send."""
    team = Team.objects.filter(pk=team_id).first()
    if team is None:
        return None
    language = team_owner_language(team=team)
    recipients = list(to) if to else team_email_recipients(team=team)
    builder = TEAM_EMAIL_BUILDERS.get(template)
    if builder is not None:
        return builder.build(team=team, context=context, language=language, to=recipients)
    with translation.override(language):
        text = render_to_string(
            _template_path(template),
            {**context, "team": team, "site_url": settings.SITE_URL, "language": language},
        )
    subject, _, body = text.strip().partition("\n")
    return EmailMessage(subject.strip(), body.strip() + "\n", settings.DEFAULT_FROM_EMAIL, recipients)


def team_email_send_now(*, team_id: int, template: str, context: dict, to: list[str] | None = None) -> None:
    """Render and send one team email at once, outside the outbox (tests and shell use). Raises what SMTP raises."""
    message = team_email_build(team_id=team_id, template=template, context=context, to=to)
    if message is not None:
        message.send()
        logger.info("sent %s email to team %s", template, team_id)


def outbound_email_message_id(row: OutboundEmail) -> str:
    """The same Message-ID for every attempt of one row: a copy sent twice (worker died after SMTP) is one email."""
    domain = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2] or "localhost"
    return f"<outbound-email-{row.pk}.{int(row.created_at.timestamp())}@{domain}>"


def _outbound_message(row: OutboundEmail) -> EmailMessage | None:
    if row.kind == OutboundEmail.Kind.STAFF:
        context = row.context or {}
        message = EmailMessage(str(context.get("subject") or ""), str(context.get("body") or ""),
                               settings.DEFAULT_FROM_EMAIL, list(row.recipients))
    else:
        message = team_email_build(team_id=row.team_id, template=row.template, context=row.context or {},
                                   to=list(row.recipients) or None)
    if message is not None:
        message.extra_headers = {**(message.extra_headers or {}), "Message-ID": outbound_email_message_id(row)}
    return message


# --- Sending (the task's side) ---------------------------------------------------------------------------------
def outbound_email_retry_delay_seconds(attempts: int) -> float:
    """Exponential backoff after `attempts` failed sends: base, 2×base, 4×base ... capped at one hour."""
    return backoff_seconds(attempts=attempts, base=settings.BILLING_EMAIL_RETRY_BASE_SECONDS)


class NothingToSend(RuntimeError):
    """A builder found nothing to send yet (a receipt whose payment is not found): retried, then parked."""


def _claim(*, outbound_email_id: int, now: datetime) -> OutboundEmail | None:
    """Take the row for one attempt (short transaction, row lock): None when it is done, parked, leased or not due."""
    with transaction.atomic():
        row = OutboundEmail.objects.select_for_update().filter(pk=outbound_email_id).first()
        if row is None or row.status in (Status.SENT, Status.PARKED):
            return None
        if row.status in (Status.FAILED, Status.SENDING) and row.next_attempt_at and row.next_attempt_at > now:
            return None  # a failed row waits for its retry time; a sending row belongs to the run holding the lease
        if row.status == Status.SENDING and row.attempts >= settings.BILLING_EMAIL_MAX_ATTEMPTS:
            # Its last allowed attempt never finished (the worker died, e.g. killed while rendering): park it rather
            # than retry something that may take every worker down with it.
            row.status, row.next_attempt_at = Status.PARKED, None
            row.last_error = (f"the send did not finish within its lease (BILLING_EMAIL_SEND_LEASE_SECONDS) on attempt "
                              f"{row.attempts}: its worker stopped\n{row.last_error}")[:LAST_ERROR_MAX_CHARS]
            row.save(update_fields=["status", "next_attempt_at", "last_error"])
            logger.error("outbound email %s parked: attempt %s never finished", row.pk, row.attempts,
                         extra={"outbound_email_id": row.pk})
            return None
        row.status = Status.SENDING
        row.attempts += 1
        row.next_attempt_at = now + timedelta(seconds=settings.BILLING_EMAIL_SEND_LEASE_SECONDS)
        row.save(update_fields=["status", "attempts", "next_attempt_at"])
        return row


def outbound_email_send(*, outbound_email_id: int) -> str:
    """
    Send one outbox row at most once; returns its status after this call. Safe to run twice, concurrently or not:
    the claim (row lock + lease) lets one run send; a sent row is never sent again. No transaction is held while
    rendering (a receipt may call Stripe) or talking to SMTP.
    """
    row = _claim(outbound_email_id=outbound_email_id, now=timezone.now())
    if row is None:
        return OutboundEmail.objects.filter(pk=outbound_email_id).values_list("status", flat=True).first() or ""
    this_attempt = OutboundEmail.objects.filter(pk=row.pk, status=Status.SENDING, attempts=row.attempts)
    try:
        message = _outbound_message(row)
        if message is None:
            raise NothingToSend(f"{row.template}: nothing found to send for {row.context!r}")
        message.send()
    except Exception as error:  # noqa: BLE001 - SMTP, rendering or a builder's Stripe read: recorded and retried
        parked = row.attempts >= settings.BILLING_EMAIL_MAX_ATTEMPTS
        status = Status.PARKED if parked else Status.FAILED
        next_attempt = None if parked else timezone.now() + timedelta(
            seconds=outbound_email_retry_delay_seconds(row.attempts))
        this_attempt.update(status=status, next_attempt_at=next_attempt,
                            last_error=traceback.format_exc()[-LAST_ERROR_MAX_CHARS:])
        log = logger.error if parked else logger.warning
        log("outbound email %s (%s) %s after attempt %s: %r", row.pk, row.template or row.kind,
            "parked" if parked else "failed", row.attempts, error, extra={"outbound_email_id": row.pk})
        return status
    if not this_attempt.update(status=Status.SENT, sent_at=timezone.now(), next_attempt_at=None, last_error=""):
        # Our lease ended and another run took the row over: that run records its own outcome.
        logger.warning("outbound email %s sent after its lease ended", row.pk, extra={"outbound_email_id": row.pk})
    logger.info("sent outbound email %s (%s) to team %s", row.pk, row.template or row.kind, row.team_id,
                extra={"outbound_email_id": row.pk})
    return Status.SENT


def outbound_emails_due(*, now: datetime | None = None) -> list[int]:
    """Rows the sweep sends: pending past the grace, failed whose retry time came, sending whose lease ended."""
    now = now or timezone.now()
    grace = timedelta(seconds=settings.BILLING_EMAIL_PENDING_GRACE_SECONDS)
    due = list(OutboundEmail.objects.filter(status__in=[Status.FAILED, Status.SENDING], next_attempt_at__lte=now)
               .order_by("next_attempt_at").values_list("pk", flat=True)[:SWEEP_BATCH])
    due += list(OutboundEmail.objects.filter(status=Status.PENDING, created_at__lte=now - grace)
                .order_by("created_at").values_list("pk", flat=True)[:SWEEP_BATCH])
    return due


def outbound_emails_enqueue_due(*, now: datetime | None = None) -> int:
    """
    The outbox sweep (every BILLING_EMAIL_SWEEP_SECONDS). Each copy expires after a few sweep intervals, so a long
    outage does not pile up duplicates; a duplicate that runs finds the row sent or leased and does nothing.
    """
    sent = 0
    for pk in outbound_emails_due(now=now):
        if not outbound_email_enqueue_now(outbound_email_id=pk,
                                          expires_seconds=settings.BILLING_EMAIL_SWEEP_SECONDS * 6):
            break  # the broker is down: the next sweep tries again
        sent += 1
    if sent:
        logger.info("email sweep sent %s outbox rows", sent)
    return sent


def outbound_email_requeue(*, outbound_email_id: int) -> bool:
    """
    Put a parked or failed row back to pending with fresh attempts and send it after commit (staff re-send: call it
    through `billing.backoffice.support.outbound_emails_resend`, which checks the permission and audits). False when
    the row is sent, sending or gone.
    """
    with transaction.atomic():
        updated = OutboundEmail.objects.filter(pk=outbound_email_id, status__in=[Status.PARKED, Status.FAILED]).update(
            status=Status.PENDING, attempts=0, next_attempt_at=None)
        if updated:
            transaction.on_commit(lambda: outbound_email_enqueue_now(outbound_email_id=outbound_email_id))
    return bool(updated)


def outbound_emails_prune(*, now: datetime | None = None) -> int:
    """Retention: delete sent rows older than BILLING_EMAIL_RETENTION_DAYS. Failed and parked rows stay for staff."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.BILLING_EMAIL_RETENTION_DAYS)
    deleted, _ = OutboundEmail.objects.filter(status=Status.SENT, created_at__lt=cutoff).delete()
    if deleted:
        logger.info("deleted %s sent outbox rows older than %s days", deleted, settings.BILLING_EMAIL_RETENTION_DAYS)
    return deleted
