# auditns container image. Build: docker build -t auditns:dev .
# Run it with the host's pid, network and cgroup namespaces and the audit
# capabilities (see docker-compose.yml and SPEC section 7); without them it
# cannot reach the kernel audit subsystem.

# ---- build ------------------------------------------------------------------
FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -ldflags="-s -w" -o /out/auditns ./cmd/auditns

# ---- runtime ----------------------------------------------------------------
# Static binary on distroless: CA certificates (Kafka TLS) and tzdata, no shell.
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/auditns /usr/local/bin/auditns
# Root inside the container: the capabilities granted with cap_add
# (AUDIT_CONTROL, AUDIT_READ, SYS_PTRACE) are effective only for uid 0.
USER 0:0
VOLUME ["/var/lib/auditns", "/var/spool/auditns"]
ENTRYPOINT ["/usr/local/bin/auditns", "run"]
