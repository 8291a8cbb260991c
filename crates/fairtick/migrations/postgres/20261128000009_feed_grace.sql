-- The feed's grace period (ms) a trade was ended under, settled or void: with the recorded tick
-- times it decides whether the trade is void (docs/fairness.md §6), and its receipt carries it
-- so that anyone can check. NULL for sold trades and for those ended before it was recorded.
ALTER TABLE trades ADD COLUMN feed_grace_ms BIGINT;
