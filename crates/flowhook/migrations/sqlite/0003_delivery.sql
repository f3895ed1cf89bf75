-- The integration center and delivery: connectors and their actions (Yida's HTTP connector),
-- each organisation's approval-task sync strategy, one delivery per (event, action) written in
-- the transaction of the event, and every attempt.

CREATE TABLE connectors (
    id              TEXT PRIMARY KEY, -- con_…
    corp_id         TEXT NOT NULL REFERENCES organisations (corp_id),
    name            TEXT NOT NULL,
    base_url        TEXT NOT NULL,
    auth_type       TEXT NOT NULL,    -- none | basic | apiKey | bearer
    auth_config     TEXT NOT NULL,    -- JSON; holds secrets, never returned in full
    default_headers TEXT NOT NULL,    -- JSON object
    timeout_ms      BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX connectors_corp ON connectors (corp_id);

CREATE TABLE actions (
    id           TEXT PRIMARY KEY, -- act_…
    corp_id      TEXT NOT NULL,
    connector_id TEXT NOT NULL REFERENCES connectors (id),
    name         TEXT NOT NULL,
    method       TEXT NOT NULL,    -- POST
    path         TEXT NOT NULL,
    encoding     TEXT NOT NULL,    -- form | json
    created_at   BIGINT NOT NULL
);
CREATE INDEX actions_corp ON actions (corp_id);

CREATE TABLE sync_strategies (
    corp_id          TEXT PRIMARY KEY REFERENCES organisations (corp_id),
    enabled          BOOLEAN NOT NULL,
    created_action   TEXT,
    finished_action  TEXT,
    cancelled_action TEXT,
    deleted_action   TEXT,
    cc_action        TEXT,
    app_filter       TEXT,             -- JSON array of appType, or NULL for all
    process_filter   TEXT,             -- JSON array of processCode, or NULL for all
    ordered          BOOLEAN NOT NULL, -- per-instance order
    standard_webhooks BOOLEAN NOT NULL DEFAULT FALSE, -- also sign with Standard Webhooks
    webhook_secrets  TEXT,             -- JSON [{secret, expiresAt}]: secrets; never shown after creation
    updated_at       BIGINT NOT NULL
);

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY, -- dlv_…
    corp_id         TEXT NOT NULL,
    event_id        TEXT NOT NULL REFERENCES events (id),
    action_id       TEXT NOT NULL REFERENCES actions (id),
    instance_id     TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    status          TEXT NOT NULL,    -- pending | delivered | dead
    ordered         BOOLEAN NOT NULL,
    backfill        BOOLEAN NOT NULL,
    job_id          TEXT,             -- the backfill or bulk job that created it, if any
    attempts        INTEGER NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
-- The ordering lane: an instance's pending deliveries by seq.
CREATE INDEX deliveries_lane ON deliveries (instance_id, status, seq);
CREATE INDEX deliveries_corp ON deliveries (corp_id, created_at);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_job ON deliveries (job_id);

-- Background operations with progress: backfills (and, later, bulk redeliveries).
CREATE TABLE jobs (
    id          TEXT PRIMARY KEY, -- job_…
    corp_id     TEXT NOT NULL REFERENCES organisations (corp_id),
    kind        TEXT NOT NULL,    -- backfill
    params      TEXT NOT NULL,    -- JSON: what was asked
    total       BIGINT NOT NULL,  -- deliveries created
    created_at  BIGINT NOT NULL
);

CREATE TABLE attempts (
    id               TEXT PRIMARY KEY,
    delivery_id      TEXT NOT NULL REFERENCES deliveries (id),
    corp_id          TEXT NOT NULL,
    attempt          INTEGER NOT NULL,
    started_at       BIGINT NOT NULL,
    duration_ms      BIGINT NOT NULL,
    url              TEXT NOT NULL,   -- query credentials masked
    request_headers  TEXT NOT NULL,   -- JSON, secrets masked
    request_params   TEXT NOT NULL,   -- JSON [[name, value], …] as sent
    response_status  INTEGER,
    response_headers TEXT,
    response_body    TEXT,            -- first 4 KiB
    error_kind       TEXT,            -- dns | connect | tls | timeout | status | egress | other
    error            TEXT
);
CREATE INDEX attempts_delivery ON attempts (delivery_id, attempt);
