-- Password hashes live beside the event store, never in events (events are published to NATS
-- and exported to analysts). Written in the same transaction as the signup's events.
CREATE TABLE user_credentials (
    user_id uuid PRIMARY KEY,
    password_hash text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Fencing: the leader that holds the advisory lock also stamps its id here, and every write of
-- a checkpoint checks it, so a leader that lost its lock without noticing cannot write.
ALTER TABLE relay_checkpoint ADD COLUMN owner uuid;
ALTER TABLE projection_checkpoints ADD COLUMN owner uuid;
