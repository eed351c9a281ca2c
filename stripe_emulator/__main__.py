"""python -m stripe_emulator --port 12111 [--host 127.0.0.1] [--state FILE] [--webhook-retry-scale 0.01] [--public-url URL]"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from .server import Emulator, make_server


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stripe_emulator", description="Offline, stateful Stripe API emulator")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=12111)
    ap.add_argument("--state", default=None, help="JSON file: loaded at start, saved periodically and on shutdown")
    ap.add_argument("--save-interval", type=float, default=10.0, help="seconds between periodic state saves")
    ap.add_argument("--webhook-retry-scale", type=float, default=1.0,
                    help="multiplies Stripe's retry schedule (1h, 2h, 4h, ...); e.g. 0.001")
    ap.add_argument("--webhook-timeout", type=float, default=5.0, help="seconds before a webhook attempt times out")
    ap.add_argument("--public-url", default="", help="base URL used in hosted page links (default http://host:port)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    emulator = Emulator(public_url=args.public_url, webhook_retry_scale=args.webhook_retry_scale,
                        webhook_timeout=args.webhook_timeout, state_file=args.state)
    httpd = make_server(emulator, args.host, args.port)
    stop = threading.Event()

    def saver() -> None:
        while not stop.wait(args.save_interval):
            try:
                emulator.save_state()
            except OSError as exc:
                logging.getLogger("stripe_emulator").error("could not save state: %s", exc)

    if args.state:
        threading.Thread(target=saver, daemon=True, name="state-saver").start()

    def on_signal(signum: int, frame: object) -> None:
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logging.getLogger("stripe_emulator").info("Stripe emulator listening on %s", emulator.public_url)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        stop.set()
        emulator.webhooks.stop()
        emulator.save_state()
        httpd.server_close()
        httpd.close_connections()
    return 0


if __name__ == "__main__":
    sys.exit(main())
