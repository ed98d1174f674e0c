-- Validation changes nothing to undo: the constraint itself goes with the migration before.
SELECT 1;
