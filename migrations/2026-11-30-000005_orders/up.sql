-- Orders: lines with price snapshots, the shipping address as it was, the timeline of every
-- step, and what the checkout saga needs (cart, payment token).
CREATE TABLE orders (
    id                   UUID PRIMARY KEY,
    customer_id          UUID NOT NULL REFERENCES customers (id),
    status               TEXT NOT NULL CHECK (status IN ('PENDING_PAYMENT', 'PENDING_CONFIRMATION', 'CONFIRMED',
                                                         'PROCESSING', 'SHIPPED', 'DELIVERED', 'CANCELLED', 'REFUNDED')),
    payment_status       TEXT NOT NULL,
    payment_method       TEXT NOT NULL CHECK (payment_method IN ('CREDIT_CARD', 'DEBIT_CARD', 'PAYPAL', 'CASH_ON_DELIVERY')),
    subtotal             BIGINT NOT NULL CHECK (subtotal >= 0),
    shipping_cost        BIGINT NOT NULL CHECK (shipping_cost >= 0),
    total                BIGINT NOT NULL CHECK (total >= 0),
    currency             CHAR(3) NOT NULL,
    shipping_address     JSONB NOT NULL,
    customer_notes       TEXT NULL CHECK (customer_notes IS NULL OR length(customer_notes) <= 1000),
    cancellation_reason  TEXT NULL,
    timeline             JSONB NOT NULL,
    cart_id              UUID NOT NULL,
    payment_token        TEXT NULL,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL
);

CREATE INDEX orders_customer_idx ON orders (customer_id, created_at DESC, id DESC);
CREATE INDEX orders_created_idx ON orders (created_at DESC, id DESC);
CREATE INDEX orders_open_idx ON orders (status, created_at) WHERE status IN ('PENDING_PAYMENT', 'PENDING_CONFIRMATION');

CREATE TABLE order_lines (
    order_id    UUID NOT NULL REFERENCES orders (id),
    position    INTEGER NOT NULL,
    product_id  UUID NOT NULL,
    sku         TEXT NOT NULL,
    name        TEXT NOT NULL,
    unit_price  BIGINT NOT NULL CHECK (unit_price >= 0),
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    line_total  BIGINT NOT NULL CHECK (line_total >= 0),
    PRIMARY KEY (order_id, position)
);
