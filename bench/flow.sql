-- One order's SQL through the whole flow, as the services run it for an
-- order that has a transaction to itself (no group commit: the services
-- send the same statements with longer arrays when calls share a
-- transaction). One pgbench "transaction" = one order = 5 commits:
--   1. orders POST /orders: insert the order and its OrderPlaced outbox row,
--      one statement (the outbox INSERT in a WITH clause: outbox.InsertWithEvents)
--   2. orders forwarder: lock a batch of outbox rows (SKIP LOCKED), delete them
--   3. invoices handler: insert the invoice and its InvoiceIssued outbox row,
--      one statement as in 1
--   4. invoices forwarder: the same as 2 on its outbox
--   5. orders handler: mark the order invoiced (one statement)
-- The forwarders commit without waiting for the WAL flush, as their pool
-- does (pkg/database.OpenRelay): a lost delete only republishes.
-- The forwarders' batches hold up to 16 rows (OUTBOX_BATCH_SIZE); here each
-- order runs one forwarding transaction, which drains the outbox as fast as
-- it fills, as the real forwarders do at light load. Like watermill-sql's
-- subscriber, pgbench sends a forwarding transaction's statements one at a
-- time (BEGIN, the SELECT, the DELETE, COMMIT).
\set amount random(100, 100000)
\set cust random(1, 1000)
\set o random(1, 281474976710655)
\set i random(1, 281474976710655)
WITH outbox AS (INSERT INTO outbox_orders (uuid, payload, metadata) VALUES (gen_random_uuid()::text,
  json_build_object('uuid', gen_random_uuid()::text, 'payload', json_build_object('event_id', gen_random_uuid()::text, 'order_id', ('00000000-0000-4000-8000-' || lpad(to_hex(:o), 12, '0'))::uuid, 'customer_id', 'load-' || :cust, 'amount', :amount, 'currency', 'EUR', 'placed_at', now())),
  json_build_object('name', 'OrderPlaced', 'correlation_id', gen_random_uuid()::text, 'traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')))
INSERT INTO orders (id, customer_id, amount, currency, status, idempotency_key, request_hash, created_at, updated_at)
  SELECT id::uuid, customer_id, amount, currency, status, NULLIF(idempotency_key, ''), NULLIF(request_hash, ''), created_at, updated_at
  FROM unnest(ARRAY['00000000-0000-4000-8000-' || lpad(to_hex(:o), 12, '0')], ARRAY['load-' || :cust], ARRAY[:amount::bigint],
              ARRAY['EUR'], ARRAY['pending'], ARRAY[''], ARRAY[''], ARRAY[now()], ARRAY[now()])
    AS t(id, customer_id, amount, currency, status, idempotency_key, request_hash, created_at, updated_at);
BEGIN ISOLATION LEVEL READ COMMITTED;
SET LOCAL synchronous_commit TO off;
DELETE FROM outbox_orders WHERE "offset" = ANY (ARRAY(
  SELECT "offset" FROM outbox_orders WHERE acked = false ORDER BY "offset" LIMIT 4 FOR UPDATE SKIP LOCKED));
COMMIT;
WITH outbox AS (INSERT INTO outbox_invoices (uuid, payload, metadata) VALUES (gen_random_uuid()::text,
  json_build_object('uuid', gen_random_uuid()::text, 'payload', json_build_object('event_id', gen_random_uuid()::text, 'invoice_id', ('00000000-0000-4000-9000-' || lpad(to_hex(:i), 12, '0'))::uuid, 'order_id', ('00000000-0000-4000-8000-' || lpad(to_hex(:o), 12, '0'))::uuid, 'amount', :amount, 'currency', 'EUR', 'issued_at', now())),
  json_build_object('name', 'InvoiceIssued', 'correlation_id', gen_random_uuid()::text)))
INSERT INTO invoices (id, order_id, customer_id, amount, currency, issued_at)
  SELECT id::uuid, order_id::uuid, customer_id, amount, currency, issued_at
  FROM unnest(ARRAY['00000000-0000-4000-9000-' || lpad(to_hex(:i), 12, '0')], ARRAY['00000000-0000-4000-8000-' || lpad(to_hex(:o), 12, '0')],
              ARRAY['load-' || :cust], ARRAY[:amount::bigint], ARRAY['EUR'], ARRAY[now()])
    AS t(id, order_id, customer_id, amount, currency, issued_at);
BEGIN ISOLATION LEVEL READ COMMITTED;
SET LOCAL synchronous_commit TO off;
DELETE FROM outbox_invoices WHERE "offset" = ANY (ARRAY(
  SELECT "offset" FROM outbox_invoices WHERE acked = false ORDER BY "offset" LIMIT 4 FOR UPDATE SKIP LOCKED));
COMMIT;
UPDATE orders AS o SET status = 'invoiced', invoice_id = t.invoice_id, updated_at = t.at
  FROM unnest(ARRAY[('00000000-0000-4000-8000-' || lpad(to_hex(:o), 12, '0'))::uuid], ARRAY[('00000000-0000-4000-9000-' || lpad(to_hex(:i), 12, '0'))::uuid], ARRAY[now()])
    AS t(id, invoice_id, at)
  WHERE o.id = t.id AND o.status = 'pending'
  RETURNING o.id, o.created_at;
-- The forwarders read at READ COMMITTED (see skipLockedSchema in
-- pkg/outbox/forwarder.go); --max-tries stays in the task as a safety net.
