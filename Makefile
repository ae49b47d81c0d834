# auditns: build, and the performance bench of docs/PERFORMANCE.md.
GO ?= go
# Extra flags for the bench, e.g. make bench BENCH_FLAGS='-repeat 5'.
BENCH_FLAGS ?=

.PHONY: build bench bench-quick FORCE

build:
	$(GO) build -o bin/auditns ./cmd/auditns

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
