ALTER TABLE orders VALIDATE CONSTRAINT orders_payment_status_check;
