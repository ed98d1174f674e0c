-- One row per worker process: the write its durability barrier commits when it must.
--
-- A worker's ordinary commits do not wait for the disk (synchronous_commit = off). Before a job
-- counts as done, the log must be on disk past its commits. Other sessions' commits usually get
-- it there; when none did within a couple of milliseconds, the worker commits a change of its
-- row here on a session of its own, with the server's usual durability: that commit waits for
-- the disk, and so for every commit made before it (the log is written in order). A commit that
-- writes nothing does not wait for the disk, so the barrier needs a real row change. See
-- `PgWriteBarrier`.
--
-- A row untouched for a day belongs to a worker long gone: the next worker that connects
-- removes it, and a worker that stops removes its own.
CREATE TABLE durability_barriers (
    process_id UUID PRIMARY KEY,
    application_name TEXT NOT NULL CHECK (length(application_name) <= 64),
    flushes BIGINT NOT NULL DEFAULT 0,
    started_at TIMESTAMPTZ NOT NULL,
    flushed_at TIMESTAMPTZ NOT NULL
);
