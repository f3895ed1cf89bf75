-- The console (issue 15): server-side sessions of people signed in to /console, and the
-- installation's approval-link secret.
--
-- A session is found by the SHA-256 of its cookie value (the value itself is never stored, like
-- API keys). `kind`: `operator` (signed in with an admin API key, or the bootstrap key — then
-- `corp_id` is NULL until an organisation is picked), `link` (an approver who opened a signed
-- approval link: `user_id` and the task ids in `grants`), `header` (a user named by the trusted
-- single-sign-on header). An operator's session remembers the hash of its key, so revoking the
-- key ends the session.
CREATE TABLE console_sessions (
    id_hash      TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    corp_id      TEXT,
    user_id      TEXT,
    key_hash     TEXT,
    csrf         TEXT NOT NULL,
    grants       TEXT NOT NULL DEFAULT '', -- space-separated task ids (link sessions)
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,         -- idle expiry counts from here (touched at most once a minute)
    expires_at   BIGINT NOT NULL          -- absolute expiry
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
