-- What customers and admins are told; one row per recipient and event key.
CREATE TABLE notifications (
    id UUID PRIMARY KEY,
    dedupe_key TEXT NOT NULL CHECK (length(dedupe_key) BETWEEN 1 AND 300),
    customer_id UUID NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('ORDER_CONFIRMED', 'ORDER_CANCELLED', 'PAYMENT_RECEIVED', 'ORDER_SHIPPED',
                                       'ORDER_DELIVERED', 'REFUND_ISSUED', 'COD_ORDER_PENDING', 'LOW_STOCK')),
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    data JSONB NOT NULL DEFAULT '{}'::jsonb,
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'SENT', 'DELIVERED', 'READ')),
    created_at TIMESTAMPTZ NOT NULL,
    sent_at TIMESTAMPTZ,
    delivered_at TIMESTAMPTZ,
    read_at TIMESTAMPTZ,
    CONSTRAINT notifications_once_per_recipient UNIQUE (dedupe_key, customer_id),
    CONSTRAINT notifications_read_has_time CHECK ((status = 'READ') = (read_at IS NOT NULL))
);

-- The list (newest first), the unread filter, and the backlog sent on connect.
CREATE INDEX notifications_by_customer ON notifications (customer_id, id DESC);
CREATE INDEX notifications_unread ON notifications (customer_id, id DESC) WHERE status <> 'READ';
CREATE INDEX notifications_undelivered ON notifications (customer_id, id) WHERE status IN ('PENDING', 'SENT');
