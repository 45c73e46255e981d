-- Read models of the organizations, servers, dashboard and audit projections. Only projectors
-- write these tables; rebuilds replace them whole (shadow table + rename).

CREATE TABLE rm_platform_users (
    user_id uuid PRIMARY KEY,
    email text NOT NULL,
    name text NOT NULL,
    signed_up_at timestamptz NOT NULL
);

CREATE TABLE rm_orgs (
    org_id uuid PRIMARY KEY,
    name text NOT NULL,
    slug text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX rm_orgs_slug ON rm_orgs (slug);

-- Members and pending invitations; an invitation has no user_id yet.
CREATE TABLE rm_org_members (
    org_id uuid NOT NULL,
    email text NOT NULL,
    user_id uuid,
    role text NOT NULL,
    status text NOT NULL, -- 'active' | 'invited'
    joined_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, email)
);
CREATE INDEX rm_org_members_user ON rm_org_members (user_id, org_id);

CREATE TABLE rm_servers (
    server_id uuid PRIMARY KEY,
    org_id uuid NOT NULL,
    name text NOT NULL,
    slug text NOT NULL,
    auth_mode text NOT NULL,
    support_tool boolean NOT NULL,
    walkthrough_tools boolean NOT NULL,
    status text NOT NULL, -- 'active' | 'archived'
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX rm_servers_org ON rm_servers (org_id, created_at, server_id);
CREATE INDEX rm_servers_slug ON rm_servers (slug);

CREATE TABLE rm_dashboard (
    org_id uuid PRIMARY KEY,
    servers_active bigint NOT NULL DEFAULT 0,
    servers_archived bigint NOT NULL DEFAULT 0,
    members bigint NOT NULL DEFAULT 0,
    invitations_pending bigint NOT NULL DEFAULT 0,
    events_total bigint NOT NULL DEFAULT 0,
    last_event_at timestamptz
);

CREATE TABLE rm_audit_log (
    org_id uuid NOT NULL,
    transaction_id xid8 NOT NULL,
    global_position bigint NOT NULL,
    event_id uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    actor_kind text NOT NULL,
    actor_id uuid,
    action text NOT NULL,
    target_type text NOT NULL,
    target_id text NOT NULL,
    summary text NOT NULL,
    request_id text,
    client_ip text,
    PRIMARY KEY (org_id, transaction_id, global_position)
);
