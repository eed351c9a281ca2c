"""Structured logging: one JSON object per line on stdout, carrying the request id when there is one."""
import contextvars
import json
import logging
import re
from datetime import UTC, datetime

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Attributes every LogRecord has; anything else was passed through `extra=` and is worth keeping.
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


# Paths that carry a bearer secret: an invitation token, a password-reset token (Django swaps the latter for
# `set-password` on first use, but that first request is logged). Access logs and Django's own request logs see
# the path; the secret is replaced before any line is written.
_SECRET_PATHS = [
    (re.compile(r"(/accounts/invitations/)(?!accept/)[^/?#\s\"']+"), r"\1[redacted]"),
    (re.compile(r"(/accounts/reset/[^/?#\s\"']+/)(?!set-password)[^/?#\s\"']+"), r"\1[redacted]"),
]


def redact_url_secrets(text: str) -> str:
    for pattern, replacement in _SECRET_PATHS:
        text = pattern.sub(replacement, text)
    return text


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_url_secrets(record.getMessage()),
        }
        if getattr(record, "request_id", ""):
            payload["request_id"] = record.request_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = redact_url_secrets(value) if isinstance(value, str) else value
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)
