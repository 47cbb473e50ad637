#!/usr/bin/env bash
# A RabbitMQ node of its own for one bench run, so that a broker setting can
# be measured without touching the machine's broker (127.0.0.1:5672):
#
#   bench/broker.sh start DIR [CONF_LINE…]   # prints the node's AMQP and management URLs
#   bench/broker.sh stop DIR
#
# The node runs from the installed server, as the rabbitmq user when started
# by root, with its own name, cookie, ports (5673 AMQP, 15673 management,
# 25673 distribution), data and logs under DIR; each CONF_LINE is a
# rabbitmq.conf line ("raft.wal_max_batch_size = 32768"). stack.sh starts one
# per run when BENCH_RABBITMQ_CONF is set (lines separated by ";") and stops
# it when the run ends.
set -euo pipefail
cmd=${1:?start|stop} dir=${2:?DIR}
shift 2
name=bench$$@localhost
amqp=${BENCH_NODE_AMQP_PORT:-5673} mgmt=${BENCH_NODE_MGMT_PORT:-15673} dist=${BENCH_NODE_DIST_PORT:-25673}
case $cmd in
start)
	mkdir -p "$dir/home" "$dir/mnesia" "$dir/log"
	{
		echo "listeners.tcp.1 = 127.0.0.1:$amqp"
		echo "management.tcp.ip = 127.0.0.1"
		echo "management.tcp.port = $mgmt"
		echo "log.console = false"
		for line in "$@"; do echo "$line"; done
	} >"$dir/rabbitmq.conf"
	echo "[rabbitmq_management]." >"$dir/enabled_plugins"
	head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F >"$dir/home/.erlang.cookie"
	chmod 400 "$dir/home/.erlang.cookie"
	run=()
	if [ "$(id -u)" = 0 ]; then
		chown -R rabbitmq:rabbitmq "$dir"
		run=(setpriv --reuid rabbitmq --regid rabbitmq --init-groups)
	fi
	server=/usr/lib/rabbitmq/bin/rabbitmq-server
	[ -x "$server" ] || server=$(command -v rabbitmq-server)
	echo "$name" >"$dir/nodename"
	env -i PATH="$PATH" HOME="$dir/home" LANG=C.UTF-8 LC_ALL=C.UTF-8 \
		RABBITMQ_NODENAME="$name" RABBITMQ_DIST_PORT="$dist" \
		RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config" \
		RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" RABBITMQ_MNESIA_BASE="$dir/mnesia" \
		RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
		ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_ALLOW_INPUT=true \
		RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-noshell -kernel inet_dist_use_interface {127,0,0,1}" \
		"${run[@]}" setsid "$server" >"$dir/stdout.log" 2>&1 </dev/null &
	echo $! >"$dir/pid"
	for _ in $(seq 1 900); do
		if curl -sf "http://guest:guest@127.0.0.1:$mgmt/api/overview" >/dev/null 2>&1; then
			echo "amqp://guest:guest@127.0.0.1:$amqp http://guest:guest@127.0.0.1:$mgmt"
			exit 0
		fi
		kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
		sleep 0.1
	done
	echo "bench/broker.sh: the node did not start:" >&2
	tail -n 20 "$dir/stdout.log" >&2
	"$0" stop "$dir"
	exit 1
	;;
stop)
	[ -f "$dir/pid" ] || exit 0
	pid=$(cat "$dir/pid")
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL -- "-$pid" 2>/dev/null || true
	rm -rf "$dir"
	;;
*)
	echo "usage: bench/broker.sh start|stop DIR [CONF_LINE…]" >&2
	exit 2
	;;
esac
