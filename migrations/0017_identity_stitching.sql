-- Identity stitching (issue 23): every identity of an end user with who said it and when, the
-- person each end user belongs to after merges, people (one row per person, what the users
-- list reads) and sign-ins by the hour. Only projectors write these tables.

-- Each end user keeps its own counters; `person_id` is the person it belongs to (itself unless
-- merged), `merged_into` the end user it was merged into (the survivor of that merge).
ALTER TABLE rm_end_users
    ADD COLUMN person_id uuid,
    ADD COLUMN merged_into uuid,
    ADD COLUMN signed_in boolean NOT NULL DEFAULT false,
    ADD COLUMN name text,
    ADD COLUMN last_sign_in_at timestamptz;
UPDATE rm_end_users SET person_id = end_user_id;
ALTER TABLE rm_end_users ALTER COLUMN person_id SET NOT NULL;
CREATE INDEX rm_end_users_person ON rm_end_users (org_id, person_id);

-- One row per person: the sums of its end users' counters, identified when one of them signed in.
CREATE TABLE rm_people (
    org_id uuid NOT NULL,
    person_id uuid NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    sessions bigint NOT NULL DEFAULT 0,
    tool_calls bigint NOT NULL DEFAULT 0,
    identified boolean NOT NULL DEFAULT false,
    PRIMARY KEY (org_id, person_id)
);
CREATE INDEX rm_people_recent ON rm_people (org_id, last_seen DESC, person_id);
CREATE INDEX rm_people_identified ON rm_people (org_id, identified, last_seen DESC, person_id);
INSERT INTO rm_people (org_id, person_id, first_seen, last_seen, sessions, tool_calls)
    SELECT org_id, end_user_id, first_seen, last_seen, sessions, tool_calls FROM rm_end_users;

-- Every identity an end user was known by: `kind` tracking_id | provider_subject | email;
-- `identity_key` tells identities of one end user apart (an email said by two sources is two).
CREATE TABLE rm_end_user_identities (
    org_id uuid NOT NULL,
    end_user_id uuid NOT NULL,
    identity_key text NOT NULL,
    kind text NOT NULL,
    value text NOT NULL,
    provider_id uuid,
    server_id uuid,
    verified boolean NOT NULL DEFAULT false,
    source text NOT NULL,
    first_at timestamptz NOT NULL,
    last_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, end_user_id, identity_key)
);
INSERT INTO rm_end_user_identities (org_id, end_user_id, identity_key, kind, value, source,
    first_at, last_at)
    SELECT org_id, end_user_id, 'tracking_id:' || t, 'tracking_id', t, 'tracking_id', first_seen,
        first_seen FROM rm_end_users, unnest(tracking_ids) AS t
    UNION ALL
    SELECT org_id, end_user_id, 'email:get_support:' || e, 'email', e, 'get_support', first_seen,
        first_seen FROM rm_end_users, unnest(emails) AS e;

-- Sign-ins per org and hour: the dashboard's 24 h and 7 d counts read a few rows.
CREATE TABLE rm_sign_ins_hourly (
    org_id uuid NOT NULL,
    hour timestamptz NOT NULL,
    sign_ins bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, hour)
);
