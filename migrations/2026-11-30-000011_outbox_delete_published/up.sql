-- A published outbox row is deleted instead of marked: the table holds only jobs still to
-- publish (it grew by every job ever staged), and the eager writer's bookkeeping is a DELETE,
-- which writes no new row version and no index entry, instead of a non-HOT UPDATE.
DELETE FROM outbox WHERE published_at IS NOT NULL;
DROP INDEX outbox_unpublished_idx;
ALTER TABLE outbox DROP COLUMN published_at;
CREATE INDEX outbox_created_idx ON outbox (created_at);
