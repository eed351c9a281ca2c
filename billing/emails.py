"""
Emails to a team, in the language of its owner, always sent from a Celery task (after the writing transaction
commits, so a rolled-back webhook never emails anyone). Templates: `billing/email/<name>.txt`; the first line is
the subject, the rest the body. Context must be JSON-serialisable (it travels through the broker). A template
with a registered builder (`team_email_builder`: the receipts of billing/receipts.py) makes its own HTML + text
message with attachments instead.
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


def send_team_email(*, team: Team, template: str, context: dict) -> None:
    """Queue a templated email to the team's billing address, sent once the current transaction commits."""
    from .tasks import send_team_email_task

    team_id = team.pk
    transaction.on_commit(lambda: send_team_email_task.delay(team_id, template, context))


def team_email_send_now(*, team_id: int, template: str, context: dict) -> None:
    team = Team.objects.filter(pk=team_id).first()
    if team is None:
        return
    language = team_owner_language(team=team)
    builder = TEAM_EMAIL_BUILDERS.get(template)
    if builder is not None:
        message = builder(team=team, context=context, language=language)
        if message is not None:
            message.send()
            logger.info("sent %s email to team %s", template, team_id)
        return
    with translation.override(language):
        text = render_to_string(
            f"billing/email/{template}.txt",
            {**context, "team": team, "site_url": settings.SITE_URL, "language": language},
        )
    subject, _, body = text.strip().partition("\n")
    send_mail(subject.strip(), body.strip() + "\n", settings.DEFAULT_FROM_EMAIL, [team.billing_email])
    logger.info("sent %s email to team %s", template, team_id)


# Emails richer than a text template (HTML, attachments: the receipts of billing/receipts.py) register a builder
# here: builder(team=, context=, language=) -> EmailMultiAlternatives | None, called by the task when it sends.
TEAM_EMAIL_BUILDERS: dict[str, Callable[..., EmailMultiAlternatives | None]] = {}


def team_email_builder(template: str):
    def register(func):
        TEAM_EMAIL_BUILDERS[template] = func
        return func

    return register


def send_staff_email(*, subject: str, body: str) -> None:
    from .tasks import send_staff_email_task

    transaction.on_commit(lambda: send_staff_email_task.delay(subject, body))
