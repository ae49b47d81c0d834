#!/usr/bin/env bash
# Start (or find already running) a single-node KRaft Apache Kafka broker,
# assembled from Maven Central, bound to 127.0.0.1 only.
#
# On success prints exactly one line to stdout:
#     KAFKA_BROKERS=127.0.0.1:PORT
# Everything else goes to stderr. Idempotent: a broker that is already running
# from this cache dir and answering is reused. See scripts/kafka/README.md.
#
# Environment:
#   KAFKA_PORT             client (PLAINTEXT) port             default 19092
#   KAFKA_CONTROLLER_PORT  KRaft controller port               default 19093
#   KAFKA_CACHE_DIR        jars, config, data, logs, pid file  default <repo>/.cache/kafka
#   KAFKA_FRESH=1          wipe the data dir first (stops a running broker)
#   KAFKA_START_TIMEOUT    how long to wait for the broker      default 90s
#   KAFKA_HEAP_OPTS        JVM heap options                     default -Xms512m -Xmx1g
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

port=${KAFKA_PORT:-19092}
cport=${KAFKA_CONTROLLER_PORT:-19093}
cache=${KAFKA_CACHE_DIR:-$repo/.cache/kafka}
fresh=${KAFKA_FRESH:-0}
timeout=${KAFKA_START_TIMEOUT:-90s}
heap=${KAFKA_HEAP_OPTS:--Xms512m -Xmx1g}
pom=$here/pom.xml

data=$cache/data
logs=$cache/logs
props=$cache/server.properties
log4j=$cache/log4j2.xml
pidfile=$cache/kafka.pid
brokers=127.0.0.1:$port

log() { printf 'kafka/start: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=lib.sh
. "$here/lib.sh"

for p in "$port" "$cport"; do
	if ! [[ $p =~ ^[0-9]+$ ]] || ((p < 1 || p > 65535)); then
		die "KAFKA_PORT/KAFKA_CONTROLLER_PORT: expected a TCP port, got '$p'"
	fi
done
[[ $port != "$cport" ]] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ (both $port)"

kafka_java
command -v go >/dev/null || die "go not found (needed for scripts/kafka/wait)"

mkdir -p "$cache" "$logs"

# One start.sh/stop.sh at a time per cache dir (tests of several packages may
# call start.sh concurrently). The broker itself must not inherit fd 9.
exec 9>"$cache/.lock"
flock 9

ours() { kafka_ours "$1"; }

# wait_ready TIMEOUT [PID]: poll the broker with kafka-go.
wait_ready() {
	local args=(-addr "$brokers" -timeout "$1")
	[[ -n ${2:-} ]] && args+=(-pid "$2")
	(cd "$repo" && go run ./scripts/kafka/wait "${args[@]}") 1>&2
}

port_busy() { kafka_port_busy "$1"; }

# The port a running broker was started with (from its server.properties).
running_port() { sed -n 's/^listeners=PLAINTEXT:\/\/127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$props" 2>/dev/null; }

# ---- already running? ------------------------------------------------------
if [[ -f $pidfile ]]; then
	pid=$(cat "$pidfile")
	if ours "$pid"; then
		if [[ $fresh == 1 ]]; then
			log "KAFKA_FRESH=1: stopping running broker (pid $pid)"
			flock -u 9
			"$here/stop.sh"
			flock 9
		else
			rp=$(running_port)
			if [[ -n $rp && $rp != "$port" ]]; then
				die "a broker (pid $pid) is already running from $cache on port $rp, not $port; run scripts/kafka/stop.sh first"
			fi
			log "broker already running (pid $pid), checking that it answers"
			if wait_ready "$timeout" "$pid"; then
				echo "KAFKA_BROKERS=$brokers"
				exit 0
			fi
			log "--- last 50 lines of $logs/server.log ---"
			tail -n 50 "$logs/server.log" >&2 2>/dev/null || true
			die "broker pid $pid is running but does not answer on $brokers; run scripts/kafka/stop.sh"
		fi
	else
		log "removing stale pid file (pid $pid is not a running broker)"
		rm -f "$pidfile"
	fi
fi

for p in "$port" "$cport"; do
	if port_busy "$p"; then
		die "127.0.0.1:$p is already in use by a process not started from $cache (set KAFKA_PORT/KAFKA_CONTROLLER_PORT)"
	fi
done

# ---- classpath ----------------------------------------------------------------
kafka_classpath "$cache" "$pom"

# ---- configuration ------------------------------------------------------------
cat >"$props" <<EOF
# Written by scripts/kafka/start.sh; rewritten on every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data

# Single node: every internal topic has one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.partitions=1
default.replication.factor=1

# auditns creates its own topics; make sure that code path is exercised.
auto.create.topics.enable=false
# Kafka's default (1 MiB + record batch overhead), stated explicitly.
message.max.bytes=1048588
EOF

kafka_log4j "$log4j" "$logs"

jvm_log=(-Dlog4j2.configurationFile="$log4j")

# ---- storage ------------------------------------------------------------------
if [[ $fresh == 1 ]]; then
	log "KAFKA_FRESH=1: wiping $data"
	rm -rf "$data"
fi
if [[ ! -f $data/meta.properties ]]; then
	cid=$("$java" "${jvm_log[@]}" -cp "$cp" kafka.tools.StorageTool random-uuid 2>>"$logs/storage.log" | tail -n 1)
	[[ -n $cid ]] || die "StorageTool random-uuid printed nothing (see $logs/storage.log)"
	log "formatting $data (cluster id $cid)"
	"$java" "${jvm_log[@]}" -cp "$cp" kafka.tools.StorageTool format \
		-t "$cid" -c "$props" --ignore-formatted >>"$logs/storage.log" 2>&1 ||
		{ tail -n 50 "$logs/storage.log" >&2; die "StorageTool format failed"; }
fi

# ---- start ----------------------------------------------------------------------
log "starting broker on $brokers (controller 127.0.0.1:$cport), logs in $logs"
read -ra heap_opts <<<"$heap"
printf '=== %s start.sh: starting broker on %s\n' "$(date -u +%FT%TZ)" "$brokers" >>"$logs/kafka.out"
setsid nohup "$java" "${heap_opts[@]}" -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
	-Djava.awt.headless=true "${jvm_log[@]}" \
	-cp "$cp" kafka.Kafka "$props" \
	</dev/null >>"$logs/kafka.out" 2>&1 9>&- &
pid=$!
echo "$pid" >"$pidfile"

fail() {
	log "--- last 50 lines of $logs/server.log ---"
	tail -n 50 "$logs/server.log" >&2 2>/dev/null || true
	if [[ -s $logs/kafka.out ]]; then
		log "--- last 20 lines of $logs/kafka.out ---"
		tail -n 20 "$logs/kafka.out" >&2 || true
	fi
	if ours "$pid"; then
		log "stopping the broker that did not become ready (pid $pid)"
		flock -u 9
		"$here/stop.sh" || true
	else
		rm -f "$pidfile"
	fi
	die "$*"
}

# (go run turns every non-zero exit status into 1: ask /proc what happened.)
if ! wait_ready "$timeout" "$pid"; then
	if ours "$pid"; then
		fail "broker did not become ready on $brokers within $timeout"
	fi
	fail "broker process $pid exited during startup (see $logs/kafka.out)"
fi
log "broker ready (pid $pid)"
echo "KAFKA_BROKERS=$brokers"
