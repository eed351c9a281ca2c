# syntax=docker/dockerfile:1
# One image for every process: web (gunicorn, the default command), `celery -A billing_site worker`,
# `celery -A billing_site beat`, and `python -m stripe_emulator` for offline environments. See docker-compose.yml.

# --- build: install the pinned requirements into a virtualenv that the runtime stage copies -----------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# Every dependency ships a manylinux wheel (psycopg[binary] included), so no compiler is needed.
RUN /opt/venv/bin/pip install --requirement /tmp/requirements.txt

# --- runtime: no build tools, no pip cache, a non-root user -------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_DEBUG=false \
    PORT=8000 \
    WEB_CONCURRENCY=2
RUN groupadd --system --gid 10001 app && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The code belongs to root and is read-only for the app user: a compromised process cannot rewrite it.
COPY . /app
# Static files are collected at build time with throwaway secrets (nothing secret is baked into the image: the
# manifest and compressed files do not depend on them).
RUN DJANGO_SECRET_KEY=collectstatic-only API_KEY_HMAC_SECRET=collectstatic-only STRIPE_SECRET_KEY=sk_test_collectstatic_only \
    python manage.py collectstatic --noinput -v 0
USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz\", timeout=2)"]
# gunicorn reads WEB_CONCURRENCY for its worker count; `exec` makes it PID 1 so it receives SIGTERM.
CMD ["sh", "-c", "exec gunicorn billing_site.wsgi:application --bind 0.0.0.0:${PORT} --threads 4 --access-logfile - --logger-class billing_site.gunicorn_logging.RedactingLogger --graceful-timeout 20"]
