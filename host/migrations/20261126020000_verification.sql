-- Pending identity verifications (host/src/verification.rs): OIDC sign-ins
-- and MFA step-ups waiting for their redirect, recovery email codes, and
-- manager confirmations.
--
-- Nothing secret is stored. A sign-in's state is kept only as its sha256; its
-- PKCE verifier and nonce are derived from the state with an HMAC key that the
-- process holds in memory; a recovery code is kept only as an HMAC under that
-- key. A restart (a new key) therefore invalidates whatever was pending: the
-- user asks again. `key_id` names the key a row was made under, so that such a
-- row is reported as expired rather than as a wrong code.
--
-- Portable SQL ($n placeholders, RETURNING); a PostgreSQL backend needs only
-- its own migration (BIGINT GENERATED ALWAYS AS IDENTITY for the seq column).

CREATE TABLE verification_flows (
    -- sha256 of the state parameter, 64 lowercase hex digits.
    state_sha256 TEXT    NOT NULL PRIMARY KEY,
    -- 'step-up' (MFA for a known requester) or 'sign-in' (any user).
    kind         TEXT    NOT NULL CHECK (kind IN ('step-up', 'sign-in')),
    tenant       TEXT    NOT NULL,
    -- The requester's object id; NULL for a sign-in.
    requester    TEXT,
    redirect_uri TEXT    NOT NULL,
    key_id       TEXT    NOT NULL,
    -- Unix seconds.
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    -- Set once, when the redirect comes back: a state is single use.
    used_at      INTEGER
) STRICT, WITHOUT ROWID;

CREATE INDEX verification_flows_expiry ON verification_flows (expires_at);

CREATE TABLE verification_codes (
    -- Issue order: the latest code of a requester is the live one.
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,
    tenant       TEXT    NOT NULL,
    requester    TEXT    NOT NULL,
    -- HMAC-SHA256 of the code (bound to id, tenant and requester), hex.
    code_mac     TEXT    NOT NULL,
    key_id       TEXT    NOT NULL,
    -- The masked address it was sent to, for messages ("a***@example.net").
    to_masked    TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    -- Tries made, the right one included; at the maximum the code is burnt.
    attempts     INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    used_at      INTEGER
) STRICT;

-- The rate limit counts a requester's codes of the last hour.
CREATE INDEX verification_codes_requester ON verification_codes (tenant, requester, created_at);

CREATE TABLE verification_manager_asks (
    id           TEXT    NOT NULL PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    requester    TEXT    NOT NULL,
    -- The only identity whose answer counts.
    manager      TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    answered_at  INTEGER,
    -- 1 confirmed, 0 refused; NULL until answered.
    confirmed    INTEGER CHECK (confirmed IN (0, 1))
) STRICT, WITHOUT ROWID;

CREATE INDEX verification_manager_asks_expiry ON verification_manager_asks (expires_at);
