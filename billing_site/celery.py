"""Celery application. Settings live in Django settings under the CELERY_ namespace."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")

app = Celery("billing_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
# `<app>.tasks` of every installed app, and the back office's tasks, which live in their own package
# (billing/backoffice/tasks.py) beside the services they call. Both lazy: imported when the worker finalizes.
app.autodiscover_tasks()
app.autodiscover_tasks(["billing.backoffice"])
