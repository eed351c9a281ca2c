"""Benchmark settings: the project's settings with a catalog whose free plan does not rate-limit or run out, so
the benchmarks measure metering's cost rather than its refusals (every check still runs on every call)."""
from billing_site.settings import *  # noqa: F401,F403
from billing_site.settings import BASE_DIR

BILLING_CATALOG_PATH = str(BASE_DIR / "bench" / "usage_support" / "catalog.toml")
USAGE_REDIS_PREFIX = "usagebench:"
