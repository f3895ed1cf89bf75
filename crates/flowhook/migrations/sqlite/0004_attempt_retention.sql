-- Attempt bodies are purged after a retention period (attempt_body_retention_days): the
-- sweeper finds old attempts by their start time.
CREATE INDEX attempts_started ON attempts (started_at);
