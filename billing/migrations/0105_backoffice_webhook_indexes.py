"""
Indexes the webhook console and the Customer 360 page need on the billing core's event table (1,000,000 rows):
type + time and customer + time, so a filtered list is an index range scan. Created IF NOT EXISTS (the table is the
billing core's), PostgreSQL only, dropped by the reverse.
"""
from django.db import migrations

INDEXES = [
    ("bo_webhookevent_type_received", "billing_webhookevent", "(type, received_at DESC)"),
    ("bo_webhookevent_customer_received", "billing_webhookevent", "(stripe_customer_id, received_at DESC)"),
    ("bo_webhookevent_received_id", "billing_webhookevent", "(received_at DESC, id DESC)"),
]


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name, table, columns in INDEXES:
            schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} {columns}")


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name, _table, _columns in INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("billing", "0104_merge_billing_core")]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
