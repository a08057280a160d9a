-- The round budget's start (raised by a retry) and the commit that passed QA.
ALTER TABLE tasks ADD COLUMN rounds_base INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN verified_commit TEXT;
