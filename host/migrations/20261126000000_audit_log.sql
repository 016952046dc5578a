-- The activity log: append-only, one hash chain per tenant (host/src/audit.rs
-- documents the canonical form the sha256 columns cover).
--
-- SQLite dialect. A PostgreSQL backend gets its own migrations directory: the
-- id becomes BIGINT GENERATED ALWAYS AS IDENTITY, STRICT goes (PostgreSQL
-- columns are typed anyway), and the triggers become one plpgsql function
-- raising an exception, on BEFORE UPDATE OR DELETE and BEFORE TRUNCATE.

CREATE TABLE audit_entries (
    -- Storage row id; AUTOINCREMENT so a deleted row's id is never reused.
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Canonical form version.
    v           INTEGER NOT NULL,
    tenant      TEXT    NOT NULL,
    -- 1, 2, 3... within the tenant's chain.
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    kind        TEXT    NOT NULL,
    -- Milliseconds since the Unix epoch, UTC.
    at          INTEGER NOT NULL,
    -- The body as canonical JSON text (sorted keys, no whitespace). Text, not a
    -- JSON column type: what is hashed is what is stored.
    body        TEXT    NOT NULL,
    prev_sha256 TEXT    NOT NULL,
    sha256      TEXT    NOT NULL,
    -- For outcomes: the seq of the intent they answer (also in the hashed
    -- body; this copy is for lookups and the one-outcome rule).
    intent_seq  INTEGER
) STRICT;

-- One entry per place in a chain: a second writer that lost a race fails
-- here instead of forking the chain.
CREATE UNIQUE INDEX audit_entries_chain ON audit_entries (tenant, seq);

-- At most one outcome per intent (NULLs, for entries that are not outcomes,
-- are distinct in a unique index, in SQLite and PostgreSQL alike).
CREATE UNIQUE INDEX audit_entries_one_outcome ON audit_entries (tenant, intent_seq);

-- Append-only. An honest extra guard: whoever can write the file can drop
-- these, which is why verification, not the triggers, detects tampering.
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only: UPDATE refused');
END;

CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only: DELETE refused');
END;
