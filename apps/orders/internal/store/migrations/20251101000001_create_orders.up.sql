CREATE TABLE IF NOT EXISTS orders (
    id               uuid PRIMARY KEY,
    customer_id      text        NOT NULL,
    amount           bigint      NOT NULL CHECK (amount > 0),
    currency         char(3)     NOT NULL,
    status           text        NOT NULL CHECK (status IN ('pending', 'invoiced')),
    invoice_id       uuid,
    -- Idempotency-Key of the request that created the order. The unique
    -- constraint, not a check before the insert, makes concurrent retries of
    -- one request create one order.
    idempotency_key  text UNIQUE,
    request_hash     text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

--bun:split

-- Keyset pagination of one customer's orders, newest first (ids are UUIDv7,
-- so they sort by creation time).
CREATE INDEX IF NOT EXISTS orders_customer_id_id_idx ON orders (customer_id, id DESC);
