-- Every reservation and confirmation updates its products' stock rows, the hottest rows there
-- are. The index on (on_hand - reserved) served no query (the low-stock list compares with each
-- row's own threshold, the in-stock filter reads a COALESCE of it) and made each of those updates
-- a non-HOT one that also wrote the index: dropped, the updates are HOT.
DROP INDEX stock_levels_low_idx;

-- A connected customer acknowledges each notification as it arrives: PENDING → DELIVERED is the
-- write every notification gets. With no index naming delivered_at it is a HOT update; the
-- backlog sent on connect (undelivered, hence unread) reads through `notifications_unread`.
DROP INDEX notifications_undelivered;
ALTER TABLE notifications SET (fillfactor = 50);
