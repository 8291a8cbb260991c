-- Each epoch announces the next (docs/fairness.md §4): where it will end, and the id and
-- commitment of the market's next epoch, whose seed is drawn then and kept sealed here until
-- that epoch starts. Epochs from before announcements have none. Announced ids are reserved
-- from the epochs' own identity sequence.
ALTER TABLE epochs ADD COLUMN planned_end_seq BIGINT;
ALTER TABLE epochs ADD COLUMN next_id BIGINT;
ALTER TABLE epochs ADD COLUMN next_commitment TEXT;
ALTER TABLE epochs ADD COLUMN next_sealed_seed TEXT;
