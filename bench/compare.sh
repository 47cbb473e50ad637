#!/usr/bin/env bash
# Configurations compared in alternated rounds, as docs/performance.md
# reports them. A configuration is NAME=[BIN_DIR][,KEY=VALUE…]: the services
# built from this checkout (no BIN_DIR) or found in BIN_DIR (another commit's
# `go build -o BIN_DIR/orders ./apps/orders`, and invoices), with the
# settings given. Rounds run every configuration in turn, reversed every
# other round (A B C, C B A, …), since the machine's speed drifts.
#
# Each configuration in each round is two fresh stacks (bench/stack.sh, each
# after a 3 s warm-up at 400 orders/s): latency, an open loop at RATE
# (400) orders/s for DURATION (15s); saturation, a closed loop of 32 workers
# for DURATION. One line per configuration and round:
#
#   name round invoiced/s accepted/s post_p99_ms lag_p99_ms cpu_ms_per_order
#        rabbitmq_ms_at_rate postgres_ms_at_rate services_ms_at_rate
#
# invoiced/s and accepted/s are the saturation run's, the two p99s (POST
# /orders, placed → invoiced) the latency run's, CPU per order the
# machine's busy time per order at saturation (loadgen's host figures).
# The last three are CPU milliseconds per order during the latency run, at
# its fixed rate: RabbitMQ's (beam.smp), PostgreSQL's, and the two services'
# together; at a fixed rate they vary less from round to round than
# throughput does.
#
#   bench/compare.sh 2 before=/tmp/bin-old after= after-nogc=,GROUP_COMMIT=false
#
# A broker setting is measured on nodes of their own (bench/stack.sh,
# BENCH_RABBITMQ_CONF; lines separated by ";", no spaces):
#
#   bench/compare.sh 2 node=,BENCH_RABBITMQ_CONF= seg=,BENCH_RABBITMQ_CONF=raft.segment_max_entries=32768
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/alternate.sh
source bench/alternate.sh
rounds=${1:?rounds}
shift
[ $# -gt 0 ] || { echo "usage: bench/compare.sh ROUNDS NAME=[BIN_DIR][,KEY=VALUE…]…" >&2; exit 2; }
RATE=${RATE:-400} DURATION=${DURATION:-15s}
# per_order NAME…: the expression for those processes' CPU milliseconds per
# order at the latency run's fixed rate.
per_order() {
	local names
	names=$(printf "'%s'," "$@")
	echo "sum(p['cores'] for p in host_cpu['by_process'] if p['name'] in ($names))*1000/accepted_per_s"
}
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))' "$@"; }
out=$(mktemp -d)
one() { # one NAME SPEC ROUND
	local name=$1 round=$3 bin settings
	IFS=, read -r bin settings <<<"$2,"
	# shellcheck disable=SC2086 # settings are KEY=VALUE words
	env ${settings//,/ } BENCH_BIN="$bin" BENCH_WARMUP=3s bash bench/stack.sh \
		--rate "$RATE" --duration "$DURATION" --progress 0 --json >"$out/lat.json" 2>/dev/null
	# shellcheck disable=SC2086
	env ${settings//,/ } BENCH_BIN="$bin" BENCH_WARMUP=3s bash bench/stack.sh \
		--rate 0 --concurrency 32 --duration "$DURATION" --progress 0 --json >"$out/sat.json" 2>/dev/null
	printf '%s %d %.0f %.0f %.1f %.1f %.2f %.3f %.3f %.3f\n' "$name" "$round" \
		"$(field "$out/sat.json" invoiced_per_s)" "$(field "$out/sat.json" accepted_per_s)" \
		"$(field "$out/lat.json" http_p99_ms)" "$(field "$out/lat.json" e2e_p99_ms)" \
		"$(field "$out/sat.json" "host_cpu['ms_per_order']")" \
		"$(field "$out/lat.json" "$(per_order beam.smp)")" "$(field "$out/lat.json" "$(per_order postgres)")" \
		"$(field "$out/lat.json" "$(per_order orders invoices)")"
}
echo "# $(date -u +%FT%TZ) $(nproc) cores, $rounds rounds, latency at $RATE/s, saturation c32, $DURATION each"
echo "name round invoiced/s accepted/s post_p99_ms lag_p99_ms cpu_ms_per_order rabbitmq_ms_at_rate postgres_ms_at_rate services_ms_at_rate"
alternate "$rounds" one "$@"
