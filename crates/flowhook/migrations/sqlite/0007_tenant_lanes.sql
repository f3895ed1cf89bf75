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
--
-- SQLite cannot drop a table's UNIQUE constraint, so the table is rebuilt under the same name.
-- The migration runs in a transaction, where `foreign_keys` cannot be switched off; the
-- deliveries' references to events are deferred to the commit instead: dropping the old table
-- counts them as violations, and inserting each event back into the new table clears its own.
PRAGMA defer_foreign_keys = ON;
CREATE TABLE events_0006 AS SELECT * FROM events;
DROP TABLE events;
CREATE TABLE events (
    id              TEXT PRIMARY KEY, -- evt_…, Flowhook's
    corp_id         TEXT NOT NULL,
    app_type        TEXT NOT NULL,
    instance_id     TEXT NOT NULL,    -- Flowhook's instance, or the ingesting caller's id
    seq             BIGINT NOT NULL,
    kind            TEXT NOT NULL,    -- task.created | task.finished | task.cancelled | task.deleted | task.cc
    task_id         TEXT,
    params          TEXT NOT NULL,    -- JSON array of [name, value] in wire order
    created_at      BIGINT NOT NULL,
    source_event_id TEXT,             -- ingested: the caller's eventId, sent as X-Flowhook-Event-Id
    UNIQUE (corp_id, instance_id, seq)
);
INSERT INTO events (id, corp_id, app_type, instance_id, seq, kind, task_id, params, created_at, source_event_id)
SELECT e.id, e.corp_id, e.app_type, e.instance_id, e.seq, e.kind, e.task_id, e.params, e.created_at,
       CASE WHEN EXISTS (SELECT 1 FROM instances i WHERE i.id = e.instance_id AND i.corp_id = e.corp_id)
            THEN NULL ELSE e.id END
FROM events_0006 e;
DROP TABLE events_0006;
CREATE INDEX events_corp ON events (corp_id, created_at);
CREATE UNIQUE INDEX events_source_id ON events (corp_id, source_event_id) WHERE source_event_id IS NOT NULL;
