-- Payments, their refunds, and the provider events already received (each applied once).
CREATE TABLE payments (
    id                 UUID PRIMARY KEY,
    order_id           UUID NOT NULL,
    customer_id        UUID NOT NULL REFERENCES customers (id),
    provider           TEXT NOT NULL CHECK (provider IN ('simulated', 'stripe', 'paypal', 'cash_on_delivery')),
    provider_reference TEXT NULL,
    amount             BIGINT NOT NULL CHECK (amount >= 0),
    currency           CHAR(3) NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('PENDING', 'AUTHORIZED', 'PAID', 'FAILED', 'REFUNDED',
                                                       'PARTIALLY_REFUNDED', 'COLLECT_ON_DELIVERY')),
    -- Never more than was paid, whatever runs concurrently.
    refunded_amount    BIGINT NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0 AND refunded_amount <= amount),
    failure_reason     TEXT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);

CREATE INDEX payments_order_idx ON payments (order_id, created_at);
CREATE UNIQUE INDEX payments_provider_reference_idx ON payments (provider, provider_reference)
    WHERE provider_reference IS NOT NULL;

CREATE TABLE refunds (
    id                 UUID PRIMARY KEY,
    payment_id         UUID NOT NULL REFERENCES payments (id),
    amount             BIGINT NOT NULL CHECK (amount > 0),
    currency           CHAR(3) NOT NULL,
    reason             TEXT NULL CHECK (reason IS NULL OR length(reason) <= 500),
    provider_reference TEXT NULL,
    status             TEXT NOT NULL CHECK (status IN ('REQUESTED', 'PENDING', 'SUCCEEDED', 'FAILED')),
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);

CREATE INDEX refunds_payment_idx ON refunds (payment_id, created_at);

CREATE TABLE payment_events (
    provider      TEXT NOT NULL,
    event_id      TEXT NOT NULL CHECK (length(event_id) BETWEEN 1 AND 255),
    event_type    TEXT NOT NULL,
    reference     TEXT NULL,
    received_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (provider, event_id)
);
