-- Expected key owners, checked once per key, and told apart.
--
-- 1. Each key is share-locked once per group. The units of a group often expect the same key
--    (every tool call of a server now requires its slug); migration 0009's check joined the
--    keys as given to `unique_keys`, so a group of 25 calls to one server locked that row 25
--    times. The keys are now de-duplicated before the lock, and the usual case of a single
--    key is one index look-up (see `moved_owners`). (While both committers hold the row, a
--    share lock makes a multixact of their two transactions; once per group, not per unit.
--    An advisory shared lock, which makes none, measured no cheaper.)
--    Measured with pgbench (2 clients as the two committers, the scripts interleaved, 45 s,
--    200,000 keys, a loaded 2-core VM), mean latency of a group whose units all expect one
--    key, against the same group expecting nothing:
--      25 units: 0009's check +12.4% and +11.6%, this one's +3.4% and +4.2%;
--       1 unit:  0009's check +15% and +35%,     this one's +3.7% and +11%.
--
-- 2. The check says *which* expectations failed, not only which units: `moved_owners` returns
--    the (1-based) positions of the entries whose key is no longer owned as given, and
--    `append_group` returns them too (`moved_owner`, with the unit in `refused_unit`). A unit
--    that requires the owner of a key it is filed under (the server an MCP request named by
--    its slug) is then refused as "that owner moved", which no retry can cure, while one that
--    merely decided on a cached owner is refused as a conflict and decided again.
--
-- `refused_by_owners` keeps its signature and meaning (the units refused), for any caller
-- still using it.

-- Most groups expect one key only (every tool call of a server expects its slug; under light
-- load a group is one call): that case is one index look-up of the row, without the arrays'
-- joins. Both statements run on generic plans, kept for the session: left to choose,
-- Postgres plans the general one afresh for every call with a few entries (its estimate of a
-- custom plan beats the generic one's), which cost 100 µs for one entry against 26 µs on the
-- generic plan (the same index look-up per distinct key). The one-key case costs 10 µs.
CREATE FUNCTION moved_owners(
    owner_kinds text[],
    owner_keys text[],
    owner_ids uuid[]
) RETURNS int[]
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    moved int[];
BEGIN
    IF owner_kinds[1] = ALL (owner_kinds) AND owner_keys[1] = ALL (owner_keys)
       AND owner_ids[1] = ALL (owner_ids) THEN
        PERFORM FROM unique_keys u
        WHERE u.kind = owner_kinds[1] AND u.key = owner_keys[1] AND u.owner_id = owner_ids[1]
        FOR SHARE;
        IF FOUND THEN
            RETURN '{}';
        END IF;
        RETURN ARRAY(SELECT generate_series(1, cardinality(owner_kinds)));
    END IF;
    -- The distinct keys are locked in key order (the one lock order of all groups), each once.
    SELECT coalesce(array_agg(e.n ORDER BY e.n), '{}') INTO moved
    FROM UNNEST(owner_kinds, owner_keys, owner_ids) WITH ORDINALITY AS e(kind, key, owner_id, n)
    LEFT JOIN (
        SELECT u.kind, u.key, u.owner_id
        FROM unique_keys u
        WHERE (u.kind, u.key) IN (SELECT k.kind, k.key FROM UNNEST(owner_kinds, owner_keys) AS k(kind, key))
        ORDER BY u.kind, u.key
        FOR SHARE OF u
    ) AS held ON held.kind = e.kind AND held.key = e.key
    WHERE held.owner_id IS DISTINCT FROM e.owner_id;
    RETURN moved;
END
$$;

CREATE OR REPLACE FUNCTION refused_by_owners(
    owner_units int[],
    owner_kinds text[],
    owner_keys text[],
    owner_ids uuid[]
) RETURNS int[]
LANGUAGE plpgsql AS $$
DECLARE
    refused int[];
BEGIN
    SELECT coalesce(array_agg(DISTINCT owner_units[m]), '{}') INTO refused
    FROM UNNEST(moved_owners(owner_kinds, owner_keys, owner_ids)) AS m;
    RETURN refused;
END
$$;

-- Migration 0010's body, checking through `moved_owners` and returning the moved entries (a
-- function's result columns cannot be replaced in place).
DROP FUNCTION append_group(int[], text[], text[], bigint[], text[], text[], json[], json[],
                           uuid[], uuid[], int[], text[], text[], uuid[]);

CREATE FUNCTION append_group(
    units int[],
    aggregate_types text[],
    aggregate_ids text[],
    sequences bigint[],
    event_types text[],
    event_versions text[],
    payloads json[],
    metadatas json[],
    org_ids uuid[],
    event_ids uuid[],
    owner_units int[],
    owner_kinds text[],
    owner_keys text[],
    owner_ids uuid[]
) RETURNS TABLE (event_id uuid, tx bigint, global_position bigint, refused_unit int,
               moved_owner int)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    refused int[] := '{}';
    moved int[] := '{}';
    lost int[] := '{}';
    stored_ids uuid[];
    stored_txs bigint[];
    stored_positions bigint[];
    removed uuid[] := '{}';
    attempted bigint;
BEGIN
    IF cardinality(owner_units) > 0 THEN
        moved := moved_owners(owner_kinds, owner_keys, owner_ids);
        IF cardinality(moved) > 0 THEN
            SELECT array_agg(DISTINCT owner_units[m]) INTO refused FROM UNNEST(moved) AS m;
        END IF;
    END IF;

    -- Inserted plainly first: ON CONFLICT probes the primary key for every row before
    -- inserting it, and the insert then searches it again. A stream that moved on under a unit
    -- is rare (a lost race); then the block is undone and the insert runs again, skipping the
    -- taken sequences, and the unit is refused below.
    BEGIN
        WITH stored AS (
            INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                payload, metadata, org_id, event_id)
            SELECT i.aggregate_type, i.aggregate_id, i.sequence, i.event_type, i.event_version,
                   i.payload, i.metadata, i.org_id, i.event_id
            FROM UNNEST(units, aggregate_types, aggregate_ids, sequences, event_types, event_versions,
                        payloads, metadatas, org_ids, event_ids)
                 AS i(unit, aggregate_type, aggregate_id, sequence, event_type, event_version,
                      payload, metadata, org_id, event_id)
            WHERE i.unit <> ALL (refused)
            RETURNING events.event_id, events.transaction_id::text::bigint AS tx, events.global_position
        )
        SELECT coalesce(array_agg(s.event_id), '{}'), coalesce(array_agg(s.tx), '{}'),
               coalesce(array_agg(s.global_position), '{}')
        INTO stored_ids, stored_txs, stored_positions
        FROM stored s;
    EXCEPTION WHEN unique_violation THEN
        WITH stored AS (
            INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                payload, metadata, org_id, event_id)
            SELECT i.aggregate_type, i.aggregate_id, i.sequence, i.event_type, i.event_version,
                   i.payload, i.metadata, i.org_id, i.event_id
            FROM UNNEST(units, aggregate_types, aggregate_ids, sequences, event_types, event_versions,
                        payloads, metadatas, org_ids, event_ids)
                 AS i(unit, aggregate_type, aggregate_id, sequence, event_type, event_version,
                      payload, metadata, org_id, event_id)
            WHERE i.unit <> ALL (refused)
            ON CONFLICT (aggregate_type, aggregate_id, sequence) DO NOTHING
            RETURNING events.event_id, events.transaction_id::text::bigint AS tx, events.global_position
        )
        SELECT coalesce(array_agg(s.event_id), '{}'), coalesce(array_agg(s.tx), '{}'),
               coalesce(array_agg(s.global_position), '{}')
        INTO stored_ids, stored_txs, stored_positions
        FROM stored s;
    END;

    SELECT count(*) INTO attempted FROM UNNEST(units) AS u(unit) WHERE u.unit <> ALL (refused);
    IF cardinality(stored_ids) < attempted THEN
        -- Some stream moved on under a unit (rare: a lost race). That unit is refused whole, and
        -- the rows it did insert, this transaction's own, are removed by primary key.
        SELECT coalesce(array_agg(DISTINCT i.unit), '{}') INTO lost
        FROM UNNEST(units, event_ids) AS i(unit, event_id)
        WHERE i.unit <> ALL (refused) AND i.event_id <> ALL (stored_ids);

        WITH gone AS (
            DELETE FROM events e
            USING UNNEST(units, aggregate_types, aggregate_ids, sequences, event_ids)
                  AS d(unit, aggregate_type, aggregate_id, sequence, event_id)
            WHERE d.unit = ANY (lost) AND d.event_id = ANY (stored_ids)
              AND e.aggregate_type = d.aggregate_type AND e.aggregate_id = d.aggregate_id
              AND e.sequence = d.sequence AND e.event_id = d.event_id
            RETURNING e.event_id
        )
        SELECT coalesce(array_agg(g.event_id), '{}') INTO removed FROM gone g;
        refused := refused || lost;
    END IF;

    RETURN QUERY
        SELECT s.event_id, s.tx, s.global_position, NULL::int, NULL::int
        FROM UNNEST(stored_ids, stored_txs, stored_positions) AS s(event_id, tx, global_position)
        WHERE s.event_id <> ALL (removed);
    RETURN QUERY
        SELECT NULL::uuid, NULL::bigint, NULL::bigint, r.unit, NULL::int
        FROM UNNEST(refused) AS r(unit);
    RETURN QUERY
        SELECT NULL::uuid, NULL::bigint, NULL::bigint, owner_units[m], m
        FROM UNNEST(moved) AS m;
END
$$;
