-- PENDING → SENT is the write every notification gets, under load: make it a HOT update (no
-- index touched) by keeping `status` and `sent_at` out of every index and index predicate.
-- "Undelivered" and "unread" are told by the time columns instead; a constraint keeps them in
-- step with the status.
ALTER TABLE notifications ADD CONSTRAINT notifications_undelivered_has_no_time
    CHECK ((status IN ('PENDING', 'SENT')) = (delivered_at IS NULL AND read_at IS NULL));
DROP INDEX notifications_unread;
DROP INDEX notifications_undelivered;
CREATE INDEX notifications_unread ON notifications (customer_id, id DESC) WHERE read_at IS NULL;
CREATE INDEX notifications_undelivered ON notifications (customer_id, id)
    WHERE delivered_at IS NULL AND read_at IS NULL;
-- Room on each page for the updated row version, which HOT needs.
ALTER TABLE notifications SET (fillfactor = 80);
