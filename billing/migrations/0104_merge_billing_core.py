"""Joins the billing core's migrations (0001_*) and the back office's (0101_*..) into one graph."""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0001_initial"),
        ("billing", "0103_backoffice_stripe_indexes"),
    ]

    operations = []
