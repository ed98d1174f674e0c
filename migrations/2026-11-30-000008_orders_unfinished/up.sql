-- Orders whose checkout saga has work left, for the worker's resume sweep (a job the queue lost
-- is offered again). The predicate names the saga's timeline notes; it matches the sweep's query.
CREATE INDEX orders_unfinished_idx ON orders (updated_at, id)
WHERE status = 'PENDING_PAYMENT'
   OR (status = 'PENDING_CONFIRMATION' AND NOT timeline @> '[{"note": "stock reserved"}]'::jsonb)
   OR (status = 'CONFIRMED' AND NOT timeline @> '[{"note": "stock confirmed, cart cleared"}]'::jsonb)
   OR (status = 'CANCELLED' AND NOT timeline @> '[{"note": "refund and stock settled"}]'::jsonb);
