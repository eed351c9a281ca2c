"""The Support and Finance groups get the staff console's new permissions (same pattern as 0102: roles_sync adds)."""
from django.db import migrations


def sync_roles(apps, schema_editor):
    from billing.backoffice.roles import roles_sync

    roles_sync(apps=apps)


class Migration(migrations.Migration):
    dependencies = [("billing", "0109_staff_console")]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
