ALTER TABLE refunds DROP COLUMN failure_reason;
