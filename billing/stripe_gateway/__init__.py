"""
The only package that imports the `stripe` SDK. Everything that talks to Stripe goes through a function here.
See _core.py for configuration, idempotency keys and error translation.
"""
from ._core import client, configure_module_sdk, stripe_operation, to_dict, write_options  # noqa: F401
