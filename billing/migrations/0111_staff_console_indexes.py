"""
Indexes for the staff console's lookups on dj-stripe's tables (PostgreSQL only, IF NOT EXISTS, like 0103):
the dunning page filters subscriptions by `stripe_data -> 'status'`, and the staff search "card last 4 + amount"
matches charges by amount (dj-stripe's decimal column) and the card's last 4 in the JSON.
Expressions match what the ORM emits: `stripe_data__status__in=[...]` is `(stripe_data -> 'status') IN (...)`,
`stripe_data__payment_method_details__card__last4="4242"` is `(stripe_data #> '{payment_method_details,card,last4}')`.
"""
from django.db import migrations

INDEXES = [
    ("bo_subscription_status", "djstripe_subscription", "((stripe_data -> 'status'))"),
    ("bo_charge_amount_last4", "djstripe_charge",
     "(amount, (stripe_data #> '{payment_method_details,card,last4}'))"),
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
    dependencies = [("billing", "0110_staff_console_roles"), ("djstripe", "0003_2_11")]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
