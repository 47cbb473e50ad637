-- One order's SQL through the whole flow, as the services run it
-- (pgbench script; one "transaction" of pgbench = one order = 5 commits):
--   1. orders POST /orders: insert the order and its OrderPlaced outbox row
--   2. orders forwarder: lock a batch of outbox rows (SKIP LOCKED), delete them
--   3. invoices handler: insert the invoice and its InvoiceIssued outbox row
--   4. invoices forwarder: the same as 2 on its outbox
--   5. orders handler: lock the order, mark it invoiced
-- The forwarders commit without waiting for the WAL flush, as their pool
-- does (pkg/database.OpenRelay): a lost delete only republishes.
-- The forwarders' batches hold up to 16 rows (OUTBOX_BATCH_SIZE); here each
-- order runs one forwarding transaction, which drains the outbox as fast as
-- it fills, as the real forwarders do.
\set amount random(100, 100000)
\set cust random(1, 1000)
\set o random(1, 281474976710655)
\set i random(1, 281474976710655)
BEGIN;
INSERT INTO orders (id, customer_id, amount, currency, status, created_at, updated_at)
  VALUES (('00000000-0000-4000-8000-' || lpad(to_hex(:o), 12, '0'))::uuid, 'load-' || :cust, :amount, 'EUR', 'pending', now(), now())
  ON CONFLICT (idempotency_key) DO NOTHING;
INSERT INTO outbox_orders (uuid, payload, metadata) VALUES (gen_random_uuid()::text,
  json_build_object('uuid', gen_random_uuid()::text, 'payload', json_build_object('event_id', gen_random_uuid()::text, 'order_id', ('00000000-0000-4000-8000-' || lpad(to_hex(:o), 12, '0'))::uuid, 'customer_id', 'load-' || :cust, 'amount', :amount, 'currency', 'EUR', 'placed_at', now())),
  json_build_object('name', 'OrderPlaced', 'correlation_id', gen_random_uuid()::text, 'traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'));
COMMIT;
BEGIN ISOLATION LEVEL READ COMMITTED;
SET LOCAL synchronous_commit TO off;
DELETE FROM outbox_orders WHERE "offset" = ANY (ARRAY(
  SELECT "offset" FROM outbox_orders WHERE acked = false ORDER BY "offset" LIMIT 16 FOR UPDATE SKIP LOCKED));
COMMIT;
BEGIN;
INSERT INTO invoices (id, order_id, customer_id, amount, currency, issued_at)
  VALUES (('00000000-0000-4000-9000-' || lpad(to_hex(:i), 12, '0'))::uuid, ('00000000-0000-4000-8000-' || lpad(to_hex(:o), 12, '0'))::uuid, 'load-' || :cust, :amount, 'EUR', now()) ON CONFLICT (order_id) DO NOTHING;
INSERT INTO outbox_invoices (uuid, payload, metadata) VALUES (gen_random_uuid()::text,
  json_build_object('uuid', gen_random_uuid()::text, 'payload', json_build_object('event_id', gen_random_uuid()::text, 'invoice_id', ('00000000-0000-4000-9000-' || lpad(to_hex(:i), 12, '0'))::uuid, 'order_id', ('00000000-0000-4000-8000-' || lpad(to_hex(:o), 12, '0'))::uuid, 'amount', :amount, 'currency', 'EUR', 'issued_at', now())),
  json_build_object('name', 'InvoiceIssued', 'correlation_id', gen_random_uuid()::text));
COMMIT;
BEGIN ISOLATION LEVEL READ COMMITTED;
SET LOCAL synchronous_commit TO off;
DELETE FROM outbox_invoices WHERE "offset" = ANY (ARRAY(
  SELECT "offset" FROM outbox_invoices WHERE acked = false ORDER BY "offset" LIMIT 16 FOR UPDATE SKIP LOCKED));
COMMIT;
BEGIN;
SELECT status FROM orders WHERE id = ('00000000-0000-4000-8000-' || lpad(to_hex(:o), 12, '0'))::uuid FOR UPDATE;
UPDATE orders SET status = 'invoiced', invoice_id = ('00000000-0000-4000-9000-' || lpad(to_hex(:i), 12, '0'))::uuid, updated_at = now() WHERE id = ('00000000-0000-4000-8000-' || lpad(to_hex(:o), 12, '0'))::uuid;
COMMIT;
-- The forwarders read at READ COMMITTED (see skipLockedSchema in
-- pkg/messaging/outbox.go); --max-tries stays in the task as a safety net.
