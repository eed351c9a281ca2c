"""Support and Finance groups with their permissions (see billing/backoffice/roles.py)."""
from django.db import migrations


def create_roles(apps, schema_editor):
    from billing.backoffice.roles import roles_sync

    roles_sync(apps=apps)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["Support", "Finance"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0101_backoffice_models"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("djstripe", "0003_2_11"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
