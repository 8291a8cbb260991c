-- Provably fair markets: epochs with their committed (later revealed) seeds, and the ticks.

-- One epoch of one market. The commitment is public from the moment the row exists, which is
-- before the epoch's first tick; the seed is stored only sealed (AES-256-GCM) until the epoch
-- ends, then revealed in clear.
CREATE TABLE epochs (
    id               INTEGER PRIMARY KEY,
    symbol           TEXT    NOT NULL,
    -- 'simulated' (ticks from the seed) or 'replay' (ticks from a recorded file).
    kind             TEXT    NOT NULL CHECK (kind IN ('simulated', 'replay')),
    -- The engine parameters in force for this epoch, so a verifier needs nothing else.
    volatility_bp    INTEGER NOT NULL,
    tick_interval_ms INTEGER NOT NULL,
    -- hex(SHA-256(seed)) for simulated epochs; hex(SHA-256(file)) for replays.
    commitment       TEXT    NOT NULL,
    sealed_seed      TEXT,
    revealed_seed    TEXT,
    -- The price before the first tick (the previous epoch's last price).
    start_price      INTEGER NOT NULL,
    -- seq of the epoch's first tick; tick index = seq - start_seq.
    start_seq        INTEGER NOT NULL,
    end_seq          INTEGER,
    started_at       INTEGER NOT NULL,
    ended_at         INTEGER,
    CHECK (revealed_seed IS NULL OR ended_at IS NOT NULL)
);
CREATE INDEX epochs_by_symbol ON epochs (symbol, id);

-- Every tick of every market. seq increases by one per market without gaps; prices are
-- integers at scale 8; ts is when the server produced the tick (ms).
CREATE TABLE ticks (
    symbol   TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    epoch_id INTEGER NOT NULL REFERENCES epochs (id),
    ts       INTEGER NOT NULL,
    price    INTEGER NOT NULL CHECK (price > 0),
    PRIMARY KEY (symbol, seq)
) WITHOUT ROWID;
CREATE INDEX ticks_by_time ON ticks (symbol, ts);
CREATE INDEX ticks_by_epoch ON ticks (epoch_id, seq);
