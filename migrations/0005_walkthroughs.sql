-- Walkthroughs: authored drafts, immutable published versions, server assignments, end users'
-- progress, and the rollups behind funnel and sankey analytics. All are read models, rebuilt
-- from the `walkthrough` and `walkthrough_progress` streams.

-- A walkthrough as its authors see it; `steps` is the draft, in order.
CREATE TABLE rm_walkthroughs (
    org_id uuid NOT NULL,
    walkthrough_id uuid NOT NULL,
    title text NOT NULL,
    description text,
    status text NOT NULL,
    steps jsonb NOT NULL DEFAULT '[]',
    published_version integer,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, walkthrough_id)
);
CREATE INDEX rm_walkthroughs_recent ON rm_walkthroughs (org_id, created_at DESC, walkthrough_id);

-- Every published version, as published: what end users on that version see.
CREATE TABLE rm_walkthrough_versions (
    org_id uuid NOT NULL,
    walkthrough_id uuid NOT NULL,
    version integer NOT NULL,
    title text NOT NULL,
    description text,
    steps jsonb NOT NULL,
    published_at timestamptz NOT NULL,
    published_by uuid,
    PRIMARY KEY (org_id, walkthrough_id, version)
);

-- Which walkthroughs a server offers, in which order.
CREATE TABLE rm_server_walkthroughs (
    org_id uuid NOT NULL,
    server_id uuid NOT NULL,
    walkthrough_id uuid NOT NULL,
    display_order integer NOT NULL,
    enabled boolean NOT NULL,
    assigned_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, server_id, walkthrough_id)
);
CREATE INDEX rm_server_walkthroughs_walkthrough ON rm_server_walkthroughs (org_id, walkthrough_id);

-- Each end user's current run of each walkthrough.
CREATE TABLE rm_walkthrough_progress (
    org_id uuid NOT NULL,
    walkthrough_id uuid NOT NULL,
    end_user_id uuid NOT NULL,
    server_id uuid NOT NULL,
    version integer NOT NULL,
    status text NOT NULL,
    current_step_id uuid,
    steps_completed integer NOT NULL,
    step_count integer NOT NULL,
    runs integer NOT NULL,
    started_at timestamptz NOT NULL,
    completed_at timestamptz,
    last_activity_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, walkthrough_id, end_user_id)
);
CREATE INDEX rm_walkthrough_progress_end_user ON rm_walkthrough_progress (org_id, end_user_id);
CREATE INDEX rm_walkthrough_progress_status ON rm_walkthrough_progress (org_id, status);

-- Rollups by day (UTC), server and version: analytics read these, never raw events.
CREATE TABLE rm_walkthrough_daily (
    org_id uuid NOT NULL,
    walkthrough_id uuid NOT NULL,
    day date NOT NULL,
    server_id uuid NOT NULL,
    version integer NOT NULL,
    starts bigint NOT NULL,
    restarts bigint NOT NULL,
    completions bigint NOT NULL,
    PRIMARY KEY (org_id, walkthrough_id, day, server_id, version)
);

-- Per step: runs that reached it (were shown it), completed it, or restarted while on it.
CREATE TABLE rm_walkthrough_step_daily (
    org_id uuid NOT NULL,
    walkthrough_id uuid NOT NULL,
    day date NOT NULL,
    server_id uuid NOT NULL,
    version integer NOT NULL,
    step_id uuid NOT NULL,
    step_index integer NOT NULL,
    reached bigint NOT NULL,
    completed bigint NOT NULL,
    restarted bigint NOT NULL,
    PRIMARY KEY (org_id, walkthrough_id, day, server_id, version, step_id)
);

-- Time on step as a log-scale histogram (bucket b holds times in [1.1^b - 1, 1.1^(b+1) - 1) ms).
CREATE TABLE rm_walkthrough_step_times (
    org_id uuid NOT NULL,
    walkthrough_id uuid NOT NULL,
    day date NOT NULL,
    server_id uuid NOT NULL,
    version integer NOT NULL,
    step_id uuid NOT NULL,
    bucket smallint NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (org_id, walkthrough_id, day, server_id, version, step_id, bucket)
);

-- Sankey links: `start` or a step id, to a step id, `completed` or `restarted`.
CREATE TABLE rm_walkthrough_transitions (
    org_id uuid NOT NULL,
    walkthrough_id uuid NOT NULL,
    day date NOT NULL,
    server_id uuid NOT NULL,
    version integer NOT NULL,
    from_node text NOT NULL,
    to_node text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (org_id, walkthrough_id, day, server_id, version, from_node, to_node)
);
