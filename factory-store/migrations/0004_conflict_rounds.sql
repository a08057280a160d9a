-- Conflict hand-back: rounds given to the worker to resolve a conflict with main, and the
-- paths the pending one must resolve (a JSON array; empty when none is pending).
ALTER TABLE tasks ADD COLUMN conflict_rounds INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN conflict_files TEXT NOT NULL DEFAULT '[]';
-- The branch's tip when the current worker round first started (NULL between rounds).
ALTER TABLE tasks ADD COLUMN round_start TEXT;
