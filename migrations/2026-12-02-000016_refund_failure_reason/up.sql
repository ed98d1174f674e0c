-- Why the provider refused a refund (FAILED), as the provider said it, so that a cancelled
-- order's timeline and support see the provider's reason whichever of the compensation and the
-- refund's job learns of the refusal first. A new column without a default: no rewrite, no scan.
-- Every existing row holds NULL, so the length check is added NOT VALID (new writes are checked;
-- there is nothing old to validate). Binaries from before this migration neither read nor write
-- the column; binaries from after it need it: migrate before starting them.
SET LOCAL lock_timeout = '10s';
ALTER TABLE refunds ADD COLUMN failure_reason TEXT NULL;
ALTER TABLE refunds ADD CONSTRAINT refunds_failure_reason_length
    CHECK (failure_reason IS NULL OR length(failure_reason) <= 500) NOT VALID;
