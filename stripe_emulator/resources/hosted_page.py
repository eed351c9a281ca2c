"""The plain HTML frame of the emulator's small hosted pages (3-D Secure challenge, receipts, vouchers)."""
from __future__ import annotations

import html


def simple_page(title: str, body: str) -> str:
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
            "<style>body{font-family:sans-serif;max-width:32rem;margin:3rem auto}button{margin:.5rem;padding:.6rem 1.2rem}</style>"
            "</head><body>" + body + "</body></html>")
