-- Each user's turnover by UTC day: the stakes of their trades that ended other than void, on
-- the day each was accepted. Written with the ending, so the VIP level's 30-day turnover reads
-- at most 30 rows a user instead of every trade the user ever made.
CREATE TABLE turnover_days (
    user_id BIGINT NOT NULL REFERENCES users (id),
    -- Whole days since 1970-01-01 UTC of the trades' accepted_at.
    day     BIGINT NOT NULL,
    -- Cents.
    stake   BIGINT NOT NULL CHECK (stake >= 0),
    PRIMARY KEY (user_id, day)
);

INSERT INTO turnover_days (user_id, day, stake)
SELECT user_id, accepted_at / 86400000, SUM(stake)
FROM trades
WHERE status IN ('settled', 'sold')
GROUP BY user_id, accepted_at / 86400000;
