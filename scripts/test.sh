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

echo "== go generate (the committed BPF object and bindings are what the source builds)" >&2
if command -v clang >/dev/null && [ -f /usr/include/bpf/bpf_helpers.h ]; then
	go generate ./internal/subject
	if ! git diff --quiet -- internal/subject; then
		echo "go generate ./internal/subject changed the committed files: commit what it generates" >&2
		git diff --stat -- internal/subject >&2
		exit 1
	fi
elif [ "${AUDITNS_REQUIRE_TOOLS:-}" = 1 ]; then
	echo "clang and libbpf-dev are needed to check the BPF object and AUDITNS_REQUIRE_TOOLS=1" >&2
	exit 1
else
	echo "no clang or libbpf-dev: not checking the committed BPF object" >&2
fi

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
