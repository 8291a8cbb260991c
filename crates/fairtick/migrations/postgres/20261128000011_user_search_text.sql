-- What the admin user search matches: the email and the name, lower-cased by the application
-- with Unicode's rules, since SQLite's LOWER folds only ASCII letters ("élodie" could not find
-- "Élodie"). Set when a user is created; rows from before are filled in at start-up.
ALTER TABLE users ADD COLUMN search_text TEXT;
