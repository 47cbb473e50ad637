# shellcheck shell=bash
# alternate ROUNDS FUNC CONFIG…: for each round, FUNC NAME SPEC ROUND for
# every configuration NAME=SPEC in turn, reversed every other round (A B C,
# then C B A), since the machine's speed drifts. Sourced by compare.sh and
# side-by-side.sh.
alternate() {
	local rounds=$1 fn=$2 r i c
	shift 2
	for r in $(seq "$rounds"); do
		for ((i = 1; i <= $#; i++)); do
			if ((r % 2)); then c=${!i}; else c=${*:$(($# - i + 1)):1}; fi
			"$fn" "${c%%=*}" "${c#*=}" "$r"
		done
	done
}
