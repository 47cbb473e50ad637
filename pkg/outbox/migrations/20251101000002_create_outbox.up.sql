-- The transactional outbox, in the layout watermill-sql's
-- PostgreSQLQueueSchema uses (outbox.TableDDL). Rows live here from the
-- commit of the write that appended them until the forwarder has RabbitMQ's
-- confirm. Every service that uses the outbox applies this migration with
-- its own (outbox.Migrations).
CREATE TABLE IF NOT EXISTS "watermill_outbox" (
    "offset"     BIGSERIAL PRIMARY KEY,
    "uuid"       VARCHAR(36) NOT NULL,
    "payload"    JSON DEFAULT NULL,
    "metadata"   JSON DEFAULT NULL,
    "acked"      BOOLEAN NOT NULL DEFAULT FALSE,
    "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);
