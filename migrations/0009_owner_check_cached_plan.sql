-- The expected-owner check of migration 0008, the same query, as PL/pgSQL instead of SQL.
-- A SQL-language function that cannot be inlined (this one reads a table and locks rows) is
-- parsed, analyzed and planned afresh on every call; PL/pgSQL keeps its statements' plans for
-- the session. The committers call it for almost every group, and a profile of them under load
-- showed a fifth of their time going to planning and setting up this one query.
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
    SELECT coalesce(array_agg(DISTINCT e.unit), '{}') INTO refused
    FROM UNNEST(owner_units, owner_kinds, owner_keys, owner_ids) AS e(unit, kind, key, owner_id)
    LEFT JOIN (
        SELECT u.kind, u.key, u.owner_id
        FROM unique_keys u
        JOIN UNNEST(owner_kinds, owner_keys) AS k(kind, key) ON u.kind = k.kind AND u.key = k.key
        ORDER BY u.kind, u.key
        FOR SHARE OF u
    ) AS held ON held.kind = e.kind AND held.key = e.key
    WHERE held.owner_id IS DISTINCT FROM e.owner_id;
    RETURN refused;
END
$$;
