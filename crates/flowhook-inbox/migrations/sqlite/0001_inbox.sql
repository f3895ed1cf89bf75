-- The inbox: every accepted callback (receipts), and the unified task center built from them.
-- Times are epoch milliseconds. Rows are keyed by (source, app_type, …): two sources may reuse
-- an id without colliding. See migrations/README.md.

-- One row per distinct event accepted: the idempotency record, and the arrival log.
CREATE TABLE receipts (
    source       TEXT NOT NULL,
    dedup_key    TEXT NOT NULL,   -- evt:<X-Flowhook-Event-Id>, else <kind>:<taskId|ccId|formInstId>
    kind         TEXT NOT NULL,   -- created | finished | cancelled | deleted | cc
    app_type     TEXT NOT NULL,
    form_inst_id TEXT NOT NULL,
    item_id      TEXT,            -- taskId or ccId
    event_id     TEXT,            -- X-Flowhook-Event-Id, when sent
    seq          BIGINT,          -- X-Flowhook-Seq, when sent
    backfill     BOOLEAN NOT NULL,
    outcome      TEXT NOT NULL,   -- applied | instance_deleted
    received_at  BIGINT NOT NULL,
    arrival      BIGINT NOT NULL, -- strictly increasing in the order events were stored
    PRIMARY KEY (source, dedup_key)
);
CREATE INDEX receipts_instance ON receipts (source, app_type, form_inst_id, arrival);

-- Instances seen (from created and cc records): the "created by me" list.
CREATE TABLE instances (
    source              TEXT NOT NULL,
    app_type            TEXT NOT NULL,
    form_inst_id        TEXT NOT NULL,
    corp_id             TEXT,
    process_instance_id TEXT,
    process_code        TEXT,
    title               TEXT,
    originator_id       TEXT,
    originator_name     TEXT,
    url                 TEXT,
    created_at          BIGINT NOT NULL,
    item_key            TEXT NOT NULL, -- unique sort tie-breaker: source/app/id
    PRIMARY KEY (source, app_type, form_inst_id)
);
CREATE INDEX instances_originator ON instances (originator_id, created_at, item_key);

-- Tasks: created fills who and what; finished/cancelled fills the end, in either order.
CREATE TABLE tasks (
    source              TEXT NOT NULL,
    app_type            TEXT NOT NULL,
    task_id             TEXT NOT NULL,
    form_inst_id        TEXT NOT NULL,
    corp_id             TEXT,
    process_instance_id TEXT,
    process_code        TEXT,
    title               TEXT,
    originator_id       TEXT,
    originator_name     TEXT,
    user_id             TEXT,            -- NULL until task.created arrives
    user_name           TEXT,
    node_name           TEXT,
    url                 TEXT,
    status              TEXT NOT NULL,   -- open | finished | cancelled
    created_at          BIGINT NOT NULL,
    ended_at            BIGINT,
    ended_by            TEXT,
    item_key            TEXT NOT NULL,
    PRIMARY KEY (source, app_type, task_id)
);
CREATE INDEX tasks_user ON tasks (user_id, status, created_at, item_key);
CREATE INDEX tasks_instance ON tasks (source, app_type, form_inst_id);

CREATE TABLE ccs (
    source              TEXT NOT NULL,
    app_type            TEXT NOT NULL,
    cc_id               TEXT NOT NULL,
    form_inst_id        TEXT NOT NULL,
    corp_id             TEXT,
    process_instance_id TEXT,
    process_code        TEXT,
    title               TEXT,
    originator_id       TEXT,
    originator_name     TEXT,
    user_id             TEXT NOT NULL,
    user_name           TEXT,
    url                 TEXT,
    created_at          BIGINT NOT NULL,
    item_key            TEXT NOT NULL,
    PRIMARY KEY (source, app_type, cc_id)
);
CREATE INDEX ccs_user ON ccs (user_id, created_at, item_key);
CREATE INDEX ccs_instance ON ccs (source, app_type, form_inst_id);

-- Tombstones: a deleted instance stays deleted, whatever arrives late.
CREATE TABLE deleted_instances (
    source       TEXT NOT NULL,
    app_type     TEXT NOT NULL,
    form_inst_id TEXT NOT NULL,
    deleted_at   BIGINT NOT NULL,
    PRIMARY KEY (source, app_type, form_inst_id)
);
