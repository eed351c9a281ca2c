# The billing app's own records live here; Stripe's objects are mirrored by dj-stripe's models.
from .customers import BillingProfile  # noqa: F401
from .webhooks import MirrorWatermark, WebhookEvent  # noqa: F401
# The back office's records: refund requests, the audit trail, reconciliation, and the Customer 360 proxy.
from .audit import AuditEntry  # noqa: E402,F401
from .customers_backoffice import CustomerAccount  # noqa: E402,F401
from .reconciliation import ReconciliationDrift, ReconciliationRun  # noqa: E402,F401
from .refunds import RefundRequest  # noqa: E402,F401
# Customer self-service (issue 13): the project's own numbered PDF receipts.
from .receipts import InvoicePaymentLink, Receipt, ReceiptCounter  # noqa: E402,F401
# Staff console (issue 14): Stripe credit notes (dj-stripe 2.11 has no model for them) and the dunning page's proxy.
from .credit_notes import CreditNote  # noqa: E402,F401
from .dunning import DunningSubscription  # noqa: E402,F401
# The email outbox (issue 11): every team and staff email is a row first, sent by a task, swept when it was not.
from .emails import OutboundEmail  # noqa: E402,F401
