#!/usr/bin/env bash
# The PostgreSQL ceiling for the flow's SQL, as docs/performance.md reports
# it: a fresh database (orderflow_bench) with the services' tables
# (bench/schema.sql), then pgbench running one order's SQL of the whole flow
# (bench/flow.sql) from 16 clients. Arguments go to pgbench after the
# defaults, so they override them:
#
#   bench/ceiling.sh              # 30 s
#   bench/ceiling.sh -T 15        # 15 s (progress lines go to stderr)
#
# pgbench's summary ends with "tps = N (without initial connection time)":
# N orders a second. Needs pgbench and PostgreSQL on 127.0.0.1:5432
# (BENCH_POSTGRES_URL, a server URL without a database as for
# bench/stack.sh, points elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."

PG=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
BENCHURL="$PG/orderflow_bench?sslmode=disable"

psql "$PG/postgres?sslmode=disable" -qc "DROP DATABASE IF EXISTS orderflow_bench WITH (FORCE)" -c "CREATE DATABASE orderflow_bench"
psql "$BENCHURL" -q -v ON_ERROR_STOP=1 -f bench/schema.sql
pgbench -n -f bench/flow.sql --max-tries=10 -c 16 -j 2 -T 30 -P 5 "$@" "$BENCHURL"
