ALTER TABLE notifications SET (fillfactor = 80);
CREATE INDEX notifications_undelivered ON notifications (customer_id, id)
    WHERE delivered_at IS NULL AND read_at IS NULL;
CREATE INDEX stock_levels_low_idx ON stock_levels ((on_hand - reserved), product_id);
