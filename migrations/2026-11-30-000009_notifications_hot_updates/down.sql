ALTER TABLE notifications RESET (fillfactor);
DROP INDEX notifications_undelivered;
DROP INDEX notifications_unread;
CREATE INDEX notifications_unread ON notifications (customer_id, id DESC) WHERE status <> 'READ';
CREATE INDEX notifications_undelivered ON notifications (customer_id, id) WHERE status IN ('PENDING', 'SENT');
ALTER TABLE notifications DROP CONSTRAINT notifications_undelivered_has_no_time;
