-- 2026-era calls are grouped into sessions per end user and client; the projector looks up a
-- group's newest session. Indexing it by start (which never changes) instead of last_seen
-- (which every call moves) lets the per-batch session updates be heap-only (HOT), without new
-- index entries. Sessions of one group never overlap, so the newest started is the latest seen.
DROP INDEX rm_sessions_group;
CREATE INDEX rm_sessions_group ON rm_sessions (group_key, started_at DESC) WHERE group_key IS NOT NULL;
