-- Flash trades. A trade's result is written only by settlement, from recorded ticks, in the
-- same transaction as the postings that pay it; the conditional update on status = 'active'
-- makes every trade end exactly once.

CREATE TABLE trades (
    id             INTEGER PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users (id),
    symbol         TEXT    NOT NULL,
    direction      TEXT    NOT NULL CHECK (direction IN ('up', 'down')),
    -- Cents.
    stake          INTEGER NOT NULL CHECK (stake > 0),
    duration_ms    INTEGER NOT NULL CHECK (duration_ms > 0),
    -- Fixed at acceptance: the setting plus the user's VIP bonus then.
    payout_rate_bp INTEGER NOT NULL CHECK (payout_rate_bp > 0),
    status         TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'settled', 'sold', 'void')),
    result         TEXT    CHECK (result IN ('win', 'lose', 'tie')),
    accepted_at    INTEGER NOT NULL,
    -- The entry tick: the first tick of the market strictly after accepted_at.
    entry_seq      INTEGER,
    entry_ts       INTEGER,
    entry_price    INTEGER,
    entry_epoch_id INTEGER,
    -- entry_ts + duration_ms.
    expires_at     INTEGER,
    -- The exit tick: the last tick at or before expires_at.
    exit_seq       INTEGER,
    exit_ts        INTEGER,
    exit_price     INTEGER,
    exit_epoch_id  INTEGER,
    -- Cents returned to the user's cash when the trade ended (0 on a loss).
    payout         INTEGER,
    settled_at     INTEGER,
    void_reason    TEXT,
    CHECK ((status = 'settled') = (result IS NOT NULL)),
    CHECK ((status = 'active') = (settled_at IS NULL)),
    CHECK (status <> 'settled' OR (entry_seq IS NOT NULL AND exit_seq IS NOT NULL AND payout IS NOT NULL)),
    CHECK (status <> 'void' OR void_reason IS NOT NULL),
    CHECK (status <> 'sold' OR payout IS NOT NULL)
);
CREATE INDEX trades_active ON trades (symbol, id) WHERE status = 'active';
CREATE INDEX trades_by_user ON trades (user_id, id);

-- The audit and receipts find a trade's ledger transactions by their reference.
CREATE INDEX ledger_transactions_by_reference ON ledger_transactions (reference);
