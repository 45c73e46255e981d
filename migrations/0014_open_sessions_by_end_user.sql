-- The platform limit on open protocol sessions per end user counts an end user's sessions that
-- have not ended at each `initialize`: one index range, whatever the org's size.
CREATE INDEX rm_sessions_open_by_end_user ON rm_sessions (org_id, end_user_id, last_seen)
    WHERE ended_at IS NULL AND era = 'protocol';
