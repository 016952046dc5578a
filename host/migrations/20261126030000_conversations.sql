-- Conversations and approvals (host/src/conversation.rs, host/src/approvals.rs).
-- Nothing here is secret: no password, Temporary Access Pass, code or token
-- is ever written (secrets are held in memory until shown once; typed codes
-- are masked in the stored messages).

-- One conversation per (tenant, user): the state machine's state as JSON
-- (host/src/conversation/state.rs), so it resumes after a restart.
CREATE TABLE conversations (
    -- The tenant's GUID, lowercase.
    tenant       TEXT    NOT NULL,
    -- The user's Entra object id, lowercase.
    user_id      TEXT    NOT NULL,
    -- 'web', 'teams' or 'slack': where the user last spoke.
    channel      TEXT    NOT NULL,
    display_name TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    -- The open case's deadline, Unix seconds; NULL when idle (for the sweep).
    deadline     INTEGER,
    -- Unix seconds.
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant, user_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX conversations_deadline ON conversations (deadline) WHERE deadline IS NOT NULL;

-- What the user and the bot said and did, numbered 1, 2, 3... per
-- conversation; the web chat polls it.
CREATE TABLE conversation_events (
    tenant  TEXT    NOT NULL,
    user_id TEXT    NOT NULL,
    seq     INTEGER NOT NULL CHECK (seq >= 1),
    -- Unix seconds.
    at      INTEGER NOT NULL,
    -- The event as JSON ({"type": ..., ...}).
    event   TEXT    NOT NULL,
    PRIMARY KEY (tenant, user_id, seq)
) STRICT, WITHOUT ROWID;

-- OIDC flows the engine started, by the sha256 of their state: which
-- channel a sign-in is for, which conversation a step-up continues.
CREATE TABLE conversation_flows (
    state_sha256 TEXT    NOT NULL PRIMARY KEY,
    kind         TEXT    NOT NULL CHECK (kind IN ('sign-in', 'step-up')),
    tenant       TEXT    NOT NULL,
    -- The requester, for a step-up.
    user_id      TEXT,
    channel      TEXT    NOT NULL,
    -- Unix seconds.
    expires_at   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Approval requests: a require-approval decision, to the approver it names.
CREATE TABLE approval_requests (
    -- A random UUID.
    id             TEXT    NOT NULL PRIMARY KEY,
    tenant         TEXT    NOT NULL,
    requester      TEXT    NOT NULL,
    requester_name TEXT    NOT NULL,
    approver_kind  TEXT    NOT NULL CHECK (approver_kind IN ('manager', 'group')),
    -- The manager's object id, or the group's.
    approver_ref   TEXT    NOT NULL,
    approver_name  TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    -- Unix seconds.
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    status         TEXT    NOT NULL
        CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'withdrawn')),
    answered_by    TEXT,
    answered_at    INTEGER,
    -- JSON array of the users checked for it (group requests are shown to
    -- members when they next use the chat).
    checked        TEXT    NOT NULL DEFAULT '[]'
) STRICT, WITHOUT ROWID;

CREATE INDEX approval_requests_pending ON approval_requests (tenant, status, expires_at);
