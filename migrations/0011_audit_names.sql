-- The audit log names what an entry is about (a server, a walkthrough, a ticket's reference, a
-- member's email) as it was named when it happened, beside the ids it always had: a later
-- rename changes new entries, never older ones.
ALTER TABLE rm_audit_log
    ADD COLUMN target_name text,
    -- The other thing an entry names, if any: the server a walkthrough was put on or a ticket
    -- opened on, the member a ticket was assigned to or who joined.
    ADD COLUMN related_type text,
    ADD COLUMN related_id text,
    ADD COLUMN related_name text;

-- The current name of everything the audit log may mention, fed by the events it reads. Owned
-- by the audit projection (rebuilt with it), read only by it, never by the API.
CREATE TABLE rm_audit_names (
    kind text NOT NULL,
    id uuid NOT NULL,
    name text NOT NULL,
    PRIMARY KEY (kind, id)
);

-- Entries written before this migration name nothing, and the lookup table is empty. Send the
-- audit projection back to the start: on its next start its worker replays the event store
-- (catch-up from Postgres), filling the names in order and rewriting each existing entry in
-- place, so the log stays whole meanwhile. A new database has no checkpoint yet: no-op.
UPDATE projection_checkpoints
SET transaction_id = '0', global_position = 0, updated_at = now()
WHERE name = 'audit_log';
