-- Only deposits are ever looked up by user and time (the daily deposit limit). The index over
-- every kind gave each trade two more index entries, on pages spread by user, at its opening
-- and at its end: a third of the index pages a trade dirtied.
DROP INDEX ledger_transactions_by_user_kind_time;
CREATE INDEX ledger_deposits_by_user_time ON ledger_transactions (user_id, created_at) WHERE kind = 'deposit';
