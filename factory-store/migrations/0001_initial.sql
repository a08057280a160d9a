-- Factory's first schema. Timestamps are RFC 3339 UTC text with nanoseconds (fixed width, so text
-- order is time order); states are the domain enums' snake_case names; versions start at 1 and
-- are bumped by every compare-and-set write.

CREATE TABLE epics (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    title          TEXT    NOT NULL,
    text           TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    blocked_reason TEXT,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL
) STRICT;

CREATE TABLE tasks (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    epic_id        INTEGER NOT NULL REFERENCES epics (id),
    key            TEXT    NOT NULL,
    -- The NNN of the spec id; unique across the store so spec dirs and branches never collide.
    spec_number    INTEGER NOT NULL UNIQUE,
    spec_id        TEXT    NOT NULL UNIQUE,
    title          TEXT    NOT NULL,
    description    TEXT    NOT NULL,
    -- JSON array of strings.
    acceptance     TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    attempts       INTEGER NOT NULL,
    qa_rounds      INTEGER NOT NULL,
    branch         TEXT,
    pr_url         TEXT,
    blocked_reason TEXT,
    waiting_reason TEXT,
    merge_commit   TEXT,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL,
    UNIQUE (epic_id, key)
) STRICT;

CREATE INDEX tasks_by_epic ON tasks (epic_id, spec_number);

-- A task's dependencies, in the order the plan listed them. Written once, with the task.
CREATE TABLE task_deps (
    task_id    INTEGER NOT NULL REFERENCES tasks (id),
    depends_on INTEGER NOT NULL REFERENCES tasks (id),
    position   INTEGER NOT NULL,
    PRIMARY KEY (task_id, depends_on)
) STRICT, WITHOUT ROWID;

CREATE TABLE agents (
    id         TEXT    PRIMARY KEY NOT NULL,
    role       TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    task_id    INTEGER REFERENCES tasks (id),
    updated_at TEXT    NOT NULL
) STRICT;

CREATE TABLE mail (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    sender     TEXT    NOT NULL,
    recipient  TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    task_id    INTEGER REFERENCES tasks (id),
    created_at TEXT    NOT NULL,
    read_at    TEXT
) STRICT;

CREATE INDEX mail_by_recipient ON mail (recipient, id);

CREATE TABLE decisions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    epic_id    INTEGER NOT NULL REFERENCES epics (id),
    task_id    INTEGER REFERENCES tasks (id),
    actor      TEXT    NOT NULL,
    decision   TEXT    NOT NULL,
    reasoning  TEXT    NOT NULL,
    -- Any JSON value.
    context    TEXT    NOT NULL,
    created_at TEXT    NOT NULL
) STRICT;

CREATE INDEX decisions_by_epic ON decisions (epic_id, id);
CREATE INDEX decisions_by_task ON decisions (task_id, id);

-- The journal of domain events; `payload` is the serde JSON of `DomainEvent`.
CREATE TABLE events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    payload TEXT    NOT NULL
) STRICT;
