"""
Settings for the billing back office, read from the environment through django-environ.

Every name here is listed in .env.example. The embedded defaults make `make run` work on a machine with nothing but
Python: SQLite, tasks run eagerly in-process, local-memory cache, the offline Stripe emulator. Production
(`DJANGO_DEBUG=false`) refuses to start without its secrets instead of inventing them.
"""
import sys
from pathlib import Path
from urllib.parse import urlsplit

import environ
import stripe
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=True)


def required_in_production(name: str, dev_default: str) -> str:
    """A secret that has a throwaway default in development and none at all in production."""
    value = env.str(name, default="")
    if value:
        return value
    if DEBUG:
        return dev_default
    raise ImproperlyConfigured(
        f"The environment variable {name} must be set when DJANGO_DEBUG=false (production refuses to start "
        f"without it rather than run on a development default). See .env.example."
    )


SECRET_KEY = required_in_production("DJANGO_SECRET_KEY", "dev-only-insecure-secret-key-change-me")
# Key for hashing API keys (HMAC-SHA256). Separate from SECRET_KEY so that rotating one does not revoke the other.
API_KEY_HMAC_SECRET = required_in_production("API_KEY_HMAC_SECRET", "dev-only-api-key-hmac-secret")

SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Production serves the host of SITE_URL unless told otherwise; development also answers the test client.
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS",
    default=["127.0.0.1", "localhost", "testserver"] if DEBUG else [urlsplit(SITE_URL).hostname],
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[SITE_URL])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from static/, not a CDN: the docs work offline
    "django_celery_beat",
    "django_prometheus",
    "djstripe",
    # Security (issue 10): login throttling, staff second factor (TOTP + recovery codes), Content-Security-Policy.
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "csp",
    "accounts",
    "billing",
    "usage",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "billing_site.middleware.RequestIdMiddleware",
    # Security (issue 10): API bodies above API_MAX_BODY_BYTES answer 413 before anything reads them.
    "billing_site.middleware.APIBodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Security (issue 10): the Content-Security-Policy header on every response.
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Security (issue 10): request.user.is_verified() (django-otp), then staff with money powers must have passed
    # their second factor before any admin page opens.
    "django_otp.middleware.OTPMiddleware",
    "accounts.middleware.StaffSecondFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "billing_site.middleware.ApplicationErrorMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Security (issue 10): django-axes wants to be last (it turns a lockout into the lockout page).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "billing_site.urls"
WSGI_APPLICATION = "billing_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "accounts.context_processors.current_team",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
# A persistent connection is checked before reuse, so a restarted database costs one retry, not one error.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # SQLite is the embedded default (`make run`: gunicorn workers, the emulator's webhooks and the in-process
    # scheduler write at once). WAL lets readers run beside the one writer; IMMEDIATE takes the write lock when a
    # transaction begins, so two writers queue on `timeout` instead of one failing with "database is locked" when it
    # upgrades a read lock (SQLite cannot wait in that case). No transaction is ever held across a Stripe call.
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
    })
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USING_POSTGRES = "postgresql" in DATABASES["default"]["ENGINE"]
RUNNING_TESTS = "pytest" in sys.modules
if RUNNING_TESTS:
    from billing_site.testdb import configure_test_database

    # A migrated test database reused between runs, named after its migrations (reasons in billing_site/testdb.py).
    configure_test_database(DATABASES["default"], installed_apps=INSTALLED_APPS, cache_dir=BASE_DIR / ".testdb")

# --- Auth and accounts ------------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "billing:overview"
LOGOUT_REDIRECT_URL = "home"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_RESET_TIMEOUT = 60 * 60 * 24
INVITATION_MAX_AGE_SECONDS = env.int("INVITATION_MAX_AGE_SECONDS", default=7 * 24 * 3600)

# --- I18N -------------------------------------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("pt-br", "Português (Brasil)")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# One date format per language for customers ("14 Dec 2026" / "14 dez 2026"): billing_site/formats/<lang>/.
FORMAT_MODULE_PATH = ["billing_site.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files -----------------------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# In development WhiteNoise serves straight from the app and static/ directories, so no collectstatic is needed.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Cache (Redis) ----------------------------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    # Redis failures degrade to cache misses (database reads) instead of 500s: billing_site/cache.py. Short socket
    # timeouts so a dead Redis costs a request at most one second, not the OS connect timeout.
    CACHES = {"default": {"BACKEND": "billing_site.cache.DegradingRedisCache", "LOCATION": REDIS_URL,
                          "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1}}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "billing"}}

# Stripe's webhook deliveries skip sessions, locale, CSRF, auth, OTP, messages and the lockout (billing_site/wsgi.py).
BILLING_WEBHOOK_MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "billing_site.middleware.RequestIdMiddleware",
    "billing_site.middleware.APIBodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# --- Celery -----------------------------------------------------------------------------------------------------
# Tasks are found by autodiscovery (`<app>.tasks`, plus billing.backoffice.tasks: billing_site/celery.py); the
# periodic ones are in one table, CELERY_BEAT_SCHEDULE, below the settings it reads (after the back office).
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or None
# Without a broker, tasks run in-process as they are enqueued: the embedded default needs no worker.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
# A task that dies with its worker is redelivered instead of lost; tasks are written to be safe to run twice.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
# Redis redelivers a message taken by a killed worker only after this long. Recovery does not wait for it: the rows
# (webhook events, refund requests, meter reports) say what is left to do, and the fast sweeps below re-send what is
# due within seconds (docs/operations.md, "Recovery"). It stays above the longest countdown a task uses (an ETA
# message is held unacked by a worker until it runs) so a scheduled retry is never delivered twice by Redis itself.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600, "socket_connect_timeout": 2, "socket_timeout": 5}
# The web process enqueues after commit: with the broker down, fail fast (the rows are swept) instead of retrying
# the connection for the whole request.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}
CELERY_RESULT_EXPIRES = 3600
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Workers log through the project's JSON handler instead of Celery replacing the root logger with its own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Stripe and dj-stripe ---------------------------------------------------------------------------------------
# The emulator's test keys (real sk_test_... keys work unchanged when STRIPE_API_BASE is unset). dj-stripe only
# accepts keys shaped `sk_test_` + 24 or more alphanumerics (it reads the mode from the key), so these look like real
# test keys; the emulator accepts any sk_test_/rk_test_ key.
EMULATOR_SECRET_KEY = "sk_test_emulator000000000000000000000000"
EMULATOR_PUBLISHABLE_KEY = "pk_test_emulator000000000000000000000000"
STRIPE_SECRET_KEY = required_in_production("STRIPE_SECRET_KEY", EMULATOR_SECRET_KEY)
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default=EMULATOR_PUBLISHABLE_KEY)
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
# Pin the version explicitly: dj-stripe documents one and the SDK sends another otherwise. dj-stripe reads this
# setting for every call it makes, so the mirror and the gateway agree on shapes.
STRIPE_API_VERSION = env.str("STRIPE_API_VERSION", default=stripe.api_version)
STRIPE_LIVE_MODE = env.bool("STRIPE_LIVE_MODE", default=False)
STRIPE_TEST_SECRET_KEY = STRIPE_SECRET_KEY if not STRIPE_LIVE_MODE else ""
STRIPE_LIVE_SECRET_KEY = STRIPE_SECRET_KEY if STRIPE_LIVE_MODE else ""
STRIPE_EMULATOR_PORT = env.int("STRIPE_EMULATOR_PORT", default=12111)
STRIPE_TIMEOUT_SECONDS = env.float("STRIPE_TIMEOUT_SECONDS", default=20.0)
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
DJSTRIPE_SUBSCRIBER_MODEL = "accounts.Team"
DJSTRIPE_USE_NATIVE_JSONFIELD = True
# Our own webhook view (billing.webhooks.views) verifies signatures with the endpoint's stored secret; dj-stripe's
# DJSTRIPE_WEBHOOK_SECRET / DJSTRIPE_WEBHOOK_EVENT_CALLBACK are deliberately not used (the callback is deprecated).
DJSTRIPE_WEBHOOK_VALIDATION = "verify_signature"

# --- Billing ----------------------------------------------------------------------------------------------------
# Minor units, per currency: refunds above this need a second staff approval.
REFUND_APPROVAL_THRESHOLD = env.int("REFUND_APPROVAL_THRESHOLD", default=50000)
TRIAL_PERIOD_DAYS = env.int("TRIAL_PERIOD_DAYS", default=14)
SIGNUP_CREDIT_GRANT = env.int("SIGNUP_CREDIT_GRANT", default=3)
# Signatures older than this are rejected (replay protection), as Stripe's own libraries do by default.
BILLING_WEBHOOK_TOLERANCE_SECONDS = env.int("BILLING_WEBHOOK_TOLERANCE_SECONDS", default=300)
# Processing attempts before an event is parked for replay; the wait between attempts doubles from the base.
BILLING_WEBHOOK_MAX_ATTEMPTS = env.int("BILLING_WEBHOOK_MAX_ATTEMPTS", default=5)
BILLING_WEBHOOK_RETRY_BASE_SECONDS = env.float("BILLING_WEBHOOK_RETRY_BASE_SECONDS", default=5.0)
# Per-object watermark (billing/services/webhooks.py): an event's re-retrieve is skipped when the mirrored object was
# written this long after the event was created. Negative turns the watermark off.
BILLING_WEBHOOK_WATERMARK_MARGIN_SECONDS = env.float("BILLING_WEBHOOK_WATERMARK_MARGIN_SECONDS", default=5.0)
# Remember dj-stripe's owner-account lookups for 60 s per process (billing/services/mirror.py): a quarter of the webhook
# task's time otherwise. Off only to measure dj-stripe as shipped (the ingest benchmark's stock side).
BILLING_DJSTRIPE_ACCOUNT_MEMO = env.bool("BILLING_DJSTRIPE_ACCOUNT_MEMO", default=True)
# The missed-event sweep re-reads this many days of GET /v1/events, every this many minutes, and applies any event
# of a subscribed type never delivered. Shorter finds a lost delivery sooner but reads Stripe's event list (paged,
# rate-limited) more often; Stripe itself retries failed deliveries for days, so this only covers what it dropped.
BILLING_EVENTS_SWEEP_DAYS = env.int("BILLING_EVENTS_SWEEP_DAYS", default=3)
BILLING_EVENTS_SWEEP_MINUTES = env.int("BILLING_EVENTS_SWEEP_MINUTES", default=3)
# The fast sweep of stored events (billing/services/webhooks.py: webhook_events_enqueue_due): how often it runs, how
# old a pending row must be before it is re-sent (its own message normally applies it within this), and how many
# rows one run sends per state.
BILLING_WEBHOOK_SWEEP_SECONDS = env.int("BILLING_WEBHOOK_SWEEP_SECONDS", default=10)
BILLING_WEBHOOK_PENDING_GRACE_SECONDS = env.int("BILLING_WEBHOOK_PENDING_GRACE_SECONDS", default=20)
BILLING_WEBHOOK_SWEEP_BATCH = env.int("BILLING_WEBHOOK_SWEEP_BATCH", default=500)
# Stored events are applied by drain tasks, one per shard (row id modulo), rung by a doorbell key in the cache: a
# storm costs a few messages, not one per event. More shards than worker processes keeps every process busy; 0
# sends one task per event instead. A drain gives way to a fresh task after BILLING_WEBHOOK_DRAIN_MAX_SECONDS.
BILLING_WEBHOOK_DRAIN_SHARDS = env.int("BILLING_WEBHOOK_DRAIN_SHARDS", default=4)
BILLING_WEBHOOK_DRAIN_BATCH = env.int("BILLING_WEBHOOK_DRAIN_BATCH", default=200)
BILLING_WEBHOOK_DRAIN_MAX_SECONDS = env.float("BILLING_WEBHOOK_DRAIN_MAX_SECONDS", default=60.0)
BILLING_WEBHOOK_DRAIN_DOORBELL_SECONDS = env.int("BILLING_WEBHOOK_DRAIN_DOORBELL_SECONDS", default=30)
# A drain applies up to this many events in one transaction when each needs only its own payload (bulk writes, a
# handful of statements per batch instead of a dozen per event); others, and a batch that fails, go one by one.
# 0 or 1: always one by one.
BILLING_WEBHOOK_APPLY_BATCH = env.int("BILLING_WEBHOOK_APPLY_BATCH", default=100)
# Tasks run eagerly (no broker): a failed event's retry runs inline at once (the test suite's default, which checks
# retry-then-park in one call), or waits for its retry time and the in-process scheduler's sweep (`make run`).
BILLING_EAGER_RETRY_INLINE = env.bool("BILLING_EAGER_RETRY_INLINE", default=RUNNING_TESTS)
# Staff who are told about disputes (and other things that need a person).
BILLING_STAFF_EMAILS = env.list("BILLING_STAFF_EMAILS", default=["finance@example.com"])
# The email outbox (billing/emails.py): every email is an `OutboundEmail` row written with the work that wants it,
# sent by a task after commit; the sweep (every BILLING_EMAIL_SWEEP_SECONDS) sends pending rows older than the grace
# (their message was lost: broker down, worker killed) and failed rows whose retry time has come. A failed send is
# retried after 30 s, 60 s, 120 s ... (capped at 1 h) and parked after BILLING_EMAIL_MAX_ATTEMPTS (about an hour of
# SMTP outage with the defaults); staff re-send parked rows from the admin. A send owns its row for the lease
# (longer than SMTP's EMAIL_TIMEOUT plus a receipt's Stripe reads) before the sweep may take it over.
BILLING_EMAIL_SWEEP_SECONDS = env.int("BILLING_EMAIL_SWEEP_SECONDS", default=10)
BILLING_EMAIL_PENDING_GRACE_SECONDS = env.int("BILLING_EMAIL_PENDING_GRACE_SECONDS", default=20)
BILLING_EMAIL_MAX_ATTEMPTS = env.int("BILLING_EMAIL_MAX_ATTEMPTS", default=8)
BILLING_EMAIL_RETRY_BASE_SECONDS = env.float("BILLING_EMAIL_RETRY_BASE_SECONDS", default=30.0)
BILLING_EMAIL_SEND_LEASE_SECONDS = env.int("BILLING_EMAIL_SEND_LEASE_SECONDS", default=120)
# Sent rows are deleted after this many days (daily, `billing-emails-prune`); failed and parked rows are kept.
BILLING_EMAIL_RETENTION_DAYS = env.int("BILLING_EMAIL_RETENTION_DAYS", default=30)
# A row's context is ids and a few values, never a rendered document: JSON larger than this is refused (a bug).
BILLING_EMAIL_CONTEXT_MAX_BYTES = env.int("BILLING_EMAIL_CONTEXT_MAX_BYTES", default=16384)
# Catalog currencies: prices carry BRL as `currency_options` on the USD price (one price per lookup key).
BILLING_DEFAULT_CURRENCY = env.str("BILLING_DEFAULT_CURRENCY", default="usd")

# Receipts: the seller printed on the project's own PDF receipts (billing/receipts.py). Numbers are sequential per
# seller: RECEIPT_NUMBER_PREFIX names the sequence, so a new seller (a new legal entity) starts its own with a new prefix.
RECEIPT_SELLER_NAME = env.str("RECEIPT_SELLER_NAME", default="Example Billing Ltd.")
RECEIPT_SELLER_ADDRESS = env.str("RECEIPT_SELLER_ADDRESS", default="1 Example Street, Springfield")
RECEIPT_SELLER_TAX_ID = env.str("RECEIPT_SELLER_TAX_ID", default="")
RECEIPT_NUMBER_PREFIX = env.str("RECEIPT_NUMBER_PREFIX", default="RCPT-")

# --- Usage and credits ------------------------------------------------------------------------------------------
# Redis for metering (rate limits, live period counters, the call-event buffer). Unset: in-process token bucket and
# synchronous event inserts (the embedded default).
USAGE_REDIS_URL = env.str("USAGE_REDIS_URL", default=REDIS_URL)
USAGE_REDIS_PREFIX = env.str("USAGE_REDIS_PREFIX", default="usage:")
# How long a process trusts its cached copy of a team's plan limits and spend cap (seconds).
USAGE_POLICY_CACHE_SECONDS = env.int("USAGE_POLICY_CACHE_SECONDS", default=30)
# Credits a free-plan call costs once the included amount is used up, per unit of the metric.
USAGE_CREDITS_PER_OVERAGE_UNIT = env.int("USAGE_CREDITS_PER_OVERAGE_UNIT", default=1)
# Credits the premium demo endpoint costs per call, on every plan.
USAGE_PREMIUM_CREDITS_PER_CALL = env.int("USAGE_PREMIUM_CREDITS_PER_CALL", default=1)
# Ingested events may be this old / this far ahead of the server clock (seconds).
USAGE_EVENT_MAX_AGE_SECONDS = env.int("USAGE_EVENT_MAX_AGE_SECONDS", default=3 * 24 * 3600)
USAGE_EVENT_MAX_FUTURE_SECONDS = env.int("USAGE_EVENT_MAX_FUTURE_SECONDS", default=300)
# Buffer flush: events per batch, batches per task run, and when an unfinished batch counts as abandoned.
USAGE_FLUSH_BATCH_SIZE = env.int("USAGE_FLUSH_BATCH_SIZE", default=1000)
USAGE_FLUSH_MAX_BATCHES = env.int("USAGE_FLUSH_MAX_BATCHES", default=50)
USAGE_BUFFER_STALE_SECONDS = env.int("USAGE_BUFFER_STALE_SECONDS", default=300)
# Overage reporting to Stripe meters: meter events per task run, and how far back the drift check stops
# (Stripe aggregates meter events asynchronously; recent minutes are not final yet).
USAGE_METER_REPORT_BATCH_SIZE = env.int("USAGE_METER_REPORT_BATCH_SIZE", default=100)
USAGE_METER_DRIFT_SETTLE_SECONDS = env.int("USAGE_METER_DRIFT_SETTLE_SECONDS", default=3600)
# How often pending meter reports (prepared, not yet accepted by Stripe) are sent: the sweep that recovers a report
# stranded by a killed worker or a Stripe outage. Cheap when nothing is pending (one indexed query).
USAGE_METER_REPORT_SWEEP_SECONDS = env.int("USAGE_METER_REPORT_SWEEP_SECONDS", default=15)
# Per-call usage debits (reason "usage") commit with synchronous_commit=off on PostgreSQL: the balance row is
# released without waiting for the WAL flush (x10 debits/s on one team). A database crash can lose the last
# fraction of a second of such debits (those calls go uncharged); it can never make a balance negative or split a
# debit from its ledger row. Purchases, grants, clawbacks and staff actions always commit synchronously.
USAGE_ASYNC_COMMIT_USAGE_DEBITS = env.bool("USAGE_ASYNC_COMMIT_USAGE_DEBITS", default=True)
# Debits of one team that arrive while its previous batch runs go to PostgreSQL together: one locked call per batch
# (docs/usage.md, "debit combiner"); at most this many per batch. Off: one locked call per debit.
USAGE_CREDIT_DEBIT_COMBINE = env.bool("USAGE_CREDIT_DEBIT_COMBINE", default=True)
USAGE_CREDIT_DEBIT_BATCH_MAX = env.int("USAGE_CREDIT_DEBIT_BATCH_MAX", default=200)
# Purchased credits expire after this many days; unset/0: never (the default).
USAGE_CREDIT_EXPIRY_DAYS = env.int("USAGE_CREDIT_EXPIRY_DAYS", default=0)
# Alert thresholds (percent of the included amount); each alert goes to the owner once per period.
USAGE_ALERT_THRESHOLDS = (80, 100)

# --- Back office ------------------------------------------------------------------------------------------------
# Support may grant this many credits in one action; more needs `billing.grant_credits_unlimited` (Finance).
BACKOFFICE_SUPPORT_CREDIT_LIMIT = env.int("BACKOFFICE_SUPPORT_CREDIT_LIMIT", default=100)
BACKOFFICE_MAX_TRIAL_EXTENSION_DAYS = env.int("BACKOFFICE_MAX_TRIAL_EXTENSION_DAYS", default=30)
# A refund request left processing (no Stripe refund id) this long lost its worker: the periodic task resumes it
# with the request's own idempotency key. Far above a Stripe call's time limit, so a live attempt is never doubled.
BACKOFFICE_REFUND_RESUME_AFTER_MINUTES = env.int("BACKOFFICE_REFUND_RESUME_AFTER_MINUTES", default=15)
# A running execution owns its request this long (the lease, `next_attempt_at`); after it the refund sweep resumes
# the request with the same idempotency key. Longer than one Stripe call takes (STRIPE_TIMEOUT_SECONDS) so a live
# attempt is normally not raced; a race is harmless anyway (same key, and the refund is looked up first).
BACKOFFICE_REFUND_LEASE_SECONDS = env.int("BACKOFFICE_REFUND_LEASE_SECONDS", default=30)
BACKOFFICE_REFUND_SWEEP_SECONDS = env.int("BACKOFFICE_REFUND_SWEEP_SECONDS", default=10)
# A refund request processing longer than this is reported as drift by reconciliation (a person looks at it).
BACKOFFICE_REFUND_STUCK_MINUTES = env.int("BACKOFFICE_REFUND_STUCK_MINUTES", default=60)
# Scheduled reconciliation: how often, and how far back it compares objects (the command compares everything, or
# --since).
BACKOFFICE_RECONCILE_EVERY_SECONDS = env.int("BACKOFFICE_RECONCILE_EVERY_SECONDS", default=6 * 3600)
BACKOFFICE_RECONCILE_LOOKBACK_DAYS = env.int("BACKOFFICE_RECONCILE_LOOKBACK_DAYS", default=35)

# --- Celery beat: every periodic task, in one table -------------------------------------------------------------
# Task names are public: stored beat rows and queued messages refer to them (the back office's tasks keep their
# `billing.tasks_backoffice.*` names after moving to billing/backoffice/tasks.py). billing_site/tests/test_settings.py
# checks that every name here is registered.
CELERY_BEAT_SCHEDULE = {
    "billing-events-sweep": {"task": "billing.tasks.events_sweep_task", "schedule": BILLING_EVENTS_SWEEP_MINUTES * 60,
                             "options": {"expires": BILLING_EVENTS_SWEEP_MINUTES * 60}},
    # The fast sweeps (issue 11): each copy expires before the next is sent, so a stopped worker does not find a
    # pile of them when it comes back.
    "billing-webhook-retry-due": {"task": "billing.tasks.webhook_events_retry_due_task",
                                  "schedule": BILLING_WEBHOOK_SWEEP_SECONDS,
                                  "options": {"expires": BILLING_WEBHOOK_SWEEP_SECONDS}},
    "usage-meter-reports-send": {"task": "usage.tasks.usage_meter_reports_send_task",
                                 "schedule": USAGE_METER_REPORT_SWEEP_SECONDS,
                                 "options": {"expires": USAGE_METER_REPORT_SWEEP_SECONDS}},
    "usage-buffer-flush": {"task": "usage.tasks.usage_buffer_flush_task", "schedule": 5.0},
    "usage-overage-report": {"task": "usage.tasks.usage_overage_report_task", "schedule": 600.0},
    "usage-alerts": {"task": "usage.tasks.usage_alerts_task", "schedule": 600.0},
    "usage-meter-drift-check": {
        "task": "usage.tasks.usage_meter_drift_check_task",
        "schedule": crontab(hour=3, minute=17),
    },
    "usage-period-rollover": {
        "task": "usage.tasks.usage_period_rollover_task",
        "schedule": crontab(day_of_month=1, hour=0, minute=20),
    },
    "usage-credits-expire": {
        "task": "usage.tasks.usage_credits_expire_task",
        "schedule": crontab(hour=2, minute=41),
    },
    "backoffice-reconcile": {
        "task": "billing.tasks_backoffice.reconcile_task",
        "schedule": BACKOFFICE_RECONCILE_EVERY_SECONDS,
    },
    # The email outbox: pending rows whose message was lost, failed rows due, sends whose lease ended.
    "billing-emails-send-due": {"task": "billing.tasks.outbound_emails_send_due_task",
                                "schedule": BILLING_EMAIL_SWEEP_SECONDS,
                                "options": {"expires": BILLING_EMAIL_SWEEP_SECONDS}},
    "billing-emails-prune": {"task": "billing.tasks.outbound_emails_prune_task",
                             "schedule": crontab(hour=3, minute=37)},
    # Approved requests whose enqueue was lost, retries due, attempts whose lease ended (refund_requests_stuck).
    "backoffice-resume-stuck-refunds": {
        "task": "billing.tasks_backoffice.refund_requests_resume_stuck_task",
        "schedule": BACKOFFICE_REFUND_SWEEP_SECONDS,
        "options": {"expires": BACKOFFICE_REFUND_SWEEP_SECONDS},
    },
}

# --- Email ------------------------------------------------------------------------------------------------------
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Billing <billing@example.com>")
# Seconds an SMTP connection may block a send (Django's default is none: a hung server would hold the task until its
# time limit). The outbox retries a send that timed out.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=20)
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- API (DRF, OpenAPI schema) ----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.APIKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # An API key reaches only what its scope allows (accounts/api/permissions.py).
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "accounts.api.permissions.APIKeyScopePermission",
    ],
    # JSON bounded in size and depth (billing_site/parsers.py); form parsers as DRF's defaults.
    "DEFAULT_PARSER_CLASSES": [
        "billing_site.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 25,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "billing_site.api_errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Billing API",
    "DESCRIPTION": "Plans, checkout, subscriptions, payments, usage and credits for API clients.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and ReDoc assets come from drf-spectacular-sidecar's static files, never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The API is documented as JSON (it also parses forms, for DRF's browsable tools; programs send JSON).
    "PARSER_WHITELIST": ["billing_site.parsers.BoundedJSONParser"],
    # PATCH bodies are documented as the view requires them (PATCH /subscription/ needs lookup_key), not all-optional.
    "COMPONENT_SPLIT_PATCH": False,
    # Every operation's 4xx answers in the one error shape (issue 10).
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "billing_site.openapi.error_responses_postprocess"],
}

# --- Security (production hardening) ----------------------------------------------------------------------------
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    # /healthz and /readyz are probed over plain HTTP by the orchestrator inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"
    SESSION_COOKIE_HTTPONLY = True

# --- Security: throttling, second factor, CSP, input bounds, production refusals (docs/security.md) ---------------
from datetime import timedelta  # noqa: E402

from csp.constants import NONE, SELF  # noqa: E402

# Read once here: Django's test runner turns DEBUG off at run time, and the checks below must mean "deployed".
IS_PRODUCTION = not DEBUG

# API request bodies: DRF reads the stream itself, so DATA_UPLOAD_MAX_MEMORY_SIZE does not bound them; these do
# (413 / 400 in the API's error shape: billing_site/parsers.py and billing_site.middleware).
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=1024 * 1024)
API_MAX_JSON_DEPTH = env.int("API_MAX_JSON_DEPTH", default=32)

# Login throttling (django-axes) on /accounts/login/ and /admin/login/: after AXES_FAILURE_LIMIT failures, the
# account and, separately, the IP address are locked for the cool-off time. Each lockout is logged (accounts.signals).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
# Two separate parameters (not a combination): one account is locked whatever IP it is tried from, and one IP is
# locked whatever accounts it tries.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# Emails are case-insensitive logins: ANA@example.com and ana@example.com are one account for the counter too.
AXES_USERNAME_CALLABLE = "accounts.security.axes_username"
# Both login forms (ours and the admin's) post the email as `username` (axes would look for USERNAME_FIELD, `email`).
AXES_USERNAME_FORM_FIELD = "username"
AXES_LOCKOUT_TEMPLATE = "registration/lockout.html"
AXES_RESET_ON_SUCCESS = True
# Axes keeps failed attempts in the database (AccessAttempt); the user agent and path are kept, never the password.
AXES_HTTP_RESPONSE_CODE = 429

# Second factor (django-otp): staff holding any of these permissions (superusers hold all) must log in with a TOTP
# device or a recovery code before any admin page opens (accounts.middleware.StaffSecondFactorMiddleware).
STAFF_MONEY_PERMISSIONS = (
    "billing.request_refund",
    "billing.approve_refund",
    "billing.grant_credits",
    "billing.grant_credits_unlimited",
    "billing.remove_credits",
    "billing.replay_webhooks",
)
# Always on. The test suite turns it off (conftest.py) except in the tests of the second factor, so that the
# back-office tests keep testing the back office.
STAFF_OTP_REQUIRED = True
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Billing back office")
STAFF_OTP_RECOVERY_CODES = 10

# Content-Security-Policy on every response: scripts and styles only from our own static files (no inline code).
# No form-action: checkout and portal forms post here and are redirected to Stripe's hosted pages, and browsers
# apply form-action to that redirect.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        # Swagger UI and the admin draw some icons as data: URIs.
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
    },
}

# --- Logging: structured (one JSON object per line) to stdout ---------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "billing_site.logging.RequestIdFilter"}},
    "formatters": {"json": {"()": "billing_site.logging.JsonFormatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "json",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "stripe": {"level": "WARNING"},
    },
}

# --- Operations -------------------------------------------------------------------------------------------------
# When set, /metrics answers only to `Authorization: Bearer <token>` (Prometheus `authorization` config).
METRICS_BEARER_TOKEN = env.str("METRICS_BEARER_TOKEN", default="")

# --- Production refusals (after every setting they read) ---------------------------------------------------------
if IS_PRODUCTION:
    # Password-reset and invitation links were printed to stdout logs by the console backend.
    if EMAIL_BACKEND in {
        "django.core.mail.backends.console.EmailBackend",
        "django.core.mail.backends.filebased.EmailBackend",
        "django.core.mail.backends.locmem.EmailBackend",
        "django.core.mail.backends.dummy.EmailBackend",
    }:
        raise ImproperlyConfigured(
            f"EMAIL_BACKEND is {EMAIL_BACKEND!r}, which does not deliver mail (and the console backend prints "
            f"password-reset and invitation links into the logs). Set EMAIL_URL (e.g. smtp+tls://user:pass@host:587) "
            f"or EMAIL_BACKEND to a real backend when DJANGO_DEBUG=false. See .env.example."
        )
    if not METRICS_BEARER_TOKEN:
        raise ImproperlyConfigured(
            "The environment variable METRICS_BEARER_TOKEN must be set when DJANGO_DEBUG=false: /metrics answers "
            "only to `Authorization: Bearer <token>` in production. See .env.example."
        )
