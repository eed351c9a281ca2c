"""
Staff roles. `Support` sees everything and does the everyday support actions; `Finance` can do all of that plus
approve refunds, cancel immediately and grant credits without the Support limit. Superusers can do everything.

`roles_sync()` is idempotent: the data migration 0102 runs it, and a post_migrate receiver runs it again so view
permissions for models added later (other apps' migrations) reach the groups too.
"""
SUPPORT = "Support"
FINANCE = "Finance"

# Apps whose every model staff may view (read-only views: mirrored Stripe data, teams, usage, our own records).
VIEW_APPS = ("accounts", "billing", "usage", "djstripe")
# Never viewable by staff roles: dj-stripe's API key rows carry secret keys.
HIDDEN_MODELS = {("djstripe", "apikey"), ("accounts", "apikey")}

SUPPORT_PERMISSIONS = (
    "billing.request_refund",
    "billing.grant_credits",
    "billing.remove_credits",
    "billing.resync_customer",
    "billing.cancel_subscription_at_period_end",
    "billing.extend_trial",
    "billing.replay_webhooks",
    "billing.resend_receipt",
    # Dunning (issue 14): retrying a failed invoice and emailing the card-update link are everyday support.
    "billing.retry_invoice_payment",
    "billing.send_payment_update_email",
    # The email outbox: re-sending a parked email (it was never delivered) is everyday support, like a replay.
    "billing.resend_outbound_email",
)
FINANCE_PERMISSIONS = SUPPORT_PERMISSIONS + (
    "billing.approve_refund",
    "billing.cancel_subscription_now",
    "billing.grant_credits_unlimited",
    "billing.run_reconciliation",
    "billing.export_auditentry",
    # Pausing collection stops money coming in: Finance decides it, like an immediate cancel.
    "billing.pause_subscription",
    # dj-stripe's mirror lists: Finance's section of the admin home (Support keeps view rights for links from the
    # back-office pages, but the section is not listed for them).
    "billing.browse_stripe_mirror",
)


def roles_sync(*, apps=None) -> None:
    """Create the groups and give them their permissions (adds only; never removes what an admin added)."""
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    apps = apps or global_apps
    for app_config in global_apps.get_app_configs():
        if app_config.label in VIEW_APPS or app_config.label in ("auth", "contenttypes"):
            # Permissions are normally created after migrate; the groups need them now.
            create_permissions(app_config, verbosity=0, apps=apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    view_perms = [
        p for p in Permission.objects.filter(codename__startswith="view_", content_type__app_label__in=VIEW_APPS)
        .select_related("content_type")
        if (p.content_type.app_label, p.content_type.model) not in HIDDEN_MODELS
    ]

    def named(perms: tuple[str, ...]) -> list:
        found = []
        for dotted in perms:
            app_label, codename = dotted.split(".")
            found.extend(Permission.objects.filter(content_type__app_label=app_label, codename=codename))
        return found

    for group_name, perms in ((SUPPORT, SUPPORT_PERMISSIONS), (FINANCE, FINANCE_PERMISSIONS)):
        group, _ = Group.objects.get_or_create(name=group_name)
        group.permissions.add(*view_perms, *named(perms))


def roles_sync_after_migrate(sender, **kwargs) -> None:
    """post_migrate receiver: once per migrate (on the billing app's signal), after the permissions exist."""
    if getattr(sender, "label", None) == "billing":
        roles_sync()
