#!/usr/bin/env bash
# One end-to-end load run, as docs/performance.md reports them: both services
# built from this checkout, run as plain processes against fresh databases
# (bench_orders, bench_invoices) and a fresh RabbitMQ vhost (bench), traces
# exported over OTLP/HTTP to loadgen's discarding receiver; then loadgen with
# the arguments given; then the services stop. CPU seconds per process over the
# run are printed at the end.
#
#   bench/stack.sh --rate 150 --duration 20s --json
#   bench/stack.sh idle 30s      # no load: what the services cost at rest
#
# Service settings come from the environment (HANDLER_CONCURRENCY=1
# GROUP_COMMIT=false bench/stack.sh …). BENCH_BIN=dir runs the orders and
# invoices binaries found there instead of building this checkout's (another
# commit's, to compare two: see bench/compare.sh). BENCH_WARMUP=3s first
# sends BENCH_WARMUP_RATE (400) orders/s for that long, not counted.
#
# BENCH_RABBITMQ_CONF="LINE[;LINE…]" runs the stack on a RabbitMQ node of its
# own (bench/broker.sh), started with those rabbitmq.conf lines and stopped
# at the end ("" for the node's defaults), to measure a broker setting.
#
# Needs PostgreSQL on 127.0.0.1:5432 and RabbitMQ on 127.0.0.1:5672 with the
# management plugin (:15672).
set -euo pipefail
cd "$(dirname "$0")/.."

PG=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
MGMT=${BENCH_RABBITMQ_MGMT:-http://guest:guest@127.0.0.1:15672}
OUT=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ -n "${node:-}" ]; then bench/broker.sh stop "$node"; fi
}
trap cleanup EXIT
AMQP=amqp://guest:guest@127.0.0.1:5672
if [ -n "${BENCH_RABBITMQ_CONF+set}" ]; then
	node=$(mktemp -d /tmp/bench-broker.XXXXXX)
	chmod 755 "$node"
	IFS=';' read -ra lines <<<"$BENCH_RABBITMQ_CONF"
	read -r AMQP MGMT < <(bench/broker.sh start "$node" "${lines[@]}") && [ -n "$MGMT" ] || exit 1
fi

if [ -n "${BENCH_BIN:-}" ]; then
	cp "$BENCH_BIN/orders" "$BENCH_BIN/invoices" "$OUT/"
else
	go build -o "$OUT/orders" ./apps/orders
	go build -o "$OUT/invoices" ./apps/invoices
fi
go build -o "$OUT/loadgen" ./cmd/loadgen

for db in bench_orders bench_invoices; do
	psql "$PG/postgres?sslmode=disable" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
done
curl -sf -X DELETE "$MGMT/api/vhosts/bench" >/dev/null || true
curl -sf -X PUT "$MGMT/api/vhosts/bench" >/dev/null
curl -sf -X PUT -H 'content-type: application/json' -d '{"configure":".*","write":".*","read":".*"}' \
	"$MGMT/api/permissions/bench/guest" >/dev/null

export LOG_LEVEL=${LOG_LEVEL:-warn}
if [ "${1:-}" = idle ]; then
	export OTEL_TRACES_EXPORTER=${OTEL_TRACES_EXPORTER:-none} # no loadgen, so no OTLP sink
fi
export OTEL_TRACES_EXPORTER=${OTEL_TRACES_EXPORTER:-otlp}
export OTEL_EXPORTER_OTLP_ENDPOINT=${OTEL_EXPORTER_OTLP_ENDPOINT:-http://127.0.0.1:4318}
export OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
export BROKER_URL=$AMQP/bench

# BENCH_PPROF=1 serves pprof on :6060 (orders) and :6061 (invoices).
pprof() { [ -n "${BENCH_PPROF:-}" ] && echo "127.0.0.1:$1" || echo ""; }
PPROF_ADDR=$(pprof 6060) DATABASE_URL="$PG/bench_orders?sslmode=disable" PORT=3333 "$OUT/orders" >"$OUT/orders.log" 2>&1 &
pids+=($!)
PPROF_ADDR=$(pprof 6061) DATABASE_URL="$PG/bench_invoices?sslmode=disable" PORT=3334 "$OUT/invoices" >"$OUT/invoices.log" 2>&1 &
pids+=($!)

for port in 3333 3334; do
	for _ in $(seq 1 100); do
		curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
		sleep 0.1
	done
done

cpu() { awk '{print ($14+$15)/100}' "/proc/$1/stat"; }
before=("$(cpu "${pids[0]}")" "$(cpu "${pids[1]}")")
rc=0
if [ "${1:-}" = idle ]; then
	sleep "${2:-30s}"
else
	if [ -n "${BENCH_WARMUP:-}" ]; then # not counted: connection pools and caches fill first
		"$OUT/loadgen" --broker-url "$BROKER_URL" --otlp-sink 127.0.0.1:4318 --progress 0 \
			--rate "${BENCH_WARMUP_RATE:-400}" --duration "$BENCH_WARMUP" >/dev/null || rc=$?
	fi
	"$OUT/loadgen" --broker-url "$BROKER_URL" --otlp-sink 127.0.0.1:4318 "$@" || rc=$?
fi
echo "cpu seconds during the run: orders $(echo "$(cpu "${pids[0]}") - ${before[0]}" | bc), invoices $(echo "$(cpu "${pids[1]}") - ${before[1]}" | bc)" >&2
if [ -s "$OUT/orders.log" ] || [ -s "$OUT/invoices.log" ]; then
	echo "service logs: $OUT" >&2
fi
exit $rc
