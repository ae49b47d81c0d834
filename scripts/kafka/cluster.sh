#!/usr/bin/env bash
# A real multi-node Apache Kafka KRaft cluster on 127.0.0.1, for failover
# tests: every node is broker and controller, with a static quorum
# (controller.quorum.voters), formatted once with one cluster id. Same
# classpath and cache as start.sh.
#
#   cluster.sh start          start every node (or find it running); prints
#                             KAFKA_BROKERS=127.0.0.1:P1,127.0.0.1:P2,...
#   cluster.sh stop           stop every node (SIGTERM, then SIGKILL)
#   cluster.sh kill N         SIGKILL node N (a crash)
#   cluster.sh start-node N   start node N again and wait until it is in the cluster
#   cluster.sh wipe N         empty node N's partition data directory (a
#                             replaced disk; the node must be stopped). Its
#                             metadata directory is kept, as on a host whose
#                             data disk was swapped.
#   cluster.sh pid N          print node N's pid
#   cluster.sh controller     print the id of the active controller (the
#                             KRaft quorum leader of the highest epoch in
#                             the nodes' logs)
#
# Node N (1-based) listens on BASE+2(N-1) (clients) and BASE+2(N-1)+1
# (controller); its id is N.
#
# Environment:
#   KAFKA_CLUSTER_PORT     BASE                                   default 29192
#   KAFKA_CLUSTER_NODES    number of nodes                        default 3
#   KAFKA_CACHE_DIR        jars (lib/) and cluster-BASE/          default <repo>/.cache/kafka
#   KAFKA_FRESH=1          with start: wipe every node first
#   KAFKA_START_TIMEOUT    how long to wait for the cluster       default 120s
#   KAFKA_HEAP_OPTS        JVM heap options per node              default -Xms256m -Xmx512m
#
# The cluster detects a dead node in about 1.5 s instead of Kafka's 9 s
# (broker.session.timeout.ms) and leaders drop a dead follower from the ISR
# after 0.5 s instead of 30 s (replica.lag.time.max.ms): with acks=all a
# produce to a partition waits for every replica in its ISR, so until a dead
# follower leaves the ISR even partitions whose leader lives stall. The
# settings are stated in each node's server.properties.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

base=${KAFKA_CLUSTER_PORT:-29192}
nodes=${KAFKA_CLUSTER_NODES:-3}
cache=${KAFKA_CACHE_DIR:-$repo/.cache/kafka}
fresh=${KAFKA_FRESH:-0}
timeout=${KAFKA_START_TIMEOUT:-120s}
heap=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
pom=$here/pom.xml
root=$cache/cluster-$base

log() { printf 'kafka/cluster: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=lib.sh
. "$here/lib.sh"

[[ $base =~ ^[0-9]+$ ]] && ((base > 0 && base + 2 * nodes <= 65536)) ||
	die "KAFKA_CLUSTER_PORT: expected a TCP port with room for $nodes nodes above it, got '$base'"
[[ $nodes =~ ^[0-9]+$ ]] && ((nodes >= 1 && nodes <= 9)) ||
	die "KAFKA_CLUSTER_NODES: expected 1 to 9, got '$nodes'"

port() { echo $((base + 2 * ($1 - 1))); }
cport() { echo $((base + 2 * ($1 - 1) + 1)); }
node_dir() { echo "$root/node$1"; }
node_pid() { cat "$(node_dir "$1")/kafka.pid" 2>/dev/null || true; }

brokers=""
voters=""
for ((i = 1; i <= nodes; i++)); do
	brokers+="${brokers:+,}127.0.0.1:$(port $i)"
	voters+="${voters:+,}$i@127.0.0.1:$(cport $i)"
done

check_node() {
	[[ $1 =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= nodes)) || die "expected a node number 1 to $nodes, got '${1:-}'"
}

mkdir -p "$root"
exec 9>"$root/.lock"
flock 9

write_props() {
	local i=$1 d
	d=$(node_dir "$i")
	mkdir -p "$d/logs"
	cat >"$d/server.properties" <<PROPS
# Written by scripts/kafka/cluster.sh; rewritten on every start.
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(port "$i"),CONTROLLER://127.0.0.1:$(cport "$i")
advertised.listeners=PLAINTEXT://127.0.0.1:$(port "$i")
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
metadata.log.dir=$d/meta
log.dirs=$d/data

offsets.topic.replication.factor=$((nodes < 3 ? nodes : 3))
transaction.state.log.replication.factor=$((nodes < 3 ? nodes : 3))
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=$((nodes < 3 ? nodes : 3))
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.partitions=1
# The broker defaults (replication 1, min.insync.replicas 1): what auditns
# sets on the topics it creates is its own doing.
default.replication.factor=1
auto.create.topics.enable=false
message.max.bytes=1048588
unclean.leader.election.enable=false

# Fast failure detection (see cluster.sh).
broker.heartbeat.interval.ms=250
broker.session.timeout.ms=1500
controller.quorum.fetch.timeout.ms=750
controller.quorum.election.timeout.ms=300
replica.lag.time.max.ms=500
replica.fetch.wait.max.ms=100
PROPS
	kafka_log4j "$d/log4j2.xml" "$d/logs"
}

cluster_id() {
	if [[ ! -s $root/cluster.id ]]; then
		"$java" -Dlog4j2.configurationFile="$(node_dir 1)/log4j2.xml" -cp "$cp" kafka.tools.StorageTool random-uuid \
			2>>"$root/storage.log" | tail -n 1 >"$root/cluster.id.tmp"
		[[ -s $root/cluster.id.tmp ]] || die "StorageTool random-uuid printed nothing (see $root/storage.log)"
		mv "$root/cluster.id.tmp" "$root/cluster.id"
	fi
	cat "$root/cluster.id"
}

# launch N: format node N's directories that are not yet and start it.
launch() {
	local i=$1 d pid cid
	d=$(node_dir "$i")
	pid=$(node_pid "$i")
	if kafka_ours "$pid"; then
		log "node $i already running (pid $pid)"
		return
	fi
	for p in $(port "$i") $(cport "$i"); do
		kafka_port_busy "$p" && die "127.0.0.1:$p is already in use by a process not started from $root (set KAFKA_CLUSTER_PORT)"
	done
	write_props "$i"
	cid=$(cluster_id)
	if [[ ! -f $d/meta/meta.properties || ! -f $d/data/meta.properties ]]; then
		log "formatting node $i (cluster id $cid)"
		"$java" -Dlog4j2.configurationFile="$d/log4j2.xml" -cp "$cp" kafka.tools.StorageTool format \
			-t "$cid" -c "$d/server.properties" --ignore-formatted >>"$d/logs/storage.log" 2>&1 ||
			{ tail -n 30 "$d/logs/storage.log" >&2; die "StorageTool format of node $i failed"; }
	fi
	local heap_opts
	read -ra heap_opts <<<"$heap"
	printf '=== %s cluster.sh: starting node %s\n' "$(date -u +%FT%TZ)" "$i" >>"$d/logs/kafka.out"
	setsid nohup "$java" "${heap_opts[@]}" -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
		-Djava.awt.headless=true -Dlog4j2.configurationFile="$d/log4j2.xml" \
		-cp "$cp" kafka.Kafka "$d/server.properties" \
		</dev/null >>"$d/logs/kafka.out" 2>&1 9>&- &
	echo $! >"$d/kafka.pid"
	log "node $i started (pid $!, 127.0.0.1:$(port "$i")), logs in $d/logs"
}

# wait_node N: node N answers and the metadata lists every node.
wait_node() {
	local i=$1
	if ! (cd "$repo" && go run ./scripts/kafka/wait -addr "127.0.0.1:$(port "$i")" -timeout "$timeout" \
		-pid "$(node_pid "$i")" -groups=false -brokers "$nodes") 1>&2; then
		log "--- last 30 lines of node $i's server.log ---"
		tail -n 30 "$(node_dir "$i")/logs/server.log" >&2 2>/dev/null || true
		die "node $i did not join the cluster within $timeout"
	fi
}

stop_node() {
	local i=$1 sig=${2:-TERM} pid deadline
	pid=$(node_pid "$i")
	if ! kafka_ours "$pid"; then
		rm -f "$(node_dir "$i")/kafka.pid"
		return
	fi
	kill "-$sig" "$pid" 2>/dev/null || true
	deadline=$((SECONDS + 30))
	while kafka_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
	if kafka_alive "$pid"; then
		log "node $i (pid $pid) still running after 30s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		while kafka_alive "$pid"; do sleep 0.1; done
	fi
	rm -f "$(node_dir "$i")/kafka.pid"
}

cmd=${1:-}
case $cmd in
start)
	kafka_java
	command -v go >/dev/null || die "go not found (needed for scripts/kafka/wait)"
	kafka_classpath "$cache" "$pom"
	if [[ $fresh == 1 ]]; then
		for ((i = 1; i <= nodes; i++)); do stop_node "$i"; done
		log "KAFKA_FRESH=1: wiping $root"
		rm -rf "${root:?}"/node* "$root/cluster.id"
	fi
	for ((i = 1; i <= nodes; i++)); do launch "$i"; done
	for ((i = 1; i <= nodes; i++)); do wait_node "$i"; done
	echo "KAFKA_BROKERS=$brokers"
	;;
stop)
	for ((i = 1; i <= nodes; i++)); do stop_node "$i" TERM & done
	wait
	log "stopped"
	;;
kill)
	check_node "${2:-}"
	stop_node "$2" KILL
	;;
start-node)
	check_node "${2:-}"
	kafka_java
	kafka_classpath "$cache" "$pom"
	launch "$2"
	wait_node "$2"
	;;
wipe)
	check_node "${2:-}"
	kafka_ours "$(node_pid "$2")" && die "node $2 is running; kill or stop it first"
	rm -rf "$(node_dir "$2")/data"
	log "node $2: partition data directory emptied"
	;;
pid)
	check_node "${2:-}"
	node_pid "$2"
	;;
controller)
	leader=$(cat "$root"/node*/logs/server.log 2>/dev/null | grep -h 'Completed transition to \(Leader\|FollowerState\)' |
		sed -n -e 's/.*Completed transition to Leader(localVoterNode=VoterNode(voterKey=ReplicaKey(id=\([0-9]*\),.*), epoch=\([0-9]*\),.*/\2 \1/p' \
			-e 's/.*Completed transition to FollowerState([^,]*, epoch=\([0-9]*\), leader=\([0-9]*\),.*/\1 \2/p' |
		sort -n | tail -n 1 | cut -d' ' -f2)
	[[ -n $leader ]] || die "no quorum leader found in the nodes' logs"
	echo "$leader"
	;;
*)
	die "usage: cluster.sh start|stop|kill N|start-node N|wipe N|pid N|controller"
	;;
esac
