-- Deployment metadata: facts about this Flowhook installation that outlive any one process.
-- `installation_id` is created once with the schema, so a restart on the same file (or the
-- same PostgreSQL database) is recognisably the same installation.
CREATE TABLE flowhook_meta (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL -- epoch milliseconds
);

INSERT INTO flowhook_meta (key, value, updated_at)
VALUES ('installation_id', lower(hex(randomblob(16))), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
