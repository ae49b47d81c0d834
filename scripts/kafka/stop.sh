#!/usr/bin/env bash
# Stop the broker started by scripts/kafka/start.sh, by the pid in its pid file
# (never by process name): SIGTERM, wait up to KAFKA_STOP_TIMEOUT seconds
# (default 30), then SIGKILL. Safe to run when nothing is running. The data dir
# is kept, so start.sh afterwards brings the same broker (topics, offsets) back.
#
# Environment: KAFKA_CACHE_DIR (default <repo>/.cache/kafka), KAFKA_STOP_TIMEOUT.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${KAFKA_CACHE_DIR:-$repo/.cache/kafka}
grace=${KAFKA_STOP_TIMEOUT:-30}
pidfile=$cache/kafka.pid

log() { printf 'kafka/stop: %s\n' "$*" >&2; }

[[ $grace =~ ^[0-9]+$ ]] || { log "KAFKA_STOP_TIMEOUT: expected whole seconds, got '$grace'"; exit 2; }

if [[ ! -f $pidfile ]]; then
	log "no pid file ($pidfile): nothing to stop"
	exit 0
fi

exec 9>"$cache/.lock"
flock 9

# alive PID: exists and is not a zombie.
alive() {
	local state
	state=$(awk '{ sub(/.*\) /, ""); print substr($0, 1, 1) }' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $state && $state != Z && $state != X ]]
}

# is_broker PID: alive and a Kafka broker JVM (guards against pid reuse).
is_broker() {
	alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q ' kafka\.Kafka '
}

pid=$(cat "$pidfile" 2>/dev/null || true)
if [[ ! $pid =~ ^[0-9]+$ ]] || ! is_broker "$pid"; then
	log "pid ${pid:-?} from $pidfile is not a running broker: removing the stale pid file"
	rm -f "$pidfile"
	exit 0
fi

log "stopping broker pid $pid (SIGTERM, up to ${grace}s)"
kill -TERM "$pid" 2>/dev/null || true
deadline=$((SECONDS + grace))
while alive "$pid" && ((SECONDS < deadline)); do
	sleep 0.2
done
if alive "$pid"; then
	log "broker pid $pid still running after ${grace}s: SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
	for _ in $(seq 1 50); do
		alive "$pid" || break
		sleep 0.1
	done
	if alive "$pid"; then
		log "broker pid $pid survived SIGKILL"
		exit 1
	fi
fi
rm -f "$pidfile"
log "stopped"
