-- How far each market's record of ticks is closed. Before settlement voids a trade because its
-- clock passed the deadline with no tick recorded, it raises its market's horizon to that
-- deadline; a tick stamped at or before the horizon is refused from then on (the feed stamps it
-- again at its next due time). So no tick stored later can contradict the void
-- (docs/fairness.md §6). The feed adds its market's row before storing any tick: an insert holds
-- the row shared while it checks it, and a raise waits for that insert to commit.
CREATE TABLE void_horizons (
    symbol  TEXT   PRIMARY KEY,
    horizon BIGINT NOT NULL
);
