"""
Gunicorn's access log without bearer secrets in URLs (invitation and password-reset tokens). Used with
`gunicorn --logger-class billing_site.gunicorn_logging.RedactingLogger` (scripts/run.sh, Dockerfile).
"""
from gunicorn.glogging import Logger

from .logging import redact_url_secrets

# Access-log atoms that can hold the request path: the request line, the path, the query, the referer.
_URL_ATOMS = ("r", "U", "q", "f", "{raw_uri}e")


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in _URL_ATOMS:
            if isinstance(atoms.get(key), str):
                atoms[key] = redact_url_secrets(atoms[key])
        return atoms
