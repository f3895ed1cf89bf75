-- Deployment metadata: facts about this Flowhook installation that outlive any one process.
-- `installation_id` is created once with the schema, so every node sharing the database and
-- every restart see the same installation.
CREATE TABLE flowhook_meta (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL -- epoch milliseconds
);

INSERT INTO flowhook_meta (key, value, updated_at)
VALUES ('installation_id', replace(gen_random_uuid()::text, '-', ''),
        (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT);
