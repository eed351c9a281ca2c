"""
The back office (Django admin as a refund and support console). Each area lives in its own module:

- admin_customers.py: Customer 360 page per team, search by name/email/any Stripe id, support actions;
- admin_refunds.py: refund requests (request form from a payment, four-eyes approval, retry);
- admin_audit.py: the append-only, hash-chained audit trail (read-only for everyone, CSV export);
- admin_stripe.py: dj-stripe's mirror, read-only;
- admin_reconciliation.py: reconciliation runs and drift with a repair action;
- admin_webhooks.py (billing core) / admin_console_webhooks.py: the webhook console.
"""
from django.contrib import admin
from django.db.models.signals import post_migrate

from billing import admin_audit, admin_customers, admin_reconciliation, admin_refunds  # noqa: F401
from billing.admin_stripe import mirror_admins_make_read_only
from billing.backoffice.roles import roles_sync_after_migrate

try:  # the billing core's webhook admin, when merged
    from billing import admin_webhooks  # noqa: F401
except ImportError:
    pass
try:
    from billing import admin_console_webhooks  # noqa: F401
except ImportError:
    pass

# dj-stripe registers its admins when django.contrib.admin autodiscovers it, which happens before ours (djstripe is
# listed before billing in INSTALLED_APPS): replace them by read-only ones now.
mirror_admins_make_read_only(admin.site)

post_migrate.connect(roles_sync_after_migrate, dispatch_uid="billing.backoffice.roles_sync")
