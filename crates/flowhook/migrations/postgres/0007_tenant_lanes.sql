-- The outbox's keys belong to the organisation (DESIGN §6 "Tenancy"). An ingested instance id
-- is the caller's, in its organisation's namespace: two organisations may both relay an
-- `order-1001`, and neither may touch the other's lane or `seq`. So:
--   * an instance's `seq` is unique per (corp_id, instance_id), not per instance_id;
--   * an ingested event's own id (`eventId`, the caller's idempotency key, sent as
--     `X-Flowhook-Event-Id`) is kept in `source_event_id`, unique per organisation; the row's
--     `id` is Flowhook's, globally unique, as for every other event.
-- Existing rows keep what receivers saw: an event of an instance that is not one of its
-- organisation's Flowhook instances was ingested, and its `id` (what was sent as
-- X-Flowhook-Event-Id) becomes its `source_event_id`.
ALTER TABLE events ADD COLUMN source_event_id TEXT;
UPDATE events e SET source_event_id = e.id
WHERE NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = e.instance_id AND i.corp_id = e.corp_id);
ALTER TABLE events DROP CONSTRAINT events_instance_id_seq_key;
ALTER TABLE events ADD CONSTRAINT events_lane_seq UNIQUE (corp_id, instance_id, seq);
CREATE UNIQUE INDEX events_source_id ON events (corp_id, source_event_id) WHERE source_event_id IS NOT NULL;
