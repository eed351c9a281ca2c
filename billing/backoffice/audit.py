"""
Audit trail services: `audit_record` (append one hash-chained row) and `staff_require` (check a permission in the
service; a refusal is itself audited and answered with 403).

Lock order in every audited transaction: the business rows first (charge, then refund request), the audit chain
lock last. `audit_record` is therefore always the last write of its transaction.
"""
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Team, User
from billing.models import AuditEntry
from billing.models.audit import GENESIS_HASH
from billing_site.errors import PermissionDeniedError

logger = logging.getLogger("billing.backoffice")

# Any constant works; it names the one advisory lock that serialises appends to the chain on PostgreSQL.
_AUDIT_CHAIN_LOCK_KEY = 6_060_606_001


@dataclass(frozen=True)
class StaffContext:
    """Who acts, and from which request: every back-office service takes one (`system()` for tasks and webhooks)."""

    user: User | None
    request_id: str = ""
    ip_address: str | None = None

    @classmethod
    def from_request(cls, request) -> "StaffContext":
        return cls(user=request.user, request_id=getattr(request, "request_id", "") or "",
                   ip_address=request.META.get("REMOTE_ADDR") or None)

    @classmethod
    def system(cls) -> "StaffContext":
        return cls(user=None)

    def has_perm(self, permission: str) -> bool:
        if self.user is None:
            return True  # the system (tasks, webhook handlers) acts on decisions staff already took
        return bool(self.user.is_active and self.user.is_staff and self.user.has_perm(permission))


def _canonical(entry: AuditEntry) -> str:
    return json.dumps(
        {
            "created": entry.created.isoformat(),
            "actor_id": entry.actor_id,
            "actor_email": entry.actor_email,
            "action": entry.action,
            "outcome": entry.outcome,
            "target_type": entry.target_type,
            "target_id": entry.target_id,
            "team_id": entry.team_id,
            "before": entry.before,
            "after": entry.after,
            "reason": entry.reason,
            "request_id": entry.request_id,
            "ip_address": entry.ip_address,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )


def audit_entry_hash(*, entry: AuditEntry) -> str:
    return hashlib.sha256((entry.previous_hash + _canonical(entry)).encode()).hexdigest()


def audit_record(
    *,
    staff: StaffContext,
    action: str,
    target_type: str,
    target_id: Any,
    team: Team | None = None,
    before: dict | None = None,
    after: dict | None = None,
    reason: str = "",
    outcome: str = AuditEntry.Outcome.DONE,
) -> AuditEntry:
    """Append one entry to the chain, inside the caller's transaction (so it commits or rolls back with the change)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Held until the surrounding transaction ends: appends are serialised, so the chain stays one line.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_AUDIT_CHAIN_LOCK_KEY])
        last = AuditEntry.objects.order_by("-id").values_list("entry_hash", flat=True).first()
        # Round-trip through JSON now so the hash is computed over exactly what the database will return.
        entry = AuditEntry(
            created=timezone.now(),
            actor=staff.user,
            actor_email=staff.user.email if staff.user else "",
            action=action,
            outcome=outcome,
            target_type=target_type,
            target_id=str(target_id),
            team=team,
            before=json.loads(json.dumps(before or {}, default=str)),
            after=json.loads(json.dumps(after or {}, default=str)),
            reason=reason or "",
            request_id=staff.request_id or "",
            ip_address=staff.ip_address,
            previous_hash=last or GENESIS_HASH,
        )
        # Validate (and normalise, e.g. IPv6) before hashing; uniqueness is the database's job.
        entry.clean_fields(exclude=["entry_hash"])
        entry.entry_hash = audit_entry_hash(entry=entry)
        entry.save(force_insert=True)
    return entry


def staff_require(*, staff: StaffContext, permission: str, attempted: str, target_type: str, target_id: Any,
                  team: Team | None = None) -> None:
    """
    Raise PermissionDeniedError (403) unless the staff member holds `permission`. The refusal is audited in its own
    transaction, so call this before opening the transaction of the change itself.
    """
    if staff.has_perm(permission):
        return
    audit_record(
        staff=staff, action=AuditEntry.Action.PERMISSION_DENIED, outcome=AuditEntry.Outcome.DENIED,
        target_type=target_type, target_id=target_id, team=team,
        after={"permission": permission, "attempted": attempted},
    )
    logger.warning("permission %s denied to user %s for %s on %s:%s", permission,
                   staff.user.pk if staff.user else None, attempted, target_type, target_id)
    raise PermissionDeniedError("permission_denied",
                                f"You do not have the permission to do this ({permission}). The attempt was recorded.")


def login_lockout_audit(*, user_id: int | None, ip_address: str | None, path: str) -> AuditEntry:
    """
    accounts' LOGIN_LOCKOUT_HOOKS entry: a lockout (too many failed logins, django-axes) in the audit trail, so staff
    reading it see attacks on accounts next to the money actions. The target is the account when the address has
    one, else the client IP; the attempted address itself is never stored (it may be a mistyped password).
    """
    user = User.objects.filter(pk=user_id).first() if user_id else None
    return audit_record(
        staff=StaffContext(user=None, ip_address=ip_address or None),
        action=AuditEntry.Action.LOGIN_LOCKED_OUT, outcome=AuditEntry.Outcome.DENIED,
        target_type="user" if user else "ip_address", target_id=user.pk if user else (ip_address or "unknown"),
        after={"path": path, "email": user.email if user else ""},
    )


def audit_chain_verify(*, batch_size: int = 5000) -> dict:
    """Recompute the chain from the first row. Returns {"ok", "checked", "broken_at" (id or None), "problem"}."""
    expected_previous = GENESIS_HASH
    checked = 0
    last_id = 0
    while True:
        batch = list(AuditEntry.objects.filter(id__gt=last_id).order_by("id")[:batch_size])
        if not batch:
            return {"ok": True, "checked": checked, "broken_at": None, "problem": ""}
        for entry in batch:
            if entry.previous_hash != expected_previous:
                return {"ok": False, "checked": checked, "broken_at": entry.pk,
                        "problem": "previous_hash does not match the row before (a row was removed or reordered)"}
            if audit_entry_hash(entry=entry) != entry.entry_hash:
                return {"ok": False, "checked": checked, "broken_at": entry.pk,
                        "problem": "the row's content does not match its hash (it was edited)"}
            expected_previous = entry.entry_hash
            checked += 1
            last_id = entry.pk
