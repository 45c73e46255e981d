-- The tokens an end user's identity provider issued to the platform at sign-in (issue 23):
-- sealed (ChaCha20-Poly1305 under the "identity provider tokens at rest" key, the org,
-- provider and end user ids as associated data), one row per end user and provider, replaced
-- at each sign-in and refresh. They never leave the platform.
CREATE TABLE provider_tokens (
    org_id uuid NOT NULL,
    provider_id uuid NOT NULL,
    end_user_id uuid NOT NULL,
    sealed bytea NOT NULL,
    -- When the provider's access token expires, if it said.
    access_expires_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, provider_id, end_user_id)
);
