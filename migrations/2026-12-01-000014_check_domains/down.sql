ALTER TABLE orders
    ALTER COLUMN status TYPE TEXT,
    ALTER COLUMN payment_status TYPE TEXT,
    ALTER COLUMN payment_method TYPE TEXT,
    ALTER COLUMN subtotal TYPE BIGINT,
    ALTER COLUMN shipping_cost TYPE BIGINT,
    ALTER COLUMN total TYPE BIGINT,
    ALTER COLUMN customer_notes TYPE TEXT,
    ADD CONSTRAINT orders_status_check CHECK (status IN ('PENDING_PAYMENT', 'PENDING_CONFIRMATION', 'CONFIRMED',
        'PROCESSING', 'SHIPPED', 'DELIVERED', 'CANCELLED', 'REFUNDED')),
    ADD CONSTRAINT orders_payment_status_check CHECK (payment_status IN ('PENDING', 'AUTHORIZED', 'PAID', 'FAILED',
        'REFUNDED', 'PARTIALLY_REFUNDED', 'COLLECT_ON_DELIVERY')),
    ADD CONSTRAINT orders_payment_method_check CHECK (payment_method IN ('CREDIT_CARD', 'DEBIT_CARD', 'PAYPAL',
        'CASH_ON_DELIVERY')),
    ADD CONSTRAINT orders_subtotal_check CHECK (subtotal >= 0),
    ADD CONSTRAINT orders_shipping_cost_check CHECK (shipping_cost >= 0),
    ADD CONSTRAINT orders_total_check CHECK (total >= 0),
    ADD CONSTRAINT orders_customer_notes_check CHECK (customer_notes IS NULL OR length(customer_notes) <= 1000);
ALTER TABLE order_lines
    ALTER COLUMN unit_price TYPE BIGINT,
    ALTER COLUMN quantity TYPE INTEGER,
    ALTER COLUMN line_total TYPE BIGINT,
    ADD CONSTRAINT order_lines_unit_price_check CHECK (unit_price >= 0),
    ADD CONSTRAINT order_lines_quantity_check CHECK (quantity > 0),
    ADD CONSTRAINT order_lines_line_total_check CHECK (line_total >= 0);
ALTER TABLE payments
    DROP CONSTRAINT payments_refunded_within_amount,
    ALTER COLUMN provider TYPE TEXT,
    ALTER COLUMN amount TYPE BIGINT,
    ALTER COLUMN status TYPE TEXT,
    ALTER COLUMN refunded_amount TYPE BIGINT,
    ADD CONSTRAINT payments_provider_check CHECK (provider IN ('simulated', 'stripe', 'paypal', 'cash_on_delivery')),
    ADD CONSTRAINT payments_amount_check CHECK (amount >= 0),
    ADD CONSTRAINT payments_status_check CHECK (status IN ('PENDING', 'AUTHORIZED', 'PAID', 'FAILED', 'REFUNDED',
        'PARTIALLY_REFUNDED', 'COLLECT_ON_DELIVERY')),
    ADD CONSTRAINT payments_check CHECK (refunded_amount >= 0 AND refunded_amount <= amount);
ALTER TABLE reservations
    ALTER COLUMN status TYPE TEXT,
    ADD CONSTRAINT reservations_status_check
        CHECK (status IN ('ACTIVE', 'CONFIRMED', 'RELEASED', 'EXPIRED', 'RETURNED'));
ALTER TABLE reservation_lines
    ALTER COLUMN quantity TYPE INTEGER,
    ADD CONSTRAINT reservation_lines_quantity_check CHECK (quantity > 0);
ALTER TABLE stock_levels
    ALTER COLUMN on_hand TYPE INTEGER,
    ALTER COLUMN reserved TYPE INTEGER,
    ALTER COLUMN low_stock_threshold TYPE INTEGER,
    ADD CONSTRAINT stock_levels_on_hand_check CHECK (on_hand >= 0),
    ADD CONSTRAINT stock_levels_reserved_check CHECK (reserved >= 0),
    ADD CONSTRAINT stock_levels_low_stock_threshold_check CHECK (low_stock_threshold >= 0);
ALTER TABLE stock_movements
    ALTER COLUMN kind TYPE TEXT,
    ADD CONSTRAINT stock_movements_kind_check CHECK (kind IN ('ADJUST_ADD', 'ADJUST_SUBTRACT', 'ADJUST_SET',
        'INITIAL', 'RESERVE', 'CONFIRM', 'RELEASE', 'EXPIRE', 'RETURN'));
ALTER TABLE outbox
    ALTER COLUMN id TYPE TEXT,
    ALTER COLUMN max_attempts TYPE INTEGER,
    ADD CONSTRAINT outbox_id_check CHECK (length(id) BETWEEN 1 AND 200),
    ADD CONSTRAINT outbox_max_attempts_check CHECK (max_attempts > 0);
ALTER TABLE notifications
    ALTER COLUMN kind TYPE TEXT,
    ALTER COLUMN status TYPE TEXT,
    ADD CONSTRAINT notifications_kind_check CHECK (kind IN ('ORDER_CONFIRMED', 'ORDER_CANCELLED', 'PAYMENT_RECEIVED',
        'ORDER_SHIPPED', 'ORDER_DELIVERED', 'REFUND_ISSUED', 'COD_ORDER_PENDING', 'LOW_STOCK')),
    ADD CONSTRAINT notifications_status_check CHECK (status IN ('PENDING', 'SENT', 'DELIVERED', 'READ'));
DROP DOMAIN order_status, payment_status, payment_method, payment_provider, reservation_status, stock_movement_kind,
    notification_kind, notification_status, job_id, order_notes, minor_units, stock_count,
    positive_count;
