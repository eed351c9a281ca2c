"""HTTP front: auth, parsing, parameter validation, idempotency, faults, request log, dispatch."""
from __future__ import annotations

import hashlib
import importlib
import json
import logging
import pkgutil
import re
import socket
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe

from . import context, params, registry
from .errors import StripeError
from .formcodec import parse_form
from .listing import expand
from .registry import HtmlResponse, Request
from .state import Store, random_token
from .webhooks import WebhookDispatcher

log = logging.getLogger("stripe_emulator")

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
DEFAULT_API_VERSION = stripe.api_version
_KEY_RE = re.compile(r"^(sk|rk)_test_[A-Za-z0-9_]+$")
_PK_RE = re.compile(r"^pk_test_[A-Za-z0-9_]+$")
# Endpoints Stripe.js calls with the publishable key (Bearer pk_test_… or `key=pk_test_…` in the form).
_PUBLISHABLE_PREFIXES = ("/v1/payment_pages/",)


def _publishable_key_allowed(path: str, query: str, raw_body: bytes, authorization: str | None) -> bool:
    if not path.startswith(_PUBLISHABLE_PREFIXES):
        return False
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and _PK_RE.match(key.strip()):
        return True
    from urllib.parse import parse_qs

    form = parse_qs(query) | parse_qs(raw_body.decode("utf-8", "replace"))
    return any(_PK_RE.match(k) for k in form.get("key", []))
_MAX_BODY = 2 * 1024 * 1024

_loaded = False


def load_resources() -> None:
    """Import every module of `stripe_emulator.resources` (each registers its routes)."""
    global _loaded
    if _loaded:
        return
    from . import control, resources  # noqa: F401  (control registers /_emulator routes)

    for mod in sorted(pkgutil.iter_modules(resources.__path__), key=lambda m: m.name):
        importlib.import_module(f"{resources.__name__}.{mod.name}")
    # Compile every endpoint's parameter spec now, not on the first request.
    for r in registry.ROUTES:
        if r.params:
            params.spec_for(r.params)
    _loaded = True


class Emulator:
    def __init__(
        self,
        *,
        public_url: str = "",
        webhook_retry_scale: float = 1.0,
        webhook_timeout: float = 5.0,
        state_file: str | None = None,
    ) -> None:
        load_resources()
        self.store = Store()
        self.public_url = public_url.rstrip("/")
        self.webhooks = WebhookDispatcher(self, retry_scale=webhook_retry_scale, timeout=webhook_timeout)
        self.state_file = state_file
        self.request_log: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()
        # hooks run after reset (EMU-B may register; e.g. to clear caches)
        self.reset_hooks: list[Any] = []
        if state_file:
            self.store.load(state_file)

    def reset(self) -> None:
        self.webhooks.reset()
        with self.store.lock:
            self.store.reset()
        with self._log_lock:
            self.request_log = []
            self.faults = []
        for hook in self.reset_hooks:
            hook(self)

    def save_state(self) -> None:
        if self.state_file:
            self.store.save(self.state_file)

    def using(self) -> Any:
        return context.using(self)

    # ------------------------------------------------------------ faults
    def take_fault(self, method: str, path: str) -> dict[str, Any] | None:
        with self._log_lock:
            for f in self.faults:
                if f["remaining"] == 0:
                    continue
                if f.get("method") and f["method"] != method:
                    continue
                if not path.startswith(f.get("path_prefix") or "/"):
                    continue
                if f["remaining"] > 0:
                    f["remaining"] -= 1
                f["hits"] += 1
                return f
        return None

    def log_request(self, entry: dict[str, Any]) -> None:
        with self._log_lock:
            self.request_log.append(entry)
            if len(self.request_log) > 50000:
                del self.request_log[:10000]


# ---------------------------------------------------------------- HTTP handler

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "stripe-emulator"
    sys_version = ""
    emulator: Emulator  # set on the per-server subclass

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_HEAD(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:  # Stripe has no PUT/PATCH: answer its JSON 404, not the stdlib's HTML 501
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    # ------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}"]
        lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        lines.append("Access-Control-Allow-Origin: *")
        for k, v in headers.items():
            lines.append(f"{k}: {v}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + (b"" if self.command == "HEAD" else body))

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise StripeError("Request body too large.", status=413, store_idempotent=False)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self, method: str) -> None:
        emu = self.emulator
        started = time.perf_counter()
        request_id = "req_" + random_token(14)
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        idem_key = self.headers.get("Idempotency-Key")
        api_version = self.headers.get("Stripe-Version")
        # Stripe answers with the version the request asked for, else the account's default.
        resp_headers = {"request-id": request_id, "stripe-version": api_version or DEFAULT_API_VERSION}
        status = 500
        try:
            raw_body = self._read_body()
        except (StripeError, ValueError) as exc:
            raw_body = b""
            err = exc if isinstance(exc, StripeError) else StripeError("Invalid Content-Length.", store_idempotent=False)
            self.close_connection = True
            self._send_error(err, request_id, resp_headers)
            return
        is_api = path.startswith("/v1/") or path == "/v1"
        fault = emu.take_fault(method, path) if not path.startswith("/_emulator/faults") else None
        if fault is not None:
            logged_status = 0 if fault.get("mode") == "drop" else int(fault.get("status") or 500)
            emu.log_request(self._log_entry(method, path, idem_key, logged_status, request_id, started))
            if fault.get("mode") == "drop":
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            status = int(fault.get("status") or 500)
            err = StripeError("An unknown error occurred (injected by the emulator).", status=status, type="api_error")
            resp_headers["Stripe-Should-Retry"] = "true" if status >= 500 or status == 409 else "false"
            self._send(status, json.dumps(err.body(request_id)).encode(), "application/json", resp_headers)
            return
        try:
            status = self._dispatch(method, path, url.query, raw_body, request_id, idem_key, api_version, resp_headers, is_api)
        except Exception:  # never let a bug kill the connection thread silently
            log.error("emulator error on %s %s\n%s", method, path, traceback.format_exc())
            status = 500
            err = StripeError("An unknown error occurred.", status=500, type="api_error")
            self._send(500, json.dumps(err.body(request_id)).encode(), "application/json", resp_headers)
        if is_api:
            emu.log_request(self._log_entry(method, path, idem_key, status, request_id, started))

    def _log_entry(self, method: str, path: str, idem_key: str | None, status: int, request_id: str, started: float) -> dict[str, Any]:
        return {
            "method": method,
            "path": path,
            "idempotency_key": idem_key,
            "status": status,
            "request_id": request_id,
            "at": time.time(),
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        }

    def _send_error(self, err: StripeError, request_id: str, headers: dict[str, str]) -> int:
        body = json.dumps(err.body(request_id), indent=2).encode()
        self._send(err.status, body, "application/json", headers)
        return err.status

    def _auth_error(self) -> StripeError | None:
        auth = self.headers.get("Authorization")
        if not auth:
            return StripeError(
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication "
                "for details, or we can help at https://support.stripe.com/.",
                status=401, type="invalid_request_error", store_idempotent=False,
            )
        scheme, _, key = auth.partition(" ")
        key = key.strip()
        if scheme.lower() == "basic":
            import base64

            try:
                key = base64.b64decode(key).decode().split(":")[0]
            except Exception:
                key = ""
        elif scheme.lower() != "bearer":
            key = ""
        if not _KEY_RE.match(key):
            shown = (key[:8] + "*" * 12 + key[-4:]) if len(key) > 12 else key
            return StripeError(
                f"Invalid API Key provided: {shown}", status=401, type="invalid_request_error",
                store_idempotent=False,
            )
        return None

    def _dispatch(
        self, method: str, path: str, query: str, raw_body: bytes, request_id: str,
        idem_key: str | None, api_version: str | None, resp_headers: dict[str, str], is_api: bool,
    ) -> int:
        emu = self.emulator
        store = emu.store
        if is_api:
            err = self._auth_error()
            if err is not None and _publishable_key_allowed(path, query, raw_body, self.headers.get("Authorization")):
                err = None
            if err is not None:
                resp_headers["WWW-Authenticate"] = 'Basic realm="Stripe"'
                return self._send_error(err, request_id, resp_headers)
        route, path_params, known = registry.match(method, path)
        if route is None:
            msg = f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/."
            if known:
                msg = f"Unrecognized request URL ({method}: {path}). This endpoint does not accept {method} requests."
            return self._send_error(StripeError(msg, status=404), request_id, resp_headers)
        try:
            try:
                body_text = raw_body.decode("utf-8")
            except UnicodeDecodeError:
                raise StripeError("Invalid request body: it must be form-encoded UTF-8 (application/x-www-form-urlencoded).", store_idempotent=False) from None
            ctype = (self.headers.get("Content-Type") or "").lower()
            if body_text and "json" in ctype and route.params is not None:
                raise StripeError("Invalid request: the body must be form-encoded (application/x-www-form-urlencoded), not JSON.", store_idempotent=False)
            raw = parse_form(query) if query else {}
            if body_text:
                raw.update(parse_form(body_text))
        except StripeError as exc:
            return self._send_error(exc, request_id, resp_headers)

        fingerprint = None
        use_idem = bool(idem_key) and method == "POST" and route.idempotent and route.auth
        with store.lock:
            if use_idem:
                fingerprint = _fingerprint(method, path, query, body_text)
                prior = store.idempotency.get(idem_key)  # type: ignore[arg-type]
                if prior is not None and prior["expires"] > store.clock.now():
                    if prior["fingerprint"] != fingerprint:
                        err = StripeError(
                            "Keys for idempotent requests can only be used with the same parameters they were first "
                            f"used with. Try using a key other than '{idem_key}' if you meant to execute a different request.",
                            status=400, type="idempotency_error", store_idempotent=False,
                        )
                        return self._send_error(err, request_id, resp_headers)
                    hdrs = dict(resp_headers)
                    hdrs["idempotent-replayed"] = "true"
                    hdrs["original-request"] = prior["request_id"]
                    hdrs["idempotency-key"] = idem_key  # type: ignore[assignment]
                    self._send(prior["status"], prior["body"].encode(), "application/json", hdrs)
                    return prior["status"]
            if idem_key and use_idem:
                resp_headers["idempotency-key"] = idem_key
            req = Request(
                method=method, path=path, path_params=path_params, params=raw, store=store, emulator=emu,
                request_id=request_id, idempotency_key=idem_key if use_idem else None, api_version=api_version,
                headers={k.lower(): v for k, v in self.headers.items()}, raw_query=raw,
            )
            with context.using(emu, req):
                status, body, ctype_out, extra = self._run(route, req, request_id)
            if use_idem and status != 0 and ctype_out == "application/json" and extra.pop("_store", True):
                store.idempotency[idem_key] = {  # type: ignore[index]
                    "fingerprint": fingerprint, "status": status, "body": body.decode(),
                    "request_id": request_id, "expires": store.clock.now() + IDEMPOTENCY_TTL_SECONDS,
                }
            extra.pop("_store", None)
        resp_headers.update(extra)
        self._send(status, body, ctype_out, resp_headers)
        return status

    def _run(self, route: registry.Route, req: Request, request_id: str) -> tuple[int, bytes, str, dict[str, Any]]:
        store = req.store
        try:
            if route.params is not None:
                req.params = params.validate(route.params, req.params)
            result = route.handler(req)
            if isinstance(result, HtmlResponse):
                body = result.body.encode() if isinstance(result.body, str) else result.body
                return result.status, body, result.content_type, dict(result.headers)
            if req.params.get("expand") and route.params is not None:
                result = expand(store, result, list(req.params["expand"]))
            return 200, json.dumps(result, indent=2).encode(), "application/json", {}
        except StripeError as exc:
            return exc.status, json.dumps(exc.body(request_id), indent=2).encode(), "application/json", {"_store": exc.store_idempotent}


def _fingerprint(method: str, path: str, query: str, body: str) -> str:
    """Identity of a request for idempotency. Card numbers and CVCs are reduced before hashing (a bare hash of
    a 16-digit number could be reversed), so neither ends up in the stored idempotency records."""
    pairs = []
    for key, value in parse_qsl(query, keep_blank_values=True) + parse_qsl(body, keep_blank_values=True):
        if key.endswith("[number]") or key == "card_number":
            value = "****" + value[-4:]
        elif key.endswith("[cvc]") or key == "cvc":
            value = "***"
        pairs.append((key, value))
    return hashlib.sha256(json.dumps([method, path, sorted(pairs)]).encode()).hexdigest()


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Close idle keep-alive connections too, so a stopped emulator really stops answering."""
        with self._conn_lock:
            conns = list(self._connections)
            self._connections.clear()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def make_server(emulator: Emulator, host: str = "127.0.0.1", port: int = 12111) -> EmulatorHTTPServer:
    handler = type("BoundHandler", (_Handler,), {"emulator": emulator})
    httpd = EmulatorHTTPServer((host, port), handler)
    if not emulator.public_url:
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        emulator.public_url = f"http://{shown_host}:{httpd.server_address[1]}"
    return httpd
