"""
The back office (Django admin as a refund and support console). Each area lives in its own module:

- customers: Customer 360 page per team, search by name/email/any Stripe id, support actions;
- refunds: refund requests (request form from a payment, four-eyes approval, retry);
- audit: the append-only, hash-chained audit trail (read-only for everyone, CSV export);
- reconciliation: reconciliation runs and drift with a repair action;
- webhooks: the webhook console (audited replay of stored Stripe events);
- emails: the email outbox (status, attempts, last error; audited re-send of parked emails);
- stripe_mirror: dj-stripe's mirror, read-only;
- dunning: subscriptions past due or unpaid, with retry / payment-update email / pause / cancel;
- credit_notes: the project's mirror of Stripe credit notes (read-only);
- site: the admin home as a work queue, the app list's order and the "Stripe mirror (read-only)" section;
- forms, mixins: the confirmed actions' forms; the read-only and million-row list mixins.

Django's admin autodiscovery imports this package; importing the modules below registers every admin. They are
plain imports on purpose: a missing module is a start-up error, never a silently missing page.
"""
from django.contrib import admin
from django.db.models.signals import post_migrate

from billing.admin import (  # noqa: F401  (they register)
    audit,
    credit_notes,
    customers,
    dunning,
    emails,
    reconciliation,
    refunds,
    webhooks,
)
from billing.admin.site import staff_console_install
from billing.admin.stripe_mirror import mirror_admins_make_read_only
from billing.backoffice.roles import roles_sync_after_migrate

# dj-stripe registers its admins when django.contrib.admin autodiscovers it, which happens before ours (djstripe is
# listed before billing in INSTALLED_APPS): replace them by read-only ones now.
mirror_admins_make_read_only(admin.site)
staff_console_install(admin.site)

post_migrate.connect(roles_sync_after_migrate, dispatch_uid="billing.backoffice.roles_sync")
