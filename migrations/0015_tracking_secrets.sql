-- Signed tracking ids (issue 22, finding 8). A server's tracking secrets are needed in the
-- clear to verify signatures, so they are kept sealed (ChaCha20-Poly1305 under a key derived
-- from the platform secret, the server id as associated data) beside the event store, written
-- in the same transaction as the `TrackingSecretCreated` event, and deleted when revoked.
-- Events carry only a secret's id and a short prefix.
CREATE TABLE tracking_secrets (
    secret_id uuid PRIMARY KEY,
    server_id uuid NOT NULL,
    sealed bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tracking_secrets_by_server ON tracking_secrets (server_id);

ALTER TABLE rm_servers ADD COLUMN require_signed_tracking boolean NOT NULL DEFAULT false;
