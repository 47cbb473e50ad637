-- The transactional outbox, in the layout watermill-sql's
-- PostgreSQLQueueSchema uses (pkg/messaging.OutboxTableDDL). Rows live here
-- from the order's commit until the forwarder has RabbitMQ's confirm.
CREATE TABLE IF NOT EXISTS "watermill_outbox" (
    "offset"     BIGSERIAL PRIMARY KEY,
    "uuid"       VARCHAR(36) NOT NULL,
    "payload"    JSON DEFAULT NULL,
    "metadata"   JSON DEFAULT NULL,
    "acked"      BOOLEAN NOT NULL DEFAULT FALSE,
    "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);
