-- A tool call's duration to the microsecond, so a 0.4 ms call is not 0. Calls recorded before
-- carried whole milliseconds only: their rows keep `duration_us` null and are read as
-- `duration_ms` x 1000, what a rebuild writes for them. A nullable column without a default is
-- added without rewriting the table.
ALTER TABLE rm_tool_calls ADD COLUMN duration_us bigint;
