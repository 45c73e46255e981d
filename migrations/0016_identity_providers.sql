-- Identity providers of an org (issue 23). The client secret is needed in the clear at each
-- token exchange, so it is kept sealed (ChaCha20-Poly1305 under a key derived from the
-- platform secret, the provider and org ids as associated data) beside the event store,
-- written in the same transaction as the provider's events. Events never carry it.
CREATE TABLE identity_provider_secrets (
    provider_id uuid PRIMARY KEY,
    org_id uuid NOT NULL,
    sealed bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The read model of the providers (never the secret).
CREATE TABLE rm_identity_providers (
    provider_id uuid PRIMARY KEY,
    org_id uuid NOT NULL,
    name text NOT NULL,
    kind text NOT NULL,
    issuer text,
    authorization_endpoint text NOT NULL,
    token_endpoint text NOT NULL,
    userinfo_endpoint text,
    jwks_uri text,
    client_id text NOT NULL,
    scopes jsonb NOT NULL,
    send_resource boolean NOT NULL,
    audience text,
    drop_prompt boolean NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX rm_identity_providers_by_org ON rm_identity_providers (org_id, created_at, provider_id);

ALTER TABLE rm_servers ADD COLUMN identity_provider_id uuid;
