-- Read models of the MCP edge: end users, sessions (both protocol eras), tool calls and
-- tickets. Only projectors write these tables; rebuilds replace them whole.

ALTER TABLE rm_servers ADD COLUMN conformance_fixtures boolean NOT NULL DEFAULT false;

-- End users of an org, with their identifiers and activity.
CREATE TABLE rm_end_users (
    org_id uuid NOT NULL,
    end_user_id uuid NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    tracking_ids text[] NOT NULL DEFAULT '{}',
    emails text[] NOT NULL DEFAULT '{}',
    sessions bigint NOT NULL DEFAULT 0,
    tool_calls bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, end_user_id)
);
CREATE INDEX rm_end_users_recent ON rm_end_users (org_id, last_seen DESC, end_user_id);

-- Sessions: 2025-era protocol sessions (era 'protocol', id = Mcp-Session-Id) and 2026-era
-- calls grouped per end user and client with a 30-minute inactivity window (era 'grouped',
-- group_key names the grouping).
CREATE TABLE rm_sessions (
    org_id uuid NOT NULL,
    session_id text NOT NULL,
    server_id uuid NOT NULL,
    end_user_id uuid,
    tracking_id text,
    era text NOT NULL,
    protocol_version text,
    client_name text,
    client_version text,
    started_at timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    ended_at timestamptz,
    tool_calls bigint NOT NULL DEFAULT 0,
    errors bigint NOT NULL DEFAULT 0,
    group_key text,
    PRIMARY KEY (org_id, session_id)
);
CREATE INDEX rm_sessions_recent ON rm_sessions (org_id, started_at DESC, session_id);
CREATE INDEX rm_sessions_group ON rm_sessions (group_key, last_seen DESC) WHERE group_key IS NOT NULL;

-- One row per tool call.
CREATE TABLE rm_tool_calls (
    org_id uuid NOT NULL,
    call_id uuid NOT NULL,
    server_id uuid NOT NULL,
    session_id text,
    end_user_id uuid,
    tracking_id text,
    tool text NOT NULL,
    outcome text NOT NULL,
    error text,
    duration_ms bigint NOT NULL,
    client_name text,
    client_version text,
    arguments jsonb NOT NULL,
    called_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, call_id)
);
CREATE INDEX rm_tool_calls_recent ON rm_tool_calls (org_id, called_at DESC, call_id);
CREATE INDEX rm_tool_calls_session ON rm_tool_calls (org_id, session_id, called_at) WHERE session_id IS NOT NULL;

-- Support tickets and their activity timeline.
CREATE TABLE rm_tickets (
    org_id uuid NOT NULL,
    ticket_id uuid NOT NULL,
    server_id uuid NOT NULL,
    end_user_id uuid,
    title text NOT NULL,
    description text NOT NULL,
    email text,
    context text,
    status text NOT NULL,
    assignee_id uuid,
    comments bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, ticket_id)
);
CREATE INDEX rm_tickets_recent ON rm_tickets (org_id, created_at DESC, ticket_id);
CREATE INDEX rm_tickets_end_user ON rm_tickets (org_id, end_user_id) WHERE end_user_id IS NOT NULL;

CREATE TABLE rm_ticket_activity (
    org_id uuid NOT NULL,
    ticket_id uuid NOT NULL,
    event_id uuid NOT NULL,
    transaction_id xid8 NOT NULL,
    global_position bigint NOT NULL,
    occurred_at timestamptz NOT NULL,
    kind text NOT NULL, -- opened | status_changed | commented | assigned
    actor_kind text NOT NULL,
    actor_id uuid,
    detail jsonb NOT NULL,
    PRIMARY KEY (org_id, ticket_id, event_id)
);
CREATE INDEX rm_ticket_activity_order ON rm_ticket_activity (org_id, ticket_id, transaction_id, global_position);

-- Tool calls per org, server, tool and hour: dashboard windows (24 h, 7 d) read a few rows.
CREATE TABLE rm_usage_hourly (
    org_id uuid NOT NULL,
    server_id uuid NOT NULL,
    tool text NOT NULL,
    hour timestamptz NOT NULL,
    calls bigint NOT NULL DEFAULT 0,
    errors bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, hour, server_id, tool)
);
