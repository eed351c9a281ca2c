"""
Indexes the back office needs on dj-stripe's tables (1,000,000 charges and events must page fast). dj-stripe 2.11 keeps
most fields in JSON columns and has no index on `created`; these tables are not ours, so every index is created with
IF NOT EXISTS, dropped by the reverse, and only on PostgreSQL (SQLite is the small embedded default).

Expressions match what the ORM emits: `stripe_data__refunded=True` is `(stripe_data -> 'refunded') = 'true'::jsonb`,
`data__object__customer="cus_x"` is `(data #> '{object,customer}') = '"cus_x"'::jsonb`.
"""
from django.db import migrations

INDEXES = [
    ("bo_charge_created", "djstripe_charge", "(created DESC, djstripe_id DESC)"),
    ("bo_charge_customer_created", "djstripe_charge", "(customer_id, created DESC)"),
    ("bo_charge_refunded", "djstripe_charge", "((stripe_data -> 'refunded'))"),
    ("bo_charge_disputed", "djstripe_charge", "((stripe_data -> 'disputed'))"),
    ("bo_charge_status_created", "djstripe_charge", "(status, created DESC)"),
    ("bo_event_created", "djstripe_event", "(created DESC, djstripe_id DESC)"),
    ("bo_event_type_created", "djstripe_event", "(type, created DESC)"),
    ("bo_event_object_customer", "djstripe_event", "((data #> '{object,customer}'), created DESC)"),
    ("bo_event_object_id", "djstripe_event", "((data #> '{object,id}'))"),
    ("bo_invoice_customer_created", "djstripe_invoice", "(customer_id, created DESC)"),
    ("bo_invoice_created", "djstripe_invoice", "(created DESC, djstripe_id DESC)"),
    ("bo_paymentintent_created", "djstripe_paymentintent", "(created DESC, djstripe_id DESC)"),
    ("bo_refund_created", "djstripe_refund", "(created DESC, djstripe_id DESC)"),
    ("bo_subscription_created", "djstripe_subscription", "(created DESC, djstripe_id DESC)"),
]


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, table, columns in INDEXES:
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} {columns}")


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _table, _columns in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0102_backoffice_roles"),
        ("djstripe", "0003_2_11"),
    ]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
