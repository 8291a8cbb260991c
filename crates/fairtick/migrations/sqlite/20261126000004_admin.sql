-- Administration without any power over results: per-user restrictions, versioned public
-- trading terms, an append-only audit log, and TOTP for admin accounts.

-- Restrictions an admin may place on one user. They only ever restrict, and the user sees them.
ALTER TABLE users ADD COLUMN max_stake INTEGER CHECK (max_stake IS NULL OR max_stake > 0);
ALTER TABLE users ADD COLUMN trading_suspended INTEGER NOT NULL DEFAULT 0 CHECK (trading_suspended IN (0, 1));
-- TOTP secret, sealed with AES-256-GCM under the data key; enabled once confirmed with a code.
ALTER TABLE users ADD COLUMN totp_sealed TEXT;
ALTER TABLE users ADD COLUMN totp_enabled INTEGER NOT NULL DEFAULT 0 CHECK (totp_enabled IN (0, 1));

-- Every version of the trading terms ever in force. The newest row is current; rows are never
-- changed, so anyone can see what the terms were when a trade was accepted.
CREATE TABLE settings_versions (
    id           INTEGER PRIMARY KEY,
    -- The complete terms as JSON (camelCase fields of TradingSettings and wallet limits).
    settings     TEXT    NOT NULL,
    -- Which fields this change touched, for the public history.
    changed      TEXT    NOT NULL,
    changed_by   INTEGER REFERENCES users (id),
    changed_role TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
);

-- Every admin action: who, what, before and after, when, from where. Append-only.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    actor_id   INTEGER NOT NULL REFERENCES users (id),
    actor_role TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT,
    before     TEXT,
    after      TEXT,
    ip         TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX audit_log_by_actor ON audit_log (actor_id, id);

CREATE TRIGGER settings_versions_no_update BEFORE UPDATE ON settings_versions
BEGIN SELECT RAISE(ABORT, 'settings versions are append-only'); END;
CREATE TRIGGER settings_versions_no_delete BEFORE DELETE ON settings_versions
BEGIN SELECT RAISE(ABORT, 'settings versions are append-only'); END;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
