-- A group commit in one round trip. The committers used to send BEGIN, the expected-owner
-- check, the insert and COMMIT as separate statements; each was a round trip that waited for
-- this backend (and then the committer) to be scheduled again, and on a busy machine that
-- waiting was most of a group's time. Called as a single statement outside a transaction
-- block, the whole group is that statement's transaction. (Groups with key claims, credentials
-- or invitations still use an explicit transaction, one savepoint per unit.)
--
-- The caller numbers its units and passes every event (sorted by primary key, the one lock
-- order of all groups) with its unit, and every expected key owner with its unit. A unit is
-- refused whole when one of its expected owners no longer owns the key, or when one of its
-- events finds its stream moved on (its sequence is taken): its other events are removed again
-- before the commit. The result has one row per stored event of an accepted unit (refused_unit
-- null) and one row per refused unit (event columns null).
-- The units of a group whose expected key owners no longer hold. Units decided on keys they
-- did not read (from a cache) commit only if each key is still owned as they expect; the keys
-- are share-locked (in key order, the same for every group) until the commit, so no one moves
-- them in between. Both commit paths call this: `append_group` below, and the explicit
-- transaction of groups with index writes.
CREATE FUNCTION refused_by_owners(
    owner_units int[],
    owner_kinds text[],
    owner_keys text[],
    owner_ids uuid[]
) RETURNS int[]
LANGUAGE sql AS $$
    SELECT coalesce(array_agg(DISTINCT e.unit), '{}')
    FROM UNNEST(owner_units, owner_kinds, owner_keys, owner_ids) AS e(unit, kind, key, owner_id)
    LEFT JOIN (
        SELECT u.kind, u.key, u.owner_id
        FROM unique_keys u
        JOIN UNNEST(owner_kinds, owner_keys) AS k(kind, key) ON u.kind = k.kind AND u.key = k.key
        ORDER BY u.kind, u.key
        FOR SHARE OF u
    ) AS held ON held.kind = e.kind AND held.key = e.key
    WHERE held.owner_id IS DISTINCT FROM e.owner_id
$$;

CREATE FUNCTION append_group(
    units int[],
    aggregate_types text[],
    aggregate_ids text[],
    sequences bigint[],
    event_types text[],
    event_versions text[],
    payloads jsonb[],
    metadatas jsonb[],
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
