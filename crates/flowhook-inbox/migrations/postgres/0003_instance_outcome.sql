-- The created list's outcome (issue 18 item 9): the instance status the newest created/cc record
-- carried (`processInstanceStatus`, mapped: running, approved, rejected, withdrawn, terminated)
-- and that record's `modifiedTime`, so an older record arriving later does not undo it.
ALTER TABLE instances ADD COLUMN status TEXT;
ALTER TABLE instances ADD COLUMN status_at BIGINT;
