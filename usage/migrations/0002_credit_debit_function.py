"""
PostgreSQL only: the credit debit as one server-side function, so a debit is ONE statement (one round trip, its own
transaction in autocommit) and the team's balance row is locked only while the server runs it, never while a
client process waits for its turn on a CPU. Same rule as the Python path in usage.services._debit: a conditional
UPDATE (balance >= amount) then the ledger insert, idempotent on (team, reason, reference).
"""
from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION usage_credit_debit(
    p_team bigint, p_amount bigint, p_reason text, p_reference text, p_created_by bigint, p_note text,
    p_metadata jsonb, p_now timestamptz, p_async_commit boolean)
RETURNS TABLE (outcome text, balance_after bigint, entry_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_balance bigint;
    v_id bigint;
BEGIN
    IF p_async_commit THEN
        -- SET LOCAL: only this transaction commits without waiting for the WAL flush (see settings).
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    -- Lock order: the balance row first, then the ledger's unique index entry.
    UPDATE usage_creditbalance AS b SET balance = b.balance - p_amount, updated = p_now
        WHERE b.team_id = p_team AND b.balance >= p_amount
        RETURNING b.balance INTO v_balance;
    IF NOT FOUND THEN
        SELECT e.id INTO v_id FROM usage_creditledgerentry AS e
            WHERE e.team_id = p_team AND e.reason = p_reason AND e.reference = p_reference;
        IF FOUND THEN
            RETURN QUERY SELECT 'duplicate'::text, NULL::bigint, v_id;
        ELSE
            RETURN QUERY SELECT 'insufficient'::text,
                COALESCE((SELECT b.balance FROM usage_creditbalance AS b WHERE b.team_id = p_team), 0), NULL::bigint;
        END IF;
        RETURN;
    END IF;
    INSERT INTO usage_creditledgerentry
        (team_id, delta, balance_after, reason, reference, created_by_id, note, metadata, created)
        VALUES (p_team, -p_amount, v_balance, p_reason, p_reference, p_created_by, p_note, p_metadata, p_now)
        ON CONFLICT (team_id, reason, reference) DO NOTHING
        RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        -- A replay of a debit that committed before: give the amount back inside this same, uncommitted
        -- transaction (nobody ever sees the intermediate balance) and answer with the original entry.
        UPDATE usage_creditbalance AS b SET balance = b.balance + p_amount WHERE b.team_id = p_team;
        SELECT e.id INTO v_id FROM usage_creditledgerentry AS e
            WHERE e.team_id = p_team AND e.reason = p_reason AND e.reference = p_reference;
        RETURN QUERY SELECT 'duplicate'::text, NULL::bigint, v_id;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'ok'::text, v_balance, v_id;
END;
$$;
"""

DROP = "DROP FUNCTION IF EXISTS usage_credit_debit(bigint, bigint, text, text, bigint, text, jsonb, timestamptz, boolean);"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("usage", "0001_initial")]
    operations = [migrations.RunPython(create, drop)]
