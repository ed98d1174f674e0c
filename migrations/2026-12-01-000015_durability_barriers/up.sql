-- One row per worker process: the write its durability barrier commits when it must.
--
-- A worker's ordinary commits do not wait for the disk (synchronous_commit = off). Before a job
-- counts as done, the log must be on disk past its commits. Other sessions' commits usually get
-- it there; when none did within a couple of milliseconds, the worker commits a change of its
-- row here on a session of its own that waits for the disk: that commit brings every commit made
-- before it to disk too (the log is written in order). A commit that writes nothing does not
-- wait for the disk, so the barrier needs a real row change. See `PgWriteBarrier`.
--
-- A row appears at a worker's first such commit; a worker that stops cleanly removes its own. A
-- row untouched for a day is removed by the next worker that connects (a live worker whose
-- flushes other commits covered meanwhile just writes it again).
CREATE TABLE durability_barriers (
    process_id UUID PRIMARY KEY,
    application_name TEXT NOT NULL CHECK (length(application_name) <= 64),
    flushes BIGINT NOT NULL DEFAULT 0,
    started_at TIMESTAMPTZ NOT NULL,
    flushed_at TIMESTAMPTZ NOT NULL
);
