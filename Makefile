# auditns: build, and the performance bench of docs/PERFORMANCE.md.
GO ?= go
# Extra flags for the bench, e.g. make bench BENCH_FLAGS='-repeat 5'.
BENCH_FLAGS ?=

# The build's identity (auditns version): the go command stamps it from a
# .git directory, but not in a git worktree or with GOFLAGS=-buildvcs=false,
# so it is also passed to the linker. VERSION=v1.2.3 make build for a release.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE ?= $(shell git log -1 --format=%cI 2>/dev/null)
BUILDINFO = github.com/auditns/auditns/internal/buildinfo
LDFLAGS = -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).commit=$(COMMIT) -X $(BUILDINFO).date=$(DATE)

.PHONY: build bench bench-quick man FORCE

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/auditns ./cmd/auditns

bin/auditns-bench: FORCE
	$(GO) build -o $@ ./bench

# As root, on the real kernel: holds the audit lock for the whole run,
# starts (or reuses) the project's Kafka broker, builds auditns from HEAD,
# prints the table and rewrites the results section of docs/PERFORMANCE.md.
bench: bin/auditns-bench
	eval "$$(scripts/kafka/start.sh)" && \
	bin/auditns-bench -kafka "$$KAFKA_BROKERS" -as "make bench $(BENCH_FLAGS)" $(BENCH_FLAGS)

# N/10, one round, 3 s of latency; leaves docs/PERFORMANCE.md alone (CI smoke).
bench-quick:
	$(MAKE) bench BENCH_FLAGS='-quick'
