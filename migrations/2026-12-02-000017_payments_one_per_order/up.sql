-- At most one online payment and one cash-on-delivery payment per order. Two runs of one saga
-- step at once (a delivery reclaimed while its first run still went on) could each open the
-- order's payment: both read "none" in the same instant and both inserted one. The provider
-- charged once under the order's key, the second payment was then refused that charge's
-- reference and recorded FAILED, and that could cancel a paid order. With these indexes the
-- later insert waits for the first and finds it instead.
-- The build fails if an order already has two payments of one kind (left by that race): look
-- them up with `SELECT order_id FROM payments GROUP BY order_id, provider = 'cash_on_delivery'
-- HAVING count(*) > 1`, settle them by hand, and migrate again.
SET LOCAL lock_timeout = '10s';
CREATE UNIQUE INDEX payments_order_online_idx ON payments (order_id) WHERE provider <> 'cash_on_delivery';
CREATE UNIQUE INDEX payments_order_cash_idx ON payments (order_id) WHERE provider = 'cash_on_delivery';
