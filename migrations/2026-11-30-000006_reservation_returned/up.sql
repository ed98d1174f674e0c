-- A confirmed reservation whose order was cancelled before shipping: its units go back on hand.
ALTER TABLE reservations DROP CONSTRAINT reservations_status_check;
ALTER TABLE reservations ADD CONSTRAINT reservations_status_check
    CHECK (status IN ('ACTIVE', 'CONFIRMED', 'RELEASED', 'EXPIRED', 'RETURNED'));
ALTER TABLE stock_movements DROP CONSTRAINT stock_movements_kind_check;
ALTER TABLE stock_movements ADD CONSTRAINT stock_movements_kind_check
    CHECK (kind IN ('ADJUST_ADD', 'ADJUST_SUBTRACT', 'ADJUST_SET', 'INITIAL', 'RESERVE', 'CONFIRM', 'RELEASE',
                    'EXPIRE', 'RETURN'));
