DROP TABLE payment_events;
DROP TABLE refunds;
DROP TABLE payments;
