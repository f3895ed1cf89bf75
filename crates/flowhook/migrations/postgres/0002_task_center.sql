-- Tenancy, people, process definitions, instances, the task center and the event outbox.
-- Times are epoch milliseconds (BIGINT). Every table is keyed or indexed by corp_id first:
-- the organisation is the shard key, no query crosses organisations.

CREATE TABLE organisations (
    corp_id           TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    -- Bumped by every change to users or roles, so nodes know when to reload their snapshot.
    directory_version BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    corp_id    TEXT NOT NULL REFERENCES organisations (corp_id),
    name       TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE, -- SHA-256 hex of the key; the key itself is never stored
    scopes     TEXT NOT NULL,        -- space-separated: admin tasks integration
    created_at BIGINT NOT NULL
);

CREATE TABLE apps (
    app_type             TEXT PRIMARY KEY, -- globally unique, as Yida's
    corp_id              TEXT NOT NULL REFERENCES organisations (corp_id),
    name                 TEXT NOT NULL,
    system_token         TEXT NOT NULL,
    previous_token       TEXT,            -- still valid until previous_valid_until (rotation)
    previous_valid_until BIGINT,
    created_at           BIGINT NOT NULL
);
CREATE INDEX apps_corp ON apps (corp_id);

CREATE TABLE users (
    corp_id    TEXT NOT NULL REFERENCES organisations (corp_id),
    user_id    TEXT NOT NULL,
    name       TEXT NOT NULL,
    avatar     TEXT NOT NULL DEFAULT '',
    manager_id TEXT,
    admin      BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (corp_id, user_id)
);

CREATE TABLE roles (
    corp_id TEXT NOT NULL REFERENCES organisations (corp_id),
    role_id TEXT NOT NULL,
    name    TEXT NOT NULL,
    PRIMARY KEY (corp_id, role_id)
);

CREATE TABLE role_members (
    corp_id  TEXT NOT NULL,
    role_id  TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (corp_id, role_id, user_id),
    FOREIGN KEY (corp_id, role_id) REFERENCES roles (corp_id, role_id) ON DELETE CASCADE
);

CREATE TABLE process_definitions (
    corp_id      TEXT NOT NULL REFERENCES organisations (corp_id),
    process_code TEXT NOT NULL,
    version      BIGINT NOT NULL,
    app_type     TEXT NOT NULL REFERENCES apps (app_type),
    name         TEXT NOT NULL,
    document     TEXT NOT NULL, -- the validated definition, JSON
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (corp_id, process_code, version)
);

CREATE TABLE instances (
    id               TEXT PRIMARY KEY, -- processInstanceId
    corp_id          TEXT NOT NULL REFERENCES organisations (corp_id),
    app_type         TEXT NOT NULL,
    process_code     TEXT NOT NULL,
    process_version  BIGINT NOT NULL,
    form_instance_id TEXT NOT NULL,
    title            TEXT NOT NULL,
    originator_id    TEXT NOT NULL,
    status           TEXT NOT NULL,
    state            TEXT NOT NULL, -- the engine's instance state, JSON
    seq              BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    modified_at      BIGINT NOT NULL,
    finished_at      BIGINT
);
CREATE INDEX instances_created ON instances (corp_id, originator_id, created_at);
CREATE INDEX instances_corp ON instances (corp_id, created_at);

-- The task center's rows, maintained from the events in the same transaction.
CREATE TABLE tasks (
    id           TEXT PRIMARY KEY,
    corp_id      TEXT NOT NULL,
    app_type     TEXT NOT NULL,
    instance_id  TEXT NOT NULL REFERENCES instances (id),
    process_code TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    node_id      TEXT NOT NULL,
    node_name    TEXT NOT NULL,
    status       TEXT NOT NULL, -- open | finished | cancelled
    action       TEXT,
    created_at   BIGINT NOT NULL,
    ended_at     BIGINT
);
CREATE INDEX tasks_user ON tasks (corp_id, user_id, status, created_at);
CREATE INDEX tasks_instance ON tasks (instance_id);

CREATE TABLE ccs (
    id           TEXT PRIMARY KEY,
    corp_id      TEXT NOT NULL,
    app_type     TEXT NOT NULL,
    instance_id  TEXT NOT NULL REFERENCES instances (id),
    process_code TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    node_id      TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX ccs_user ON ccs (corp_id, user_id, created_at);
CREATE INDEX ccs_instance ON ccs (instance_id);

-- The outbox: every task event, with its Yida parameters rendered (all but dateTime and sign,
-- which belong to each delivery attempt). Written in the transaction of the state change.
CREATE TABLE events (
    id          TEXT PRIMARY KEY, -- evt_…, the receivers' idempotency key
    corp_id     TEXT NOT NULL,
    app_type    TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    kind        TEXT NOT NULL, -- task.created | task.finished | task.cancelled | task.deleted | task.cc
    task_id     TEXT,
    params      TEXT NOT NULL, -- JSON array of [name, value] in wire order
    created_at  BIGINT NOT NULL,
    UNIQUE (instance_id, seq)
);
CREATE INDEX events_corp ON events (corp_id, created_at);
