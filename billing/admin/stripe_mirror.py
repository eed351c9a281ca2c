"""
dj-stripe's mirrored data, read-only. Stripe is the source of truth: nobody adds, edits or deletes mirror rows here
(changes go through Stripe via services, then come back by webhook or resync). dj-stripe's own admins are replaced by
read-only wrappers; the busy ones (charges, events, customers, payment intents, invoices, subscriptions, refunds) get
lists built for 1,000,000 rows: exact-id search on unique indexes, no full counts, related rows joined, no N+1.
"""
from django.contrib import admin
from django.core.exceptions import FieldError
from django.db.models.constants import LOOKUP_SEP
from django.db.models.sql.query import Query
from django.urls import reverse
from django.utils.html import format_html
from djstripe import models as djstripe_models

from billing.admin.mixins import ExactIdSearchMixin, FastListMixin, ReadOnlyAdminMixin, team_360_link
from billing.backoffice.selectors import payment_rows
from billing_site.money import format_money


class ReadOnlyMirrorMixin(ReadOnlyAdminMixin, FastListMixin):
    list_per_page = 50

    def get_actions(self, request):
        return {}  # dj-stripe's resync/sync-all actions write outside our services and audit

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def get_search_fields(self, request):
        # dj-stripe's own admins still search columns its models folded into `stripe_data` (Account.settings,
        # Session.customer_email, PromotionCode.code): any search on those lists was a FieldError, a 500. Keep the
        # search fields that name a real field of the model.
        return [name for name in super().get_search_fields(request) if _search_field_resolves(self.model, name)]


def _search_field_resolves(model, search_field: str) -> bool:
    """Whether the first name of an admin search field (`^name`, `=fk__name`, `name__iexact`) is a field of `model`."""
    try:
        Query(model).names_to_path(search_field.lstrip("^=@").split(LOOKUP_SEP), model._meta, allow_many=True)
    except FieldError:
        return False
    return True


def _money(data: dict, key: str = "amount") -> str:
    if not data or data.get(key) is None or not data.get("currency"):
        return ""
    return format_money(int(data[key]), data["currency"])


def _team_link(customer) -> str:
    return team_360_link(customer.subscriber if customer is not None else None, empty="—")


class MirrorAdmin(ExactIdSearchMixin, ReadOnlyMirrorMixin, admin.ModelAdmin):
    ordering = ["-created", "-djstripe_id"]
    search_fields = ["=id"]  # the search box; the lookups are `exact_search`
    list_filter = ["livemode"]
    search_help_text = "Exact Stripe id."


class ChargeAdmin(MirrorAdmin):
    list_display = ["id", "created", "amount_display", "refunded_display", "status", "disputed_flag", "team",
                    "payment_intent_id", "refund_button"]
    list_filter = ["status", "livemode"]
    exact_search = [("id", ("ch_", "py_")), ("payment_intent_id", ("pi_",)), ("customer_id", ("cus_",))]
    search_help_text = "Exact ch_, pi_ or cus_ id."
    list_select_related = ["customer__subscriber"]

    @admin.display(description="Amount")
    def amount_display(self, obj):
        return _money(obj.stripe_data)

    @admin.display(description="Refunded")
    def refunded_display(self, obj):
        return _money(obj.stripe_data, "amount_refunded") if (obj.stripe_data or {}).get("amount_refunded") else ""

    @admin.display(description="Disputed", boolean=True)
    def disputed_flag(self, obj):
        return bool((obj.stripe_data or {}).get("disputed"))

    @admin.display(description="Team")
    def team(self, obj):
        return _team_link(obj.customer)

    @admin.display(description="")
    def refund_button(self, obj):
        row = payment_rows(charges=[obj])[0]
        if not row.refundable:
            return ""
        return format_html('<a class="button" href="{}">Refund…</a>',
                           reverse("admin:billing_refundrequest_new", args=[obj.id]))


class CustomerAdmin(MirrorAdmin):
    list_display = ["id", "created", "email", "team"]
    exact_search = [("id", ("cus_",)), ("email__iexact", None)]
    search_help_text = "Exact cus_ id or email."
    list_select_related = ["subscriber"]

    @admin.display(description="Team (360)")
    def team(self, obj):
        return _team_link(obj)


class PaymentIntentAdmin(MirrorAdmin):
    list_display = ["id", "created", "amount_display", "status_display", "customer_id"]
    exact_search = [("id", ("pi_",)), ("customer_id", ("cus_",))]

    @admin.display(description="Amount")
    def amount_display(self, obj):
        return _money(obj.stripe_data)

    @admin.display(description="Status")
    def status_display(self, obj):
        return (obj.stripe_data or {}).get("status", "")


class InvoiceAdmin(MirrorAdmin):
    list_display = ["id", "created", "status_display", "total_display", "credited_display", "customer_id",
                    "subscription_id"]
    exact_search = [("id", ("in_",)), ("customer_id", ("cus_",)), ("subscription_id", ("sub_",))]

    def get_readonly_fields(self, request, obj=None):
        return ["credit_notes_display", *super().get_readonly_fields(request, obj)]

    def get_fields(self, request, obj=None):
        return ["credit_notes_display", *[f.name for f in self.model._meta.fields]]

    @admin.display(description="Credited")
    def credited_display(self, obj):
        data = obj.stripe_data or {}
        credited = int(data.get("post_payment_credit_notes_amount") or 0) + int(
            data.get("pre_payment_credit_notes_amount") or 0)
        return format_money(credited, data["currency"]) if credited and data.get("currency") else ""

    @admin.display(description="Credit notes")
    def credit_notes_display(self, obj):
        # The invoice's page only (one query): the project's CreditNote mirror, newest first.
        from django.utils.html import format_html_join

        from billing.models import CreditNote

        notes = list(CreditNote.objects.filter(stripe_invoice_id=obj.id).order_by("-stripe_created"))
        if not notes:
            return "—"
        return format_html_join(
            "", '<div class="bo-credit-note"><a href="{}"><code>{}</code></a> {} · {} {}</div>',
            ((reverse("admin:billing_creditnote_change", args=[n.pk]), n.number or n.stripe_id, n.total_display,
              ("credited to balance " + n.credit_display) if n.credit_minor else ("refunded " + n.refund_display),
              "(void)" if n.status == "void" else "") for n in notes))

    @admin.display(description="Status")
    def status_display(self, obj):
        return (obj.stripe_data or {}).get("status", "")

    @admin.display(description="Total")
    def total_display(self, obj):
        return _money(obj.stripe_data, "total")


class SubscriptionAdmin(MirrorAdmin):
    list_display = ["id", "created", "status_display", "team", "cancel_at_period_end_display"]
    exact_search = [("id", ("sub_",)), ("customer_id", ("cus_",))]
    list_select_related = ["customer__subscriber"]

    @admin.display(description="Status")
    def status_display(self, obj):
        return (obj.stripe_data or {}).get("status", "")

    @admin.display(description="Cancels at period end", boolean=True)
    def cancel_at_period_end_display(self, obj):
        return bool((obj.stripe_data or {}).get("cancel_at_period_end"))

    @admin.display(description="Team")
    def team(self, obj):
        return _team_link(obj.customer)


class RefundAdmin(MirrorAdmin):
    list_display = ["id", "created", "amount_display", "status_display", "charge_id", "reason_display"]
    exact_search = [("id", ("re_", "pyr_")), ("charge_id", ("ch_", "py_"))]

    @admin.display(description="Amount")
    def amount_display(self, obj):
        return _money(obj.stripe_data)

    @admin.display(description="Status")
    def status_display(self, obj):
        return (obj.stripe_data or {}).get("status", "")

    @admin.display(description="Reason")
    def reason_display(self, obj):
        return (obj.stripe_data or {}).get("reason", "")


class EventAdmin(MirrorAdmin):
    list_display = ["id", "created", "type", "object_id"]
    list_filter = ["livemode"]
    exact_search = [("id", ("evt_",)), ("type", None)]
    exclude = []

    @admin.display(description="Object")
    def object_id(self, obj):
        return ((obj.data or {}).get("object") or {}).get("id", "")


CUSTOM = {
    djstripe_models.Charge: ChargeAdmin,
    djstripe_models.Customer: CustomerAdmin,
    djstripe_models.PaymentIntent: PaymentIntentAdmin,
    djstripe_models.Invoice: InvoiceAdmin,
    djstripe_models.Subscription: SubscriptionAdmin,
    djstripe_models.Refund: RefundAdmin,
    djstripe_models.Event: EventAdmin,
}
# Rows carrying secrets are not shown to anyone in the back office.
HIDDEN = {djstripe_models.APIKey}


def mirror_admins_make_read_only(site: admin.AdminSite) -> None:
    """Replace every dj-stripe admin on `site` by a read-only one (idempotent)."""
    for model, model_admin in list(site._registry.items()):
        if model._meta.app_label != "djstripe" or isinstance(model_admin, ReadOnlyMirrorMixin):
            continue
        site.unregister(model)
        if model in HIDDEN:
            continue
        admin_class = CUSTOM.get(model) or type(f"ReadOnly{type(model_admin).__name__}",
                                                (ReadOnlyMirrorMixin, type(model_admin)), {})
        site.register(model, admin_class)
