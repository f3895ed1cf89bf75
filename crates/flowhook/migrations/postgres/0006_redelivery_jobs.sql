-- A bulk redelivery is a job too: its deliveries point at it (the latest redelivery of a
-- delivery tracks it; a backfill keeps its own job_id).
ALTER TABLE deliveries ADD COLUMN redelivery_job_id TEXT;
CREATE INDEX deliveries_redelivery_job ON deliveries (redelivery_job_id);
