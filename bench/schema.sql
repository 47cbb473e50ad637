-- The tables of both services, in one database, for the pgbench ceiling.
-- They mirror apps/*/internal/store/migrations (same types, constraints and
-- indexes) and pkg/messaging.OutboxTableDDL.
DROP TABLE IF EXISTS orders, invoices, outbox_orders, outbox_invoices;
CREATE TABLE orders (
    id uuid PRIMARY KEY, customer_id text NOT NULL, amount bigint NOT NULL CHECK (amount > 0),
    currency char(3) NOT NULL, status text NOT NULL CHECK (status IN ('pending', 'invoiced')),
    invoice_id uuid, idempotency_key text, request_hash text,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
    UNIQUE (customer_id, idempotency_key));
CREATE INDEX orders_customer_id_id_idx ON orders (customer_id, id DESC);
CREATE TABLE invoices (
    id uuid PRIMARY KEY, order_id uuid NOT NULL UNIQUE, customer_id text NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0), currency char(3) NOT NULL, issued_at timestamptz NOT NULL);
CREATE TABLE outbox_orders (
    "offset" BIGSERIAL PRIMARY KEY, "uuid" VARCHAR(36) NOT NULL, "payload" JSON, "metadata" JSON,
    "acked" BOOLEAN NOT NULL DEFAULT FALSE, "created_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE outbox_invoices (LIKE outbox_orders INCLUDING ALL);
