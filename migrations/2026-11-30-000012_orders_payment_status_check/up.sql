-- An order's payment status is one of the payment statuses (PaymentStatus in the payments
-- context), as its status is one of OrderStatus: the database refuses anything else. Added
-- NOT VALID (new writes are checked at once, without scanning), then validated by the next
-- migration in a transaction of its own, which scans the existing orders without blocking
-- writes. Adding it takes a brief exclusive lock on orders: behind a long transaction the
-- migration fails after 10 s (run it again later) instead of holding every order query up.
SET LOCAL lock_timeout = '10s';
ALTER TABLE orders ADD CONSTRAINT orders_payment_status_check CHECK (payment_status IN (
    'PENDING', 'AUTHORIZED', 'PAID', 'FAILED', 'REFUNDED', 'PARTIALLY_REFUNDED', 'COLLECT_ON_DELIVERY'
)) NOT VALID;
