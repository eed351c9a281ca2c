"""
The one way to email a team: `send_team_email`. Billing's receipts and notices and usage's alerts all go through it.

- Sent from a Celery task after the writing transaction commits, so a rolled-back webhook or alert never emails
  anyone; the task retries while the mail server is down (the message is rendered again from ids each time).
- Recipients: the team's billing address (`team_email_recipients`) unless the caller passes `to=`.
- Language: the team owner's.
- Templates: a bare name is `billing/email/<name>.txt`; another app passes its own path without `.txt`
  (`usage/email/quota_80`). The template's first line is the subject, the rest the body.
- Context must be JSON-serialisable (it travels through the broker); `team`, `site_url` and `language` are added
  when rendering.
- A template with a registered builder (`team_email_builder`: the receipts of billing/receipts.py) makes its own
  HTML + text message with attachments instead.
"""
import logging
from collections.abc import Callable

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import translation

from accounts.models import Membership, Team

logger = logging.getLogger(__name__)


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


def send_team_email(*, team: Team, template: str, context: dict, to: list[str] | None = None) -> None:
    """
    Queue a templated email to the team, sent by a task (retried) once the current transaction commits; nothing is
    sent if it rolls back. `to` replaces the default recipients (`team_email_recipients`).
    """
    from .tasks import send_team_email_task  # service -> task enqueue: the tasks module imports this one

    team_id = team.pk
    recipients = list(to) if to else None
    if recipients is None:
        transaction.on_commit(lambda: send_team_email_task.delay(team_id, template, context))
    else:
        transaction.on_commit(lambda: send_team_email_task.delay(team_id, template, context, recipients))


def team_email_send_now(*, team_id: int, template: str, context: dict, to: list[str] | None = None) -> None:
    """The task's body: render in the owner's language and send. Raises OSError while SMTP is down (retried)."""
    team = Team.objects.filter(pk=team_id).first()
    if team is None:
        return
    language = team_owner_language(team=team)
    recipients = list(to) if to else team_email_recipients(team=team)
    builder = TEAM_EMAIL_BUILDERS.get(template)
    if builder is not None:
        message = builder(team=team, context=context, language=language, to=recipients)
        if message is not None:
            message.send()
            logger.info("sent %s email to team %s", template, team_id)
        return
    with translation.override(language):
        text = render_to_string(
            _template_path(template),
            {**context, "team": team, "site_url": settings.SITE_URL, "language": language},
        )
    subject, _, body = text.strip().partition("\n")
    send_mail(subject.strip(), body.strip() + "\n", settings.DEFAULT_FROM_EMAIL, recipients)
    logger.info("sent %s email to team %s", template, team_id)


# Emails richer than a text template (HTML, attachments: the receipts of billing/receipts.py) register a builder
# here: builder(team=, context=, language=, to=) -> EmailMultiAlternatives | None, called by the task when it sends.
TEAM_EMAIL_BUILDERS: dict[str, Callable[..., EmailMultiAlternatives | None]] = {}


def team_email_builder(template: str):
    def register(func):
        TEAM_EMAIL_BUILDERS[template] = func
        return func

    return register


def send_staff_email(*, subject: str, body: str) -> None:
    from .tasks import send_staff_email_task

    transaction.on_commit(lambda: send_staff_email_task.delay(subject, body))
