CREATE TABLE IF NOT EXISTS invoices (
    id           uuid PRIMARY KEY,
    -- One invoice per order: a redelivered OrderPlaced hits this constraint
    -- and inserts nothing. There is no foreign key: orders live in another
    -- service's database.
    order_id     uuid        NOT NULL UNIQUE,
    customer_id  text        NOT NULL,
    amount       bigint      NOT NULL CHECK (amount > 0),
    currency     char(3)     NOT NULL,
    issued_at    timestamptz NOT NULL
);
