-- Single-column CHECK constraints of the tables every checkout writes become domains.
--
-- Why: PostgreSQL reads a table's CHECK constraints from their stored text on every INSERT or
-- UPDATE statement (each statement builds them anew), while a domain's constraints are parsed
-- once per session and kept in its type cache. A checkout writes orders three times, payments
-- three times, and stock, reservations, order lines, outbox rows and notifications: parsing the
-- constraints took about a tenth of PostgreSQL's CPU in the checkout benchmark (measured by
-- dropping them; these domains win back most of it). The rules are the same as before, value for
-- value; a NULL passes a domain's check as it passed the column's.
--
-- Kept as table constraints, since they compare columns: stock reserved within on hand, a
-- payment's refunds within its amount, and the notification status against its times. A
-- notification's key keeps its own too: changing its column's type would recreate the index it
-- leads, and which of two equally cheap indexes a plan cached on an empty table picks would
-- change with it (see the batch plans' test in `pool.rs`).
--
-- Done so that no table is rewritten and no index rebuilt: each domain is created without its
-- check, the columns move to it (a change of the catalog only, under a brief exclusive lock),
-- then the check is added NOT VALID, which enforces it on every new value without scanning: the
-- rows there already passed the table checks this migration drops in the same transaction.
-- (Adding a constrained domain to a column would rewrite the table and its indexes.) Behind a
-- long transaction the migration fails after 10 s (run it again later) instead of holding every
-- query up.
--
-- Deploy: processes that ran before this migration keep prepared statements whose result types
-- it changes, which PostgreSQL then refuses ("cached plan must not change result type"): restart
-- every api and worker once it has run (a deploy of this version replaces them all).
SET LOCAL lock_timeout = '10s';

CREATE DOMAIN order_status AS TEXT;
CREATE DOMAIN payment_status AS TEXT;
CREATE DOMAIN payment_method AS TEXT;
CREATE DOMAIN payment_provider AS TEXT;
CREATE DOMAIN reservation_status AS TEXT;
CREATE DOMAIN stock_movement_kind AS TEXT;
CREATE DOMAIN notification_kind AS TEXT;
CREATE DOMAIN notification_status AS TEXT;
CREATE DOMAIN job_id AS TEXT;
CREATE DOMAIN order_notes AS TEXT;
CREATE DOMAIN minor_units AS BIGINT;
CREATE DOMAIN stock_count AS INTEGER;
CREATE DOMAIN positive_count AS INTEGER;

ALTER TABLE orders
    DROP CONSTRAINT orders_status_check,
    DROP CONSTRAINT orders_payment_status_check,
    DROP CONSTRAINT orders_payment_method_check,
    DROP CONSTRAINT orders_subtotal_check,
    DROP CONSTRAINT orders_shipping_cost_check,
    DROP CONSTRAINT orders_total_check,
    DROP CONSTRAINT orders_customer_notes_check,
    ALTER COLUMN status TYPE order_status,
    ALTER COLUMN payment_status TYPE payment_status,
    ALTER COLUMN payment_method TYPE payment_method,
    ALTER COLUMN subtotal TYPE minor_units,
    ALTER COLUMN shipping_cost TYPE minor_units,
    ALTER COLUMN total TYPE minor_units,
    ALTER COLUMN customer_notes TYPE order_notes;
ALTER TABLE order_lines
    DROP CONSTRAINT order_lines_unit_price_check,
    DROP CONSTRAINT order_lines_quantity_check,
    DROP CONSTRAINT order_lines_line_total_check,
    ALTER COLUMN unit_price TYPE minor_units,
    ALTER COLUMN quantity TYPE positive_count,
    ALTER COLUMN line_total TYPE minor_units;
ALTER TABLE payments
    DROP CONSTRAINT payments_provider_check,
    DROP CONSTRAINT payments_amount_check,
    DROP CONSTRAINT payments_status_check,
    DROP CONSTRAINT payments_check,
    ALTER COLUMN provider TYPE payment_provider,
    ALTER COLUMN amount TYPE minor_units,
    ALTER COLUMN status TYPE payment_status,
    ALTER COLUMN refunded_amount TYPE minor_units,
    ADD CONSTRAINT payments_refunded_within_amount CHECK (refunded_amount <= amount) NOT VALID;
ALTER TABLE reservations
    DROP CONSTRAINT reservations_status_check,
    ALTER COLUMN status TYPE reservation_status;
ALTER TABLE reservation_lines
    DROP CONSTRAINT reservation_lines_quantity_check,
    ALTER COLUMN quantity TYPE positive_count;
ALTER TABLE stock_levels
    DROP CONSTRAINT stock_levels_on_hand_check,
    DROP CONSTRAINT stock_levels_reserved_check,
    DROP CONSTRAINT stock_levels_low_stock_threshold_check,
    ALTER COLUMN on_hand TYPE stock_count,
    ALTER COLUMN reserved TYPE stock_count,
    ALTER COLUMN low_stock_threshold TYPE stock_count;
ALTER TABLE stock_movements
    DROP CONSTRAINT stock_movements_kind_check,
    ALTER COLUMN kind TYPE stock_movement_kind;
ALTER TABLE outbox
    DROP CONSTRAINT outbox_id_check,
    DROP CONSTRAINT outbox_max_attempts_check,
    ALTER COLUMN id TYPE job_id,
    ALTER COLUMN max_attempts TYPE positive_count;
ALTER TABLE notifications
    DROP CONSTRAINT notifications_kind_check,
    DROP CONSTRAINT notifications_status_check,
    ALTER COLUMN kind TYPE notification_kind,
    ALTER COLUMN status TYPE notification_status;

ALTER DOMAIN order_status ADD CONSTRAINT order_status_check CHECK (VALUE IN (
    'PENDING_PAYMENT', 'PENDING_CONFIRMATION', 'CONFIRMED', 'PROCESSING', 'SHIPPED', 'DELIVERED', 'CANCELLED',
    'REFUNDED')) NOT VALID;
ALTER DOMAIN payment_status ADD CONSTRAINT payment_status_check CHECK (VALUE IN (
    'PENDING', 'AUTHORIZED', 'PAID', 'FAILED', 'REFUNDED', 'PARTIALLY_REFUNDED', 'COLLECT_ON_DELIVERY')) NOT VALID;
ALTER DOMAIN payment_method ADD CONSTRAINT payment_method_check CHECK (VALUE IN ('CREDIT_CARD', 'DEBIT_CARD', 'PAYPAL', 'CASH_ON_DELIVERY')) NOT VALID;
ALTER DOMAIN payment_provider ADD CONSTRAINT payment_provider_check CHECK (VALUE IN ('simulated', 'stripe', 'paypal', 'cash_on_delivery')) NOT VALID;
ALTER DOMAIN reservation_status ADD CONSTRAINT reservation_status_check CHECK (VALUE IN ('ACTIVE', 'CONFIRMED', 'RELEASED', 'EXPIRED', 'RETURNED')) NOT VALID;
ALTER DOMAIN stock_movement_kind ADD CONSTRAINT stock_movement_kind_check CHECK (VALUE IN (
    'ADJUST_ADD', 'ADJUST_SUBTRACT', 'ADJUST_SET', 'INITIAL', 'RESERVE', 'CONFIRM', 'RELEASE', 'EXPIRE', 'RETURN')) NOT VALID;
ALTER DOMAIN notification_kind ADD CONSTRAINT notification_kind_check CHECK (VALUE IN (
    'ORDER_CONFIRMED', 'ORDER_CANCELLED', 'PAYMENT_RECEIVED', 'ORDER_SHIPPED', 'ORDER_DELIVERED', 'REFUND_ISSUED',
    'COD_ORDER_PENDING', 'LOW_STOCK')) NOT VALID;
ALTER DOMAIN notification_status ADD CONSTRAINT notification_status_check CHECK (VALUE IN ('PENDING', 'SENT', 'DELIVERED', 'READ')) NOT VALID;
ALTER DOMAIN job_id ADD CONSTRAINT job_id_check CHECK (length(VALUE) BETWEEN 1 AND 200) NOT VALID;
ALTER DOMAIN order_notes ADD CONSTRAINT order_notes_check CHECK (length(VALUE) <= 1000) NOT VALID;
ALTER DOMAIN minor_units ADD CONSTRAINT minor_units_check CHECK (VALUE >= 0) NOT VALID;
ALTER DOMAIN stock_count ADD CONSTRAINT stock_count_check CHECK (VALUE >= 0) NOT VALID;
ALTER DOMAIN positive_count ADD CONSTRAINT positive_count_check CHECK (VALUE > 0) NOT VALID;
