-- The console's and the API's lists with a large history (bench console: 100,000 deliveries,
-- 10,000 instances): an originator's "created" count reads the index alone, without a lookup of
-- each instance's status; the delivery log filtered by status walks its index newest first and
-- stops at the page's end instead of sorting every delivery of that status.
CREATE INDEX instances_originator_status ON instances (corp_id, originator_id, status);
CREATE INDEX deliveries_corp_status ON deliveries (corp_id, status, created_at);
