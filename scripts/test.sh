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

echo "== staticcheck" >&2
if sc=$(scripts/tools/build.sh staticcheck); then
	"$sc" ./...
elif [ "${AUDITNS_REQUIRE_TOOLS:-}" = 1 ]; then
	echo "staticcheck did not build (scripts/tools/build.sh) and AUDITNS_REQUIRE_TOOLS=1" >&2
	exit 1
else
	echo "staticcheck did not build: not run" >&2
fi

echo "== deadcode -test" >&2
if dc=$(scripts/tools/build.sh deadcode); then
	dead=$("$dc" -test ./... || true)
	if [ -n "$dead" ]; then
		echo "functions no program or test reaches: remove them" >&2
		echo "$dead" >&2
		exit 1
	fi
elif [ "${AUDITNS_REQUIRE_TOOLS:-}" = 1 ]; then
	echo "deadcode did not build (scripts/tools/build.sh) and AUDITNS_REQUIRE_TOOLS=1" >&2
	exit 1
fi

echo "== go mod tidy, go generate leave the tree unchanged" >&2
if ! go mod tidy -diff >&2; then
	echo "go mod tidy would change go.mod or go.sum (above): run it and commit" >&2
	exit 1
fi
# The state of the tree, committed or not, so that a checkout with work in
# progress is compared with itself.
tree_state() { { git diff HEAD --binary; git ls-files --others --exclude-standard; } | sha256sum; }
before=$(tree_state)
if command -v clang >/dev/null && [ -f /usr/include/bpf/bpf_helpers.h ]; then
	# The committed BPF object and bindings are what the source builds;
	# the man pages and completions are what the commands define.
	go generate ./...
elif [ "${AUDITNS_REQUIRE_TOOLS:-}" = 1 ]; then
	echo "clang and libbpf-dev are needed to check the BPF object and AUDITNS_REQUIRE_TOOLS=1" >&2
	exit 1
else
	echo "no clang or libbpf-dev: not checking the committed BPF object" >&2
	go generate ./cmd/...
fi
if [ "$(tree_state)" != "$before" ]; then
	echo "go generate changed the tree: commit what it generates" >&2
	git status --short >&2
	exit 1
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

echo "== go test -race (the packages whose goroutines share state; each runs in seconds)" >&2
go test -race -count=1 -p 1 -timeout 10m "$@" ./internal/consume ./internal/metrics ./internal/serial ./internal/subject ./internal/enrich

echo "== go test" >&2
# -p 1: packages one at a time. Tests that take the kernel's audit
# subsystem or restart the broker also hold host-wide locks, but one
# package at a time keeps a broker restart from surprising another package.
go test -count=1 -p 1 -timeout 40m "$@" ./...
