"""Settings for the webhook benchmarks: the project's settings plus dj-stripe's stock webhook URL (for comparison)."""
from billing_site.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench._bench_urls"
LOGGING["root"]["level"] = "WARNING"  # noqa: F405  (one log line per event would measure the logger)
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
SECURE_SSL_REDIRECT = False
# A queue of its own: a benchmark's purge or workers must never touch the tasks of tests or `make run` on the same
# Redis database (and vice versa).
CELERY_TASK_DEFAULT_QUEUE = "billing-bench"
# dj-stripe's stock view (the ingest benchmark's comparison) syncs every event inside its own transaction, retrieving
# the object from Stripe there: the project's guard logs one error line per such call, which would bury the figures.
# The project's own endpoint makes no Stripe call at all.
LOGGING["loggers"]["billing.stripe"] = {"level": "CRITICAL"}  # noqa: F405
