ALTER TABLE orders DROP CONSTRAINT orders_payment_status_check;
