-- Each epoch announces the next (docs/fairness.md §4): where it will end, and the id and
-- commitment of the market's next epoch, whose seed is drawn then and kept sealed here until
-- that epoch starts. Epochs from before announcements have none.
ALTER TABLE epochs ADD COLUMN planned_end_seq INTEGER;
ALTER TABLE epochs ADD COLUMN next_id INTEGER;
ALTER TABLE epochs ADD COLUMN next_commitment TEXT;
ALTER TABLE epochs ADD COLUMN next_sealed_seed TEXT;

-- An announced id must be reserved before its epoch exists. SQLite has no sequences: this
-- table's AUTOINCREMENT never hands out an id twice, even once its rows are deleted, so it
-- starts above every epoch stored so far.
CREATE TABLE epoch_ids (id INTEGER PRIMARY KEY AUTOINCREMENT);
INSERT INTO epoch_ids (id) SELECT id FROM epochs ORDER BY id DESC LIMIT 1;
DELETE FROM epoch_ids;
