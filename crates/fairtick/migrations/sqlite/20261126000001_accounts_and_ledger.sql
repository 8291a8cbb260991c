-- Users, sessions and the double-entry ledger (SQLite).
-- Money is INTEGER cents; times are INTEGER milliseconds since the Unix epoch (UTC).

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    -- Stored trimmed and lowercased by the application, so UNIQUE is case-insensitive.
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    first_name    TEXT    NOT NULL,
    last_name     TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('user', 'admin', 'superadmin')),
    status        TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    vip_level     INTEGER NOT NULL DEFAULT 1 CHECK (vip_level >= 1),
    created_at    INTEGER NOT NULL
);

-- Tokens revoked at logout, kept until they would have expired anyway.
CREATE TABLE revoked_tokens (
    jti        TEXT    PRIMARY KEY,
    expires_at INTEGER NOT NULL
);

-- Ledger accounts. Each user has a cash and an in-play account, each with a cached balance
-- that can never go below zero. The house and the faucet are system accounts whose balance
-- is derived from their postings, so that no single row serialises every user's transaction.
CREATE TABLE accounts (
    id      INTEGER PRIMARY KEY,
    user_id INTEGER REFERENCES users (id),
    kind    TEXT    NOT NULL CHECK (kind IN ('cash', 'in_play', 'house', 'faucet')),
    balance INTEGER NOT NULL DEFAULT 0,
    CHECK ((kind IN ('cash', 'in_play')) = (user_id IS NOT NULL)),
    CHECK (kind NOT IN ('cash', 'in_play') OR balance >= 0),
    UNIQUE (user_id, kind)
);
CREATE UNIQUE INDEX accounts_one_per_system_kind ON accounts (kind) WHERE user_id IS NULL;
INSERT INTO accounts (kind) VALUES ('faucet'), ('house');

-- One row per money movement; its postings sum to zero (checked by `fairtick audit`).
CREATE TABLE ledger_transactions (
    id         INTEGER PRIMARY KEY,
    kind       TEXT    NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    -- What caused it, e.g. a trade id; NULL for wallet operations.
    reference  TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX ledger_transactions_by_user_kind_time ON ledger_transactions (user_id, kind, created_at);

CREATE TABLE postings (
    id             INTEGER PRIMARY KEY,
    transaction_id INTEGER NOT NULL REFERENCES ledger_transactions (id),
    account_id     INTEGER NOT NULL REFERENCES accounts (id),
    amount         INTEGER NOT NULL CHECK (amount <> 0),
    -- The account's cached balance right after this posting (user accounts only).
    balance_after  INTEGER,
    UNIQUE (account_id, transaction_id)
);

-- The ledger is append-only: a correction is a new transaction, never an edit.
CREATE TRIGGER postings_no_update BEFORE UPDATE ON postings
BEGIN SELECT RAISE(ABORT, 'postings are append-only'); END;
CREATE TRIGGER postings_no_delete BEFORE DELETE ON postings
BEGIN SELECT RAISE(ABORT, 'postings are append-only'); END;
CREATE TRIGGER ledger_transactions_no_update BEFORE UPDATE ON ledger_transactions
BEGIN SELECT RAISE(ABORT, 'ledger transactions are append-only'); END;
CREATE TRIGGER ledger_transactions_no_delete BEFORE DELETE ON ledger_transactions
BEGIN SELECT RAISE(ABORT, 'ledger transactions are append-only'); END;

-- Answers already given to a state-changing request, by the client's Idempotency-Key.
CREATE TABLE idempotency_keys (
    user_id      INTEGER NOT NULL REFERENCES users (id),
    key          TEXT    NOT NULL,
    -- SHA-256 of the request (route and body): the same key with another body is refused.
    request_hash TEXT    NOT NULL,
    response     TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
);
