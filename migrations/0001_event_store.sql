-- The event store: postgres-es' `events` layout, extended with the columns our readers need.

-- Identity of this event store. Every message the relay publishes carries it, so projectors of
-- another deployment (or test run) sharing the NATS server ignore it.
CREATE TABLE event_store_identity (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    store_id uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO event_store_identity DEFAULT VALUES;

CREATE TABLE events (
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    sequence bigint NOT NULL CHECK (sequence > 0),
    event_type text NOT NULL,
    event_version text NOT NULL,
    payload jsonb NOT NULL,
    metadata jsonb NOT NULL,
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    event_id uuid NOT NULL DEFAULT gen_random_uuid(),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    org_id uuid,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

-- Readers page with the cursor (transaction_id, global_position): see ARCHITECTURE.md.
CREATE INDEX events_cursor ON events (transaction_id, global_position);
CREATE INDEX events_org_cursor ON events (org_id, transaction_id, global_position);
CREATE UNIQUE INDEX events_event_id ON events (event_id);

-- Wake the relay on commit. A statement trigger sends one notification per insert statement;
-- Postgres folds duplicates within a transaction.
CREATE FUNCTION notify_events_appended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mcplatform_events', '');
    RETURN NULL;
END $$;
CREATE TRIGGER events_appended AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_events_appended();

-- A transaction left open would hold every reader behind it (they never read past the oldest
-- running transaction): bound how long one may idle.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET idle_in_transaction_session_timeout = %L',
                   current_database(), '60s');
END $$;

-- Write-side uniqueness that spans streams (emails, org slugs, server slugs). Claimed and
-- released in the same transaction as the events that need them.
CREATE TABLE unique_keys (
    kind text NOT NULL,
    key text NOT NULL,
    owner_id uuid NOT NULL,
    PRIMARY KEY (kind, key)
);

-- Write-side index of invitations by email, so a signup can join every org that invited it.
CREATE TABLE pending_invitations (
    email text NOT NULL,
    org_id uuid NOT NULL,
    PRIMARY KEY (email, org_id)
);

-- Where the relay has published up to.
CREATE TABLE relay_checkpoint (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    transaction_id xid8 NOT NULL DEFAULT '0',
    global_position bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO relay_checkpoint DEFAULT VALUES;

-- Where each projection has applied up to, written in the same transaction as its read models.
CREATE TABLE projection_checkpoints (
    name text PRIMARY KEY,
    transaction_id xid8 NOT NULL DEFAULT '0',
    global_position bigint NOT NULL DEFAULT 0,
    stream_sequence bigint NOT NULL DEFAULT 0,
    last_error text,
    last_error_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
