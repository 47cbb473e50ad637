#!/usr/bin/env bash
# Configurations side by side with the Node.js peer, in alternated rounds, as
# docs/performance.md reports them. A configuration is
# NAME=[CHECKOUT][,KEY=VALUE…]: the services built from CHECKOUT (this one
# when empty; another commit's with `git worktree add`), with the settings
# given. Each configuration in each round is one run of
# ../shared/peer/side-by-side.sh (wrk -t2 -c32 -d20s POST /orders after a 5 s
# warm-up, OTel off; PEER_DIR, ../shared/peer by default, with its
# node-seed's dependencies installed: see its README): a peer round, then
# one of ours, so that each of our
# figures has the peer's, measured just before it, beside it. Rounds run the
# configurations in turn, reversed every other round. One line per
# configuration and round:
#
#   name round peer_invoiced/s ours_accepted/s ours_invoiced/s ratio lag_p99_ms peer_svc_ms ours_svc_ms
#
# The last two are what each system's two services spent per order (their
# CPU time from the start of the run until the last invoice, whole seconds,
# over the orders of the run).
#
#   git worktree add /tmp/before 8c933e1
#   bench/side-by-side.sh 3 before=/tmp/before after= after-w2=,OUTBOX_WORKERS=2
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/alternate.sh
source bench/alternate.sh
rounds=${1:?rounds}
shift
[ $# -gt 0 ] || { echo "usage: bench/side-by-side.sh ROUNDS NAME=[CHECKOUT][,KEY=VALUE…]…" >&2; exit 2; }
peer=${PEER_DIR:-../shared/peer}
[ -x "$peer/side-by-side.sh" ] || [ -f "$peer/side-by-side.sh" ] || { echo "no $peer/side-by-side.sh (set PEER_DIR)" >&2; exit 2; }
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" <<<"$2"; }
svc_ms() { awk -v s="$(sed -n 's/.*svc_cpu_s=\([0-9]*\).*/\1/p' <<<"$1")" -v n="$(field orders "$1")" 'BEGIN { print s * 1000 / n }'; }
echo "# $(date -u +%FT%TZ) $(nproc) cores, $rounds rounds, wrk -t2 -c32 -d20s"
echo "name round peer_invoiced/s ours_accepted/s ours_invoiced/s ratio lag_p99_ms peer_svc_ms ours_svc_ms"
one() { # one NAME SPEC ROUND
	local name=$1 round=$3 checkout settings p o pi oi oa
	IFS=, read -r checkout settings <<<"$2,"
	# shellcheck disable=SC2086 # settings are KEY=VALUE words
	if ! env ${settings//,/ } bash "$peer/side-by-side.sh" "${checkout:-.}" 1 32 20 >"$out" 2>"$err"; then
		echo "$name: $peer/side-by-side.sh failed:" >&2
		tail -n 20 "$err" >&2
		exit 1
	fi
	p=$(grep '^peer' "$out") o=$(grep '^ours' "$out")
	pi=$(field invoiced_per_s "$p") oi=$(field invoiced_per_s "$o")
	oa=$(sed -n 's/.*rps=\([0-9.]*\).*/\1/p' <<<"$o")
	printf '%s %d %s %.0f %s %.2f %s %.3f %.3f\n' "$name" "$round" "$pi" "$oa" "$oi" "$(awk -v a="$oi" -v b="$pi" 'BEGIN { print a / b }')" "$(field lag_p99_ms "$o")" \
		"$(svc_ms "$p")" "$(svc_ms "$o")"
}
alternate "$rounds" one "$@"
