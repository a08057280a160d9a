-- The run lease: at most one row (id = 1). `token` grows with every acquisition (fencing);
-- releasing sets `expires_at` to the release time, so the row (and the token) stays.
CREATE TABLE run_lease (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    token        INTEGER NOT NULL,
    pid          INTEGER NOT NULL,
    host         TEXT    NOT NULL,
    label        TEXT    NOT NULL,
    acquired_at  TEXT    NOT NULL,
    heartbeat_at TEXT    NOT NULL,
    expires_at   TEXT    NOT NULL
) STRICT;
