#!/usr/bin/env bash
# The whole test suite, as root, against the real kernel and a real Kafka
# broker (started here from scripts/kafka, stopped at the end).
#
#   sudo scripts/test.sh            # a laptop: tests whose prerequisite is missing skip
#   AUDITNS_REQUIRE_KERNEL=1 AUDITNS_REQUIRE_KAFKA=1 scripts/test.sh   # CI: they fail
#
# Extra arguments go to `go test` (e.g. -run TestUnicast).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== gofmt, go vet" >&2
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...

started_kafka=0
if [ -z "${AUDITNS_TEST_KAFKA:-}" ]; then
	echo "== starting Kafka (scripts/kafka/start.sh)" >&2
	if out=$(scripts/kafka/start.sh); then
		eval "$out"
		export AUDITNS_TEST_KAFKA="$KAFKA_BROKERS"
		started_kafka=1
	elif [ "${AUDITNS_REQUIRE_KAFKA:-}" = 1 ]; then
		echo "Kafka did not start and AUDITNS_REQUIRE_KAFKA=1" >&2
		exit 1
	else
		echo "Kafka did not start: Kafka tests will skip" >&2
	fi
fi
cleanup() {
	if [ "$started_kafka" = 1 ]; then scripts/kafka/stop.sh >&2 || true; fi
}
trap cleanup EXIT

echo "== go test" >&2
# -p 1: packages one at a time. Tests that take the kernel's audit
# subsystem or restart the broker also hold host-wide locks, but one
# package at a time keeps a broker restart from surprising another package.
go test -count=1 -p 1 -timeout 40m "$@" ./...
