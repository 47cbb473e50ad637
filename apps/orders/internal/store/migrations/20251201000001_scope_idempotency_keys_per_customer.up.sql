-- An Idempotency-Key belongs to the customer who sent it: the same key from
-- two customers is two requests and makes two orders, and one customer can
-- neither replay nor block another's order by guessing its key. The unique
-- constraint moves from the key alone to (customer_id, idempotency_key); it
-- is still the constraint, not a check before the insert, that makes
-- concurrent retries of one request create one order.
--
-- The index is built CONCURRENTLY, so that orders keep being written while it
-- builds, and then becomes the constraint in one short ALTER TABLE that also
-- drops the old one: at no moment is a key unprotected. Every statement can
-- run again after an interrupted start (a leftover index, valid or not, is
-- dropped first; the constraint is added once).

DROP INDEX CONCURRENTLY IF EXISTS orders_customer_id_idempotency_key_idx;

--bun:split

CREATE UNIQUE INDEX CONCURRENTLY orders_customer_id_idempotency_key_idx
    ON orders (customer_id, idempotency_key);

--bun:split

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'orders'::regclass AND conname = 'orders_customer_id_idempotency_key_key') THEN
        ALTER TABLE orders
            DROP CONSTRAINT IF EXISTS orders_idempotency_key_key,
            ADD CONSTRAINT orders_customer_id_idempotency_key_key
                UNIQUE USING INDEX orders_customer_id_idempotency_key_idx;
    END IF;
END
$$;

--bun:split

-- Left over only when the constraint existed already (a start that died
-- after adding it, before recording this migration).
DROP INDEX CONCURRENTLY IF EXISTS orders_customer_id_idempotency_key_idx;
