-- Postings were unique by (account, transaction): each posting's index entry went to its
-- account's page, so a trade dirtied pages spread over every user's accounts (two at its
-- opening, one or two at its end), each written whole to the WAL at every commit. Unique by
-- (transaction, account), the entries append. A user's statement, the one reader by account,
-- lists cash postings only: it reads a partial index of the postings that carry a balance,
-- which from now on only cash postings do.
CREATE TABLE postings_by_transaction (
    id             INTEGER PRIMARY KEY,
    transaction_id INTEGER NOT NULL REFERENCES ledger_transactions (id),
    account_id     INTEGER NOT NULL REFERENCES accounts (id),
    amount         INTEGER NOT NULL CHECK (amount <> 0),
    -- The cash account's balance right after this posting (cash postings; in-play postings
    -- written before this migration have one too).
    balance_after  INTEGER,
    UNIQUE (transaction_id, account_id)
);
INSERT INTO postings_by_transaction (id, transaction_id, account_id, amount, balance_after)
SELECT id, transaction_id, account_id, amount, balance_after FROM postings ORDER BY id;
DROP TABLE postings;
ALTER TABLE postings_by_transaction RENAME TO postings;
CREATE TRIGGER postings_no_update BEFORE UPDATE ON postings
BEGIN SELECT RAISE(ABORT, 'postings are append-only'); END;
CREATE TRIGGER postings_no_delete BEFORE DELETE ON postings
BEGIN SELECT RAISE(ABORT, 'postings are append-only'); END;
CREATE INDEX postings_listed_by_account ON postings (account_id, transaction_id) WHERE balance_after IS NOT NULL;
