"""
The only package that imports the `stripe` SDK. Everything that talks to Stripe goes through a function here.
See _core.py for configuration, idempotency keys and error translation. Modules: customers, products (catalog push:
products, prices, meters, portal configuration), checkout (Checkout + portal sessions), subscriptions (and invoices),
payments (payment intents, charges), events (events list + webhook endpoints), sync (re-retrieve by type, the rest
of an embedded list, webhook signature verification). USAGE owns meters.py (meter events); BO owns refunds.py.
Every function returns plain dicts made by `to_dict`: JSON-safe (Stripe's decimal strings stay strings).
"""
from ._core import client, configure_module_sdk, stripe_operation, to_dict, write_options  # noqa: F401
