DROP INDEX payments_order_cash_idx;
DROP INDEX payments_order_online_idx;
