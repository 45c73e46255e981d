-- Event ids are random UUIDs made by the writer; nothing looks events up by them (JetStream
-- de-duplicates on them from the message header, and the committer removes a lost race's rows
-- by primary key). The unique index was a fourth index written on every append.
DROP INDEX events_event_id;
