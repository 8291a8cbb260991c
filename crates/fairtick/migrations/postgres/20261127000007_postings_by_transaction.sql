-- Postings were unique by (account, transaction): each posting's index entry went to its
-- account's page, so a trade dirtied pages spread over every user's accounts (two at its
-- opening, one or two at its end). Unique by (transaction, account), the entries append. A
-- user's statement, the one reader by account, lists cash postings only: it reads a partial
-- index of the postings that carry a balance, which from now on only cash postings do.
ALTER TABLE postings DROP CONSTRAINT postings_account_id_transaction_id_key;
ALTER TABLE postings ADD CONSTRAINT postings_transaction_id_account_id_key UNIQUE (transaction_id, account_id);
CREATE INDEX postings_listed_by_account ON postings (account_id, transaction_id) WHERE balance_after IS NOT NULL;
