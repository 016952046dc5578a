-- Receipt nonces already consumed (host/src/receipt/nonce.rs, SqliteNonceStore).
-- A receipt authorizes one execution: the executor inserts the receipt's nonce
-- before its first Graph write, and the primary key makes exactly one of any
-- number of concurrent inserts succeed, across connections and processes.
-- Rows are deleted once their receipt can no longer verify (expires_at plus the
-- clock skew plus a retention margin); nothing here is secret (a nonce is only
-- useful together with the signed receipt it is in, which the audit log keeps).

CREATE TABLE receipt_nonces (
    -- The tenant's GUID, lowercase.
    tenant      TEXT    NOT NULL,
    -- The nonce, 32 lowercase hex digits.
    nonce       TEXT    NOT NULL,
    -- The receipt's expires_at, Unix seconds.
    expires_at  INTEGER NOT NULL,
    -- When it was consumed, Unix seconds (for operators; not used to decide).
    consumed_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, nonce)
) STRICT, WITHOUT ROWID;

-- Pruning deletes by expiry on every consumption.
CREATE INDEX receipt_nonces_expiry ON receipt_nonces (expires_at);
