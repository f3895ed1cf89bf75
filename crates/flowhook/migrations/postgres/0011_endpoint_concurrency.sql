-- A connector's requests in flight at most (issue 14, fair delivery): a slow or hanging
-- endpoint holds at most this many of a node's delivery slots.
ALTER TABLE connectors ADD COLUMN max_concurrency INTEGER NOT NULL DEFAULT 8;
