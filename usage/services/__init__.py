"""
Writes for usage and credits, one module per concern:

- `credits`: the credit ledger (grant, remove, signup grant, expiry);
- `event_store`: storing usage events once each and moving the daily totals;
- `ingest`: usage reported through the API (validation, credits or spend cap past the included amount);
- `policy`: a team's limits and spend cap (and their per-process cache);
- `alerts`: quota and credit alerts, emailed through `billing.emails`;
- `meter_reports`: metered overage to Stripe meters, the drift check, the monthly rollover;
- `errors`: the usage app's domain errors.

Import graph: `usage.metering` and `usage.tasks` import these modules; these import neither (the credits-exhausted
alert task reaches `credits` through CREDITS_EXHAUSTED_HOOKS, wired in `UsageConfig.ready()`). Within the package:
errors, event_store, policy <- credits <- ingest; alerts and meter_reports stand alone. The names below are the
package's public interface (`usage.services.credits_grant` etc.).
"""
from .alerts import usage_alert_credits_exhausted, usage_alert_send, usage_alerts_check
from .credits import credits_expire, credits_grant, credits_remove, credits_signup_grant
from .errors import InsufficientCreditsError, SpendCapReachedError, UsageEventInvalidError
from .event_store import EventRow, usage_events_store, usage_events_store_with_ids
from .ingest import IngestResult, usage_events_ingest
from .meter_reports import (SendResult, meter_drift_check, meter_drift_check_all, meter_report_prepare,
                            meter_reports_prepare_all, meter_reports_send, usage_period_rollover)
from .policy import (MeteringPolicy, policy_cache_clear, team_metering_policy, team_metering_policy_load,
                     team_spend_cap_set)

__all__ = [
    "EventRow", "IngestResult", "InsufficientCreditsError", "MeteringPolicy", "SendResult", "SpendCapReachedError",
    "UsageEventInvalidError", "credits_expire", "credits_grant", "credits_remove", "credits_signup_grant",
    "meter_drift_check", "meter_drift_check_all", "meter_report_prepare", "meter_reports_prepare_all",
    "meter_reports_send", "policy_cache_clear", "team_metering_policy", "team_metering_policy_load",
    "team_spend_cap_set", "usage_alert_credits_exhausted", "usage_alert_send", "usage_alerts_check",
    "usage_events_ingest", "usage_events_store", "usage_events_store_with_ids", "usage_period_rollover",
]
