-- Events' payload and metadata are stored as `json`, the text as the writer made it, instead of
-- `jsonb`. Nothing queries inside them: they are written once, by the group commit, and read
-- back whole by the relay, rebuilds and command handlers, which parse them in Rust. `jsonb`
-- parsed every payload into its binary form on the way in (lexing, building the tree, sorting
-- keys) and printed it back to text on every read; in a profile of 64 end users walking
-- walkthroughs this was a few percent of the whole machine, in the committers' and the relay's
-- backends. `json` only checks that the text is JSON on the way in and sends it back as it is.
-- (An event's text is now also exactly what the writer serialized, key order included.)
ALTER TABLE events
    ALTER COLUMN payload TYPE json USING payload::json,
    ALTER COLUMN metadata TYPE json USING metadata::json;

-- The group commit takes the payloads as `json` too (migration 0009's body, unchanged; a
-- function's parameter types cannot be replaced in place).
DROP FUNCTION append_group(int[], text[], text[], bigint[], text[], text[], jsonb[], jsonb[],
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
) RETURNS TABLE (event_id uuid, tx bigint, global_position bigint, refused_unit int)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    refused int[] := '{}';
    lost int[] := '{}';
    stored_ids uuid[];
    stored_txs bigint[];
    stored_positions bigint[];
    removed uuid[] := '{}';
    attempted bigint;
BEGIN
    IF cardinality(owner_units) > 0 THEN
        refused := refused_by_owners(owner_units, owner_kinds, owner_keys, owner_ids);
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
        SELECT s.event_id, s.tx, s.global_position, NULL::int
        FROM UNNEST(stored_ids, stored_txs, stored_positions) AS s(event_id, tx, global_position)
        WHERE s.event_id <> ALL (removed);
    RETURN QUERY
        SELECT NULL::uuid, NULL::bigint, NULL::bigint, r.unit
        FROM UNNEST(refused) AS r(unit);
END
$$;
