"""
PostgreSQL only: `usage_credit_debit_batch`, the server side of the debit combiner (usage.services.credits): the
debits of one team that arrived while the previous batch was running are applied in ONE statement that locks the
team's balance row once, applies them in order with the same rule as `usage_credit_debit` (a debit passes only if
the balance covers it, idempotent on (team, reason, reference)), inserts their ledger rows with consecutive
`balance_after` values and writes the balance row once. The row is thus locked once per batch, not once per debit.
"""
from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION usage_credit_debit_batch(
    p_team bigint, p_amounts bigint[], p_reasons text[], p_references text[], p_created_by bigint[], p_notes text[],
    p_now timestamptz, p_async_commit boolean)
RETURNS TABLE (idx integer, outcome text, balance_after bigint, entry_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_balance bigint;
    v_start bigint;
    v_id bigint;
    i integer;
BEGIN
    IF p_async_commit THEN
        -- SET LOCAL: only this transaction commits without waiting for the WAL flush (see settings).
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    -- Lock order as everywhere else: the balance row first, then the ledger's unique index entries.
    SELECT b.balance INTO v_balance FROM usage_creditbalance AS b WHERE b.team_id = p_team FOR UPDATE;
    IF NOT FOUND THEN
        v_balance := NULL;  -- no balance row: nothing can be debited, replays still answer
    END IF;
    v_start := v_balance;
    FOR i IN 1 .. coalesce(array_length(p_amounts, 1), 0) LOOP
        v_id := NULL;
        IF v_balance IS NOT NULL AND v_balance >= p_amounts[i] THEN
            INSERT INTO usage_creditledgerentry
                (team_id, delta, balance_after, reason, reference, created_by_id, note, metadata, created)
                VALUES (p_team, -p_amounts[i], v_balance - p_amounts[i], p_reasons[i], p_references[i],
                        p_created_by[i], p_notes[i], '{}'::jsonb, p_now)
                ON CONFLICT (team_id, reason, reference) DO NOTHING
                RETURNING id INTO v_id;
            IF v_id IS NOT NULL THEN
                v_balance := v_balance - p_amounts[i];
                RETURN QUERY SELECT i, 'ok'::text, v_balance, v_id;
                CONTINUE;
            END IF;
        END IF;
        -- Refused or already stored: a replay (earlier, or earlier in this batch) answers with the original entry.
        SELECT e.id INTO v_id FROM usage_creditledgerentry AS e
            WHERE e.team_id = p_team AND e.reason = p_reasons[i] AND e.reference = p_references[i];
        IF v_id IS NOT NULL THEN
            RETURN QUERY SELECT i, 'duplicate'::text, NULL::bigint, v_id;
        ELSE
            RETURN QUERY SELECT i, 'insufficient'::text, coalesce(v_balance, 0), NULL::bigint;
        END IF;
    END LOOP;
    IF v_balance IS DISTINCT FROM v_start THEN
        UPDATE usage_creditbalance AS b SET balance = v_balance, updated = p_now WHERE b.team_id = p_team;
    END IF;
END;
$$;
"""

DROP = ("DROP FUNCTION IF EXISTS usage_credit_debit_batch(bigint, bigint[], text[], text[], bigint[], text[], "
        "timestamptz, boolean);")


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("usage", "0003_fewer_indexes_on_hot_tables")]
    operations = [migrations.RunPython(create, drop)]
