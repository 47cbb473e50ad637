-- Runs once, when the postgres container starts on an empty data volume
-- (compose.yml mounts it into /docker-entrypoint-initdb.d). Each service owns
-- its database; they share nothing else. The services would also create
-- their database when missing (DATABASE_CREATE), but the stack should not
-- depend on a service having the right to.
CREATE DATABASE orders;
CREATE DATABASE invoices;
