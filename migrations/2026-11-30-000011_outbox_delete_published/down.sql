DROP INDEX outbox_created_idx;
ALTER TABLE outbox ADD COLUMN published_at TIMESTAMPTZ NULL;
CREATE INDEX outbox_unpublished_idx ON outbox (created_at) WHERE published_at IS NULL;
