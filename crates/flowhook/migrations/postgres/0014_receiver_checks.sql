-- Receiver checks (issue 19): each run of `POST …/actions/{id}/check`, kept for the action's
-- history (`GET …/actions/{id}/checks`). The scorecard is JSON; it holds no secret (URLs and
-- answers are masked and scrubbed as in the delivery log).
CREATE TABLE receiver_checks (
    id         TEXT PRIMARY KEY,   -- chk_…
    corp_id    TEXT NOT NULL,
    action_id  TEXT NOT NULL,
    started_at BIGINT NOT NULL,    -- epoch ms
    passed     INTEGER NOT NULL,
    warned     INTEGER NOT NULL,
    failed     INTEGER NOT NULL,
    scorecard  TEXT NOT NULL
);
CREATE INDEX receiver_checks_by_action ON receiver_checks (corp_id, action_id, started_at);
