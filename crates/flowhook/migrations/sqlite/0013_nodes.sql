-- The dispatchers alive (issue 14, lease takeover): each node writes its heartbeat here every
-- second (by the database's clock). A lease held by a node whose heartbeat is older than
-- `delivery_node_timeout_ms` is taken over at once, without waiting for the lease to expire.
CREATE TABLE nodes (
    id           TEXT PRIMARY KEY, -- node_…, the lease owner of its dispatcher
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
