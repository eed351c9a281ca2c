"""
Back-office speed at scale: 1,000,000 charges and 1,000,000 webhook events (plus 1,000,000 mirrored dj-stripe events)
in PostgreSQL, loaded with COPY, then the query count and server time of every back-office page.

    DATABASE_URL=postgres://... .venv/bin/python bench/backoffice_bench.py [--charges N] [--events N] [--reload]

Needs PostgreSQL (COPY, the expression indexes); on SQLite it says so and exits 0. Data is generated once and kept
(rows carry a `bench` marker); --reload drops it and loads again. Targets (issue 6): <= 15 queries and <= 300 ms per
page. Each page is fetched through Django's test client (full middleware stack, in-process: server time, no
network), warmed once, then timed as the median of 5 requests.
"""
import argparse
import hashlib
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, models  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from djstripe import models as dj  # noqa: E402

from accounts.models import Membership, Team, User  # noqa: E402
from billing.models import AuditEntry, CreditNote, RefundRequest, WebhookEvent  # noqa: E402
from billing.models.audit import GENESIS_HASH  # noqa: E402

TARGET_QUERIES = 15
TARGET_MS = 300.0
MARK = "bench"
EVENT_TYPES = ["invoice.paid", "charge.succeeded", "charge.refunded", "customer.subscription.updated",
               "payment_intent.succeeded", "refund.updated", "invoice.payment_failed", "checkout.session.completed"]
EVENT_STATUSES = ["processed"] * 96 + ["failed", "parked", "pending", "processing"]


def copy_rows(model, columns: list[str], rows) -> int:
    """COPY rows (tuples in `columns` order, by attname) into the model's table. Other columns take their default."""
    from psycopg.types.json import Jsonb

    fields = {f.attname: f for f in model._meta.concrete_fields}
    extra = [f for f in model._meta.concrete_fields if f.attname not in columns and not f.primary_key]
    defaults = []
    for field in extra:
        if field.null:
            defaults.append(None)
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            defaults.append(datetime.now(UTC))
        elif field.has_default():
            defaults.append(field.get_default())
        else:
            raise SystemExit(f"{model.__name__}.{field.attname} needs a value")
    all_columns = columns + [f.column for f in extra]
    json_positions = [i for i, name in enumerate(columns + [f.attname for f in extra])
                      if isinstance(fields.get(name), models.JSONField)]
    sql = f'COPY {model._meta.db_table} ({", ".join(fields[c].column if c in fields else c for c in all_columns)}) ' \
          "FROM STDIN"
    count = 0
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for row in rows:
            values = list(row) + defaults
            for i in json_positions:
                values[i] = Jsonb(values[i]) if values[i] is not None else None
            copy.write_row(values)
            count += 1
    return count


def generate(n_charges: int, n_events: int, n_teams: int) -> None:
    rng = random.Random(42)
    now = datetime.now(UTC)
    t0 = time.perf_counter()

    def step(label: str, count: int) -> None:
        print(f"  {label:<28} {count:>9,} rows  ({time.perf_counter() - t0:6.1f}s)", flush=True)

    first_team = (Team.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
    team_ids = list(range(first_team, first_team + n_teams))
    step("teams", copy_rows(Team, ["id", "name", "billing_email", "created"], (
        (tid, f"{MARK} team {tid}", f"{MARK}.billing{tid}@example.com", now - timedelta(days=tid % 700))
        for tid in team_ids)))
    with connection.cursor() as cursor:
        cursor.execute("SELECT setval(pg_get_serial_sequence('accounts_team', 'id'), (SELECT max(id) FROM accounts_team))")
    first_user = (User.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
    step("users", copy_rows(User, ["id", "email", "password", "full_name", "date_joined"], (
        (first_user + i, f"{MARK}.owner{tid}@example.com", "!", f"Owner {tid}", now) for i, tid in enumerate(team_ids))))
    with connection.cursor() as cursor:
        cursor.execute("SELECT setval(pg_get_serial_sequence('accounts_user', 'id'), (SELECT max(id) FROM accounts_user))")
    step("memberships", copy_rows(Membership, ["user_id", "team_id", "role", "created"], (
        (first_user + i, tid, "owner", now) for i, tid in enumerate(team_ids))))

    customers = [f"cus_{MARK}{tid}" for tid in team_ids]
    step("customers", copy_rows(dj.Customer, ["id", "subscriber_id", "email", "livemode", "created", "stripe_data",
                                              "metadata"], (
        (cus, tid, f"{MARK}.billing{tid}@example.com", False, now - timedelta(days=400),
         {"id": cus, "object": "customer", "email": f"{MARK}.billing{tid}@example.com", "metadata": {}}, {})
        for cus, tid in zip(customers, team_ids, strict=True))))
    step("subscriptions", copy_rows(dj.Subscription, ["id", "customer_id", "livemode", "created", "stripe_data",
                                                      "metadata"], (
        (f"sub_{MARK}{tid}", cus, False, now - timedelta(days=300),
         {"id": f"sub_{MARK}{tid}", "object": "subscription", "status": "active", "customer": cus,
          "cancel_at_period_end": False, "items": {"object": "list", "data": [
              {"id": f"si_{MARK}{tid}", "price": {"id": "price_pro", "lookup_key": "pro_monthly",
                                                   "unit_amount": 9900, "currency": "usd",
                                                   "recurring": {"interval": "month"}}}]}}, {})
        for cus, tid in zip(customers, team_ids, strict=True))))
    step("invoices", copy_rows(dj.Invoice, ["id", "customer_id", "livemode", "created", "stripe_data", "metadata"], (
        (f"in_{MARK}{tid}x{k}", cus, False, now - timedelta(days=30 * k),
         {"id": f"in_{MARK}{tid}x{k}", "object": "invoice", "status": "paid", "total": 9900, "currency": "usd",
          "customer": cus}, {})
        for cus, tid in zip(customers, team_ids, strict=True) for k in range(10))))

    def charges():
        for n in range(n_charges):
            cus = customers[n % len(customers)]
            amount = rng.choice([900, 3900, 4900, 9900, 49900, 99000])
            refunded = amount if n % 50 == 0 else (amount // 2 if n % 37 == 0 else 0)
            status = "failed" if n % 41 == 0 else "succeeded"
            ch = f"ch_{MARK}{n}"
            yield (ch, cus, Decimal(amount) / 100, "usd", status, False, now - timedelta(seconds=n * 31),
                   {"id": ch, "object": "charge", "amount": amount, "amount_refunded": refunded, "currency": "usd",
                    "status": status, "disputed": n % 997 == 0, "refunded": refunded == amount, "captured": True,
                    "customer": cus, "payment_method_details": {"type": "card", "card": {
                        "brand": "visa", "last4": f"{(n * 7919) % 10000:04d}", "exp_month": 12,
                        "exp_year": 2030}}}, {})

    step("charges", copy_rows(dj.Charge, ["id", "customer_id", "amount", "currency", "status", "livemode", "created",
                                          "stripe_data", "metadata"], charges()))

    def webhook_events():
        for n in range(n_events):
            cus = customers[n % len(customers)]
            etype = EVENT_TYPES[n % len(EVENT_TYPES)]
            status = EVENT_STATUSES[n % len(EVENT_STATUSES)]
            evt = f"evt_{MARK}{n}"
            obj = f"ch_{MARK}{n}"
            at = now - timedelta(seconds=n * 29)
            yield (evt, etype, status, "webhook",
                   {"id": evt, "object": "event", "type": etype, "data": {"object": {"id": obj, "customer": cus}}},
                   False, "", at, obj, cus, "", 1 if status != "parked" else 5,
                   "Traceback...\nRuntimeError: boom" if status in ("failed", "parked") else "", at,
                   at if status == "processed" else None)

    step("billing webhook events", copy_rows(WebhookEvent, [
        "stripe_event_id", "type", "status", "source", "payload", "livemode", "api_version", "stripe_created",
        "stripe_object_id", "stripe_customer_id", "webhook_endpoint_id", "attempts", "last_error", "received_at",
        "processed_at"], webhook_events()))

    def djstripe_events():
        for n in range(n_events):
            cus = customers[n % len(customers)]
            etype = EVENT_TYPES[n % len(EVENT_TYPES)]
            evt = f"evt_{MARK}dj{n}"
            yield (evt, etype, False, now - timedelta(seconds=n * 29),
                   {"object": {"id": f"ch_{MARK}{n}", "customer": cus}}, {"id": evt, "type": etype}, {}, "")

    step("dj-stripe events", copy_rows(dj.Event, ["id", "type", "livemode", "created", "data", "stripe_data",
                                                  "metadata", "api_version"], djstripe_events()))

    staff = User.objects.filter(is_superuser=True).first()
    step("refund requests", copy_rows(RefundRequest, [
        "team_id", "stripe_charge_id", "stripe_payment_intent_id", "stripe_customer_id", "amount_minor", "currency",
        "charge_amount_minor", "reason", "note", "status", "requested_by_id", "created", "updated"], (
        (team_ids[n % len(team_ids)], f"ch_{MARK}{n * 50}", "", customers[n % len(customers)], 900, "usd", 900,
         "requested_by_customer", "", rng.choice(["requested", "succeeded", "failed", "rejected"]), staff.pk,
         now - timedelta(minutes=n), now) for n in range(2000))))

    last = AuditEntry.objects.order_by("-id").values_list("entry_hash", flat=True).first() or GENESIS_HASH

    def audit():
        nonlocal last
        for n in range(100_000):
            # Bench rows chain their hashes too (a simplified canonical form; the verifier is not run on them).
            entry_hash = hashlib.sha256(f"{last}{MARK}{n}".encode()).hexdigest()
            yield (now - timedelta(seconds=n), staff.pk, staff.email, "refund.requested", "done", "refund_request",
                   str(n), team_ids[n % len(team_ids)], {}, {"amount_minor": 900}, "", "", None, last, entry_hash)
            last = entry_hash

    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE billing_auditentry DISABLE TRIGGER billing_auditentry_append_only")
    step("audit entries", copy_rows(AuditEntry, [
        "created", "actor_id", "actor_email", "action", "outcome", "target_type", "target_id", "team_id", "before",
        "after", "reason", "request_id", "ip_address", "previous_hash", "entry_hash"], audit()))
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE billing_auditentry ENABLE TRIGGER billing_auditentry_append_only")
        cursor.execute("ANALYZE")
    step("analyze", 0)


def generate_staff_console_extras(n_credit_notes: int = 100_000) -> None:
    """
    Issue 14's pages need more than issue 6's data: every 40th team past due (its subscription `past_due`, its latest
    invoice open after two failed attempts), credit notes on invoices, and refund requests waiting for approval.
    Added once, to data loaded by an earlier run too.
    """
    if CreditNote.objects.filter(stripe_id__startswith=f"cn_{MARK}").exists():
        return
    t0 = time.perf_counter()
    now = datetime.now(UTC)
    team_ids = list(Team.objects.filter(name__startswith=f"{MARK} team").order_by("id").values_list("id", flat=True))
    past_due = team_ids[::40]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE djstripe_subscription SET stripe_data = stripe_data || jsonb_build_object('status', 'past_due', "
            "'latest_invoice', 'in_' || %s || substr(id, length('sub_' || %s) + 1) || 'x0') WHERE id = ANY(%s)",
            [MARK, MARK, [f"sub_{MARK}{tid}" for tid in past_due]])
        cursor.execute(
            "UPDATE djstripe_invoice SET stripe_data = stripe_data || jsonb_build_object('status', 'open', "
            "'attempt_count', 2, 'amount_remaining', 9900, 'next_payment_attempt', %s) WHERE id = ANY(%s)",
            [int(now.timestamp()) + 3 * 86400, [f"in_{MARK}{tid}x0" for tid in past_due]])
    print(f"  {'past-due subscriptions':<28} {len(past_due):>9,} rows  ({time.perf_counter() - t0:6.1f}s)", flush=True)
    count = copy_rows(CreditNote, ["stripe_id", "stripe_invoice_id", "stripe_customer_id", "team_id", "number",
                                   "status", "reason", "currency", "total_minor", "refund_minor", "credit_minor",
                                   "out_of_band_minor", "stripe_refund_id", "memo", "pdf_url", "stripe_created",
                                   "stripe_data", "updated"], (
        (f"cn_{MARK}{n}", f"in_{MARK}{team_ids[n % len(team_ids)]}x{1 + n % 9}",
         f"cus_{MARK}{team_ids[n % len(team_ids)]}", team_ids[n % len(team_ids)], f"BENCH-{n:06d}-CN-01", "issued",
         "", "usd", 990, 990, 0, 0, "", "", "", now - timedelta(minutes=n), {"id": f"cn_{MARK}{n}"}, now)
        for n in range(n_credit_notes)))
    print(f"  {'credit notes':<28} {count:>9,} rows  ({time.perf_counter() - t0:6.1f}s)", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE billing_creditnote; ANALYZE djstripe_subscription; ANALYZE djstripe_invoice")


def drop_bench_data() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM billing_creditnote WHERE stripe_id LIKE 'cn_{MARK}%'")
        cursor.execute("ALTER TABLE billing_auditentry DISABLE TRIGGER billing_auditentry_append_only")
        cursor.execute("DELETE FROM billing_auditentry WHERE target_type = 'refund_request' AND actor_email IN "
                       "(SELECT email FROM accounts_user WHERE is_superuser) AND reason = '' AND request_id = ''")
        cursor.execute("ALTER TABLE billing_auditentry ENABLE TRIGGER billing_auditentry_append_only")
        for table, column, pattern in [
            ("billing_refundrequest", "stripe_charge_id", f"ch_{MARK}%"),
            ("djstripe_event", "id", f"evt_{MARK}%"), ("billing_webhookevent", "stripe_event_id", f"evt_{MARK}%"),
            ("djstripe_charge", "id", f"ch_{MARK}%"), ("djstripe_invoice", "id", f"in_{MARK}%"),
            ("djstripe_subscription", "id", f"sub_{MARK}%"), ("djstripe_customer", "id", f"cus_{MARK}%"),
            ("accounts_membership", "team_id", None), ("accounts_user", "email", f"{MARK}.%"),
            ("accounts_team", "name", f"{MARK} team %"),
        ]:
            if pattern is None:
                cursor.execute(f"DELETE FROM {table} WHERE team_id IN (SELECT id FROM accounts_team WHERE name LIKE %s)",
                               [f"{MARK} team %"])
            else:
                cursor.execute(f"DELETE FROM {table} WHERE {column} LIKE %s", [pattern])


def verified_client(user) -> Client:
    """
    A client logged in as `user` and verified with a second factor, as staff with money powers are in production
    (STAFF_OTP_REQUIRED): the session names a confirmed TOTP device, so django_otp's lookup is counted too.
    """
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first() or TOTPDevice.objects.create(
        user=user, name="bench", confirmed=True)
    client = Client()
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def measure(client: Client, label: str, url: str, results: list) -> None:
    response = client.get(url)  # warm caches (templates, permissions)
    if response.status_code != 200:
        results.append((label, url, response.status_code, 0, 0.0))
        return
    timings, queries = [], 0
    for _ in range(5):
        with CaptureQueriesContext(connection) as captured:
            start = time.perf_counter()
            response = client.get(url)
            if hasattr(response, "streaming_content"):
                b"".join(response.streaming_content)
            timings.append((time.perf_counter() - start) * 1000)
        queries = len(captured.captured_queries)
    results.append((label, url, response.status_code, queries, statistics.median(timings)))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--charges", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--teams", type=int, default=10_000)
    parser.add_argument("--reload", action="store_true")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        print("backoffice_bench: needs PostgreSQL (set DATABASE_URL=postgres://...); skipped.")
        return 0
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if args.reload:
        print("Dropping previous bench data…", flush=True)
        drop_bench_data()
    loaded = dj.Charge.objects.filter(id=f"ch_{MARK}{args.charges - 1}").exists()
    if not loaded:
        if dj.Charge.objects.filter(id__startswith=f"ch_{MARK}").exists():
            drop_bench_data()
        if not User.objects.filter(is_superuser=True).exists():
            User.objects.create_superuser(email="bench-admin@example.com", password=None)
        print(f"Loading {args.charges:,} charges, {args.events:,} webhook events and {args.events:,} dj-stripe "
              f"events for {args.teams:,} teams with COPY…", flush=True)
        generate(args.charges, args.events, args.teams)
    generate_staff_console_extras()
    counts = {name: model.objects.count() for name, model in [
        ("charges", dj.Charge), ("webhook events", WebhookEvent), ("dj-stripe events", dj.Event),
        ("teams", Team), ("audit entries", AuditEntry), ("refund requests", RefundRequest)]}
    print("Rows: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))

    settings.DEBUG = False
    admin = User.objects.filter(is_superuser=True).order_by("id").first()
    client = verified_client(admin)
    team_id = Team.objects.filter(name__startswith=f"{MARK} team").order_by("id").values_list("id", flat=True)[5]
    cus = f"cus_{MARK}{team_id}"
    charge = dj.Charge.objects.filter(customer_id=cus).order_by("-created").first()
    event = WebhookEvent.objects.filter(stripe_customer_id=cus).order_by("-received_at").first()
    dj_event = dj.Event.objects.filter(id__startswith=f"evt_{MARK}dj").order_by("id").first()
    rr = RefundRequest.objects.order_by("-id").first()
    card = charge.stripe_data["payment_method_details"]["card"]
    card_last4, card_amount = card["last4"], f"{charge.amount:.2f}"
    invoice = dj.Invoice.objects.filter(id=f"in_{MARK}{team_id}x1").first()
    past_due_team_id = (dj.Subscription.objects.filter(id__startswith=f"sub_{MARK}", stripe_data__status="past_due")
                        .values_list("customer__subscriber_id", flat=True).first())
    pages = [
        ("admin index", "/admin/"),
        ("customers (360) list", "/admin/billing/customeraccount/"),
        ("customers: search ch_", f"/admin/billing/customeraccount/?q={charge.id}"),
        ("customers: search evt_", f"/admin/billing/customeraccount/?q={event.stripe_event_id}"),
        ("customers: search cus_", f"/admin/billing/customeraccount/?q={cus}"),
        ("customers: search email", f"/admin/billing/customeraccount/?q={MARK}.owner{team_id}@example.com"),
        ("customers: search name", f"/admin/billing/customeraccount/?q=team%20{team_id}"),
        ("customer 360 page", f"/admin/billing/customeraccount/{team_id}/change/"),
        ("charges list", "/admin/djstripe/charge/"),
        ("charges: status=failed", "/admin/djstripe/charge/?status__exact=failed"),
        ("charges: search ch_", f"/admin/djstripe/charge/?q={charge.id}"),
        ("charge detail", f"/admin/djstripe/charge/{charge.pk}/change/"),
        ("webhook console", "/admin/billing/webhookevent/"),
        ("webhook: status=parked", "/admin/billing/webhookevent/?status__exact=parked"),
        ("webhook: type filter", "/admin/billing/webhookevent/?type=charge.refunded"),
        ("webhook: search evt_", f"/admin/billing/webhookevent/?q={event.stripe_event_id}"),
        ("webhook event detail", f"/admin/billing/webhookevent/{event.pk}/change/"),
        ("dj-stripe events list", "/admin/djstripe/event/"),
        ("dj-stripe event detail", f"/admin/djstripe/event/{dj_event.pk}/change/"),
        ("refund requests list", "/admin/billing/refundrequest/"),
        ("refund requests: failed", "/admin/billing/refundrequest/?status__exact=failed"),
        ("refund request detail", f"/admin/billing/refundrequest/{rr.pk}/change/"),
        ("audit trail", "/admin/billing/auditentry/"),
        ("audit: action filter", "/admin/billing/auditentry/?action__exact=refund.requested"),
        ("reconciliation drift", "/admin/billing/reconciliationdrift/"),
        ("customers (dj-stripe)", "/admin/djstripe/customer/"),
        ("invoices list", "/admin/djstripe/invoice/"),
        ("subscriptions list", "/admin/djstripe/subscription/"),
        # Staff console (issue 14)
        ("customers: search in_", f"/admin/billing/customeraccount/?q=in_{MARK}{team_id}x3"),
        ("customers: search cn_", f"/admin/billing/customeraccount/?q=cn_{MARK}5"),
        ("customers: search card+amt", f"/admin/billing/customeraccount/?q={card_last4}+{card_amount}"),
        ("refund: choose payment", f"/admin/billing/customeraccount/{team_id}/refund/"),
        ("dunning", "/admin/billing/dunningsubscription/"),
        ("credit notes list", "/admin/billing/creditnote/"),
        ("credit notes: search in_", f"/admin/billing/creditnote/?q=in_{MARK}{team_id}x1"),
        ("invoice detail", f"/admin/djstripe/invoice/{invoice.pk}/change/"),
        ("past-due 360 page", f"/admin/billing/customeraccount/{past_due_team_id}/change/"),
    ]
    results: list = []
    for label, url in pages:
        measure(client, label, url, results)
    # Support and Finance users pay for permission lookups that a superuser skips: measure the staff console's
    # pages as each of them too.
    from django.contrib.auth.models import Group

    for role in ("Support", "Finance"):
        email = f"bench-{role.lower()}@example.com"
        user = User.objects.filter(email=email).first()
        if user is None:
            user = User.objects.create_user(email=email, password=None, is_staff=True)
            user.groups.add(Group.objects.get(name=role))
        role_client = verified_client(user)
        for label, url in pages:
            if label in ("admin index", "customer 360 page", "past-due 360 page", "charges list", "webhook console",
                         "refund requests list", "audit trail", "customers: search ch_", "customers: search email",
                         "customers: search in_", "customers: search cn_", "customers: search card+amt",
                         "refund: choose payment", "dunning", "credit notes list", "invoice detail"):
                measure(role_client, f"[{role}] {label}", url, results)
    print(f"\n{'page':<36} {'status':>6} {'queries':>8} {'ms (median of 5)':>17}  target <= {TARGET_QUERIES} q, "
          f"<= {TARGET_MS:.0f} ms")
    worst_q, worst_ms, misses = 0, 0.0, 0
    for label, _url, status, queries, ms in results:
        ok = status == 200 and queries <= TARGET_QUERIES and ms <= TARGET_MS
        misses += not ok
        worst_q, worst_ms = max(worst_q, queries), max(worst_ms, ms)
        print(f"{label:<36} {status:>6} {queries:>8} {ms:>17.1f}  {'ok' if ok else 'MISS'}")
    print(f"\nworst: {worst_q} queries ({worst_q / TARGET_QUERIES:.2f}x of target), {worst_ms:.1f} ms "
          f"({worst_ms / TARGET_MS:.2f}x of target); {misses} page(s) over target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
