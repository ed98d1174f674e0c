-- Transactional outbox: jobs written in the same transaction as the rows that caused them,
-- published to the Redis queue after commit (eagerly by the writer, else by the worker's relay).
CREATE TABLE outbox (
    -- The job id: deterministic ids make publishing idempotent.
    id             TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 200),
    queue          TEXT NOT NULL,
    kind           TEXT NOT NULL,
    payload        JSONB NOT NULL,
    schema_version INTEGER NOT NULL,
    max_attempts   INTEGER NOT NULL CHECK (max_attempts > 0),
    trace_id       TEXT NULL,
    run_at         TIMESTAMPTZ NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    published_at   TIMESTAMPTZ NULL
);

CREATE INDEX outbox_unpublished_idx ON outbox (created_at) WHERE published_at IS NULL;
